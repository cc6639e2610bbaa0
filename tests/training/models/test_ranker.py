"""MultiTaskRanker: shapes, gradients, split exactness, ESMM, position tower, serving units."""

from __future__ import annotations

import pytest
import torch

from tests.training.models.small import (
    ARCH_NAMES,
    CANDIDATE_KEYS,
    MOE_NAMES,
    TASKS,
    USER_KEYS,
    arch,
    random_batch,
    served,
    small_layout,
    small_ranker,
    unsplit,
)
from training.models import InputLayout, MultiTaskRanker


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_every_architecture_gives_one_column_per_task(name: str) -> None:
    model = small_ranker(name)
    batch = random_batch(model.layout, 6)
    out = model(batch)
    assert out.logits.shape == (6, 3)
    assert out.pred.shape == (6, 3)
    assert out.ctcvr is None
    assert set(out.gates) == ({"click", "convert", "watch_time"} if name in MOE_NAMES else set())
    model.eval()
    rep = model.user_representation(*(batch[k][:1] for k in USER_KEYS))
    assert rep.shape == (1, model.split.out_dim)
    assert model.score_candidates(rep, *(batch[k] for k in CANDIDATE_KEYS)).shape == (6, 3)


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_gradient_reaches_every_parameter(name: str) -> None:
    model = small_ranker(name, esmm=("click", "convert"), position_bias_tasks=["click"])
    out = model(random_batch(model.layout, 32))
    assert out.ctcvr is not None
    (out.logits.sum() + out.pred.sum() + out.ctcvr.sum()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("name", ARCH_NAMES)
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_split_scoring_equals_the_unsplit_model(name: str, dtype: torch.dtype, atol: float) -> None:
    model = small_ranker(name).to(dtype).eval()
    batch = {
        k: v.to(dtype) if v.is_floating_point() else v
        for k, v in random_batch(model.layout, 12, seed=3).items()
    }
    with torch.no_grad():
        split, reference = served(model, batch), unsplit(model, batch)
    assert split.dtype == dtype
    torch.testing.assert_close(split, reference, atol=atol, rtol=atol)


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_scoring_candidates_in_a_batch_equals_one_by_one(name: str) -> None:
    model = small_ranker(name).eval()
    batch = random_batch(model.layout, 9, seed=4)
    with torch.no_grad():
        rep = model.user_representation(*(batch[k][:1] for k in USER_KEYS))  # (1, D)
        together = model.score_candidates(rep, *(batch[k] for k in CANDIDATE_KEYS))
        alone = torch.cat(
            [
                model.score_candidates(rep, *(batch[k][n : n + 1] for k in CANDIDATE_KEYS))
                for n in range(9)
            ]
        )
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_eval_forward_equals_served_scores_in_training_space(name: str) -> None:
    model = small_ranker(name, position_bias_tasks=["click"]).eval()
    batch = random_batch(model.layout, 8, seed=5)
    with torch.no_grad():
        out, scores = model(batch), served(model, batch)
    torch.testing.assert_close(out.pred[:, :2], scores[:, :2], atol=1e-6, rtol=1e-6)
    # watch_time learns log1p(seconds) and is served in seconds, never negative
    natural = torch.expm1(out.pred[:, 2]).clamp_min(0.0)
    torch.testing.assert_close(scores[:, 2], natural, atol=1e-6, rtol=1e-6)
    assert (scores[:, 2] >= 0).all()


def test_regression_without_transform_is_served_as_predicted() -> None:
    tasks = [TASKS[0], TASKS[2].model_copy(update={"target_transform": "none"})]
    torch.manual_seed(0)
    model = MultiTaskRanker(small_layout(), tasks, arch("mmoe")).eval()
    batch = random_batch(model.layout, 8)
    with torch.no_grad():
        torch.testing.assert_close(served(model, batch)[:, 1], model(batch).pred[:, 1])


@pytest.mark.parametrize("name", MOE_NAMES)
def test_gate_weights_are_a_distribution_over_experts(name: str) -> None:
    gates = small_ranker(name)(random_batch(small_layout(), 7)).gates
    for gate in gates.values():
        assert (gate >= 0).all()
        torch.testing.assert_close(gate.sum(dim=1), torch.ones(7))


def test_omoe_tasks_share_one_gate_and_mmoe_tasks_do_not() -> None:
    batch = random_batch(small_layout(), 5)
    omoe, mmoe = small_ranker("omoe")(batch).gates, small_ranker("mmoe")(batch).gates
    assert torch.equal(omoe["click"], omoe["convert"])
    assert not torch.allclose(mmoe["click"], mmoe["convert"])


def test_esmm_ctcvr_is_click_times_convert_given_click() -> None:
    model = small_ranker("mmoe", esmm=("click", "convert"))
    out = model(random_batch(model.layout, 10))
    assert out.ctcvr is not None
    torch.testing.assert_close(out.ctcvr, out.pred[:, 0] * out.pred[:, 1])
    torch.testing.assert_close(out.pred[:, 1], torch.sigmoid(out.logits[:, 1]))


def test_position_tower_shifts_training_logits_but_never_served_scores() -> None:
    plain = small_ranker("mmoe", seed=1)
    biased = small_ranker("mmoe", seed=1, position_bias_tasks=["click"])
    biased.load_state_dict(plain.state_dict(), strict=False)  # same weights, plus the tower
    batch = random_batch(plain.layout, 8)
    moved = batch | {"train_cat": (batch["train_cat"] + 1) % 6}
    plain.train()
    biased.train()
    base, with_bias = plain(batch).logits, biased(batch).logits
    assert not torch.allclose(with_bias[:, 0], base[:, 0])
    torch.testing.assert_close(with_bias[:, 1:], base[:, 1:])  # only the chosen task moves
    assert not torch.allclose(biased(moved).logits[:, 0], with_bias[:, 0])
    plain.eval()
    biased.eval()
    with torch.no_grad():
        torch.testing.assert_close(served(biased, batch), served(plain, batch))
        torch.testing.assert_close(biased(batch).logits, plain(batch).logits)


def test_ranker_without_user_features_scores_from_items_alone() -> None:
    model = small_ranker("ple", layout=small_layout(user=False, sequences=False)).eval()
    batch = random_batch(model.layout, 6)
    assert model.user_tower.out_dim == 0
    with torch.no_grad():
        rep = model.user_representation(*(batch[k][:1] for k in USER_KEYS))
        scores = model.score_candidates(rep, *(batch[k] for k in CANDIDATE_KEYS))
        torch.testing.assert_close(scores, unsplit(model, batch))
    torch.testing.assert_close(rep, model.split.bias.unsqueeze(0))
    assert torch.isfinite(scores).all()


def test_sequences_alone_make_a_user_side() -> None:
    model = small_ranker("mmoe", layout=small_layout(user=False)).eval()
    batch = random_batch(model.layout, 6)
    assert model.user_tower.out_dim > 0
    with torch.no_grad():
        torch.testing.assert_close(served(model, batch), unsplit(model, batch))


def test_out_of_range_index_is_reported_with_its_array() -> None:
    model = small_ranker("mmoe")
    batch = random_batch(model.layout, 4)
    batch["item_cat"][2, 1] = 5  # cardinality of item column 1 is 5
    with pytest.raises(ValueError, match=r"item_cat column 1 holds index 5, outside \[0, 5\)"):
        model(batch)


def test_missing_or_misshaped_arrays_are_reported() -> None:
    model = small_ranker("mmoe", position_bias_tasks=["click"])
    batch = random_batch(model.layout, 4)
    with pytest.raises(ValueError, match="lacks 'train_cat'"):
        model({k: v for k, v in batch.items() if k != "train_cat"})
    with pytest.raises(ValueError, match=r"context_num has shape \(4, 3\)"):
        model(batch | {"context_num": torch.zeros(4, 3)})


def test_task_options_must_name_binary_tasks() -> None:
    with pytest.raises(ValueError, match="'watch_time', which is not a binary task"):
        small_ranker("mmoe", esmm=("click", "watch_time"))
    with pytest.raises(ValueError, match="'like', which is not a binary task"):
        small_ranker("mmoe", position_bias_tasks=["like"])
    no_training = InputLayout(item=small_layout().item)
    with pytest.raises(ValueError, match="need training-only features"):
        small_ranker("mmoe", layout=no_training, position_bias_tasks=["click"])
