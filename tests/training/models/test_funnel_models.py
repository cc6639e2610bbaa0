"""ESM², NMTR and DeepMCP on the ranker: their formulas, the losses, and the exported split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.contracts.tasks import TaskSpec
from tests.training.models.small import arch, random_batch, small_layout
from training.export.onnx_split import export_split
from training.export.verify import unsplit_reference, verify_split
from training.models import MultiTaskRanker
from training.models.deepmcp import DeepMCPHeads
from training.models.esm2 import decomposed_cvr_logit
from training.models.ranker import RankerOutput
from training.train.losses import TaskLosses, ctcvr_log_probs, task_losses

FUNNEL = [
    TaskSpec(id="click", type="binary"),
    TaskSpec(id="action", type="binary", sample_space="click"),
    TaskSpec(id="convert", type="binary", sample_space="click"),
]
BEHAVIOURS = [TaskSpec(id=t, type="binary") for t in ("click", "cart", "convert")]


def esm2_ranker(name: str = "mmoe") -> MultiTaskRanker:
    torch.manual_seed(0)
    return MultiTaskRanker(small_layout(), FUNNEL, arch(name), esm2=("click", "action", "convert"))


def test_esm2_cvr_is_the_decomposition_over_direct_and_other_actions() -> None:
    a, d, o = torch.randn(50) * 3, torch.randn(50) * 3, torch.randn(50) * 3
    y2, y3, y4 = torch.sigmoid(a), torch.sigmoid(d), torch.sigmoid(o)
    expected = y2 * y3 + (1 - y2) * y4
    torch.testing.assert_close(torch.sigmoid(decomposed_cvr_logit(a, d, o)), expected)


def test_esm2_ranker_serves_click_action_and_decomposed_cvr() -> None:
    model = esm2_ranker().eval()
    batch = random_batch(model.layout, 16)
    with torch.no_grad():
        out = model(batch)
        assert model.esm2_other is not None
        i = model._item_input(
            batch["item_cat"], batch["item_num"], batch["context_cat"], batch["context_num"]
        )
        u = model.user_tower(batch["user_cat"], batch["user_num"], batch["user_seq"])
        reps, _ = model.core(model.split.combine(model.split.user_part(u), i))
        y2 = torch.sigmoid(model.heads[1](reps[1])[:, 0])
        y3 = torch.sigmoid(model.heads[2](reps[2])[:, 0])
        y4 = torch.sigmoid(model.esm2_other(reps[2])[:, 0])
    torch.testing.assert_close(out.pred[:, 1], y2)
    torch.testing.assert_close(out.pred[:, 2], y2 * y3 + (1 - y2) * y4)


def test_esm2_losses_fit_ctavr_and_ctcvr_on_every_impression() -> None:
    spec = TaskLosses(FUNNEL, ["bce"] * 3, esm2=(0, 1, 2))
    logits = torch.randn(6, 3)
    out = RankerOutput(logits, torch.sigmoid(logits), {})
    nan = float("nan")
    labels = torch.tensor(
        [[0, nan, nan], [1, 1, 1], [1, 0, 0], [1, 1, 0], [0, nan, nan], [1, 0, 1]]
    )
    losses = task_losses(out, labels, spec)
    for k in (1, 2):
        positive = (labels[:, 0] == 1) & (labels[:, k] == 1)
        log_p, log_q = ctcvr_log_probs(logits[:, 0], logits[:, k])
        expected = -torch.where(positive, log_p, log_q).mean()  # all six rows count
        torch.testing.assert_close(losses[k], expected)


def test_nmtr_scores_add_the_previous_behaviours_score() -> None:
    torch.manual_seed(0)
    model = MultiTaskRanker(small_layout(), BEHAVIOURS, arch("shared_bottom"),
                            cascade=["click", "cart", "convert"]).eval()  # fmt: skip
    with torch.no_grad():
        for head, bias in zip(model.heads, (-1.0, -2.0, -0.5), strict=True):
            layer: torch.nn.Linear = head.out  # type: ignore[assignment]
            layer.weight.zero_()
            layer.bias.fill_(bias)
        out = model(random_batch(model.layout, 4))
    torch.testing.assert_close(out.logits[0], torch.tensor([-1.0, -3.0, -3.5]))
    assert (out.pred[:, 2] < out.pred[:, 1]).all()


def test_nmtr_refuses_a_cascade_of_non_binary_or_repeated_tasks() -> None:
    with pytest.raises(ValueError, match="two or more distinct"):
        MultiTaskRanker(small_layout(), BEHAVIOURS, arch("mmoe"), cascade=["click", "click"])
    tasks = [*BEHAVIOURS[:2], TaskSpec(id="minutes", type="regression")]
    with pytest.raises(ValueError, match="not a binary task"):
        MultiTaskRanker(small_layout(), tasks, arch("mmoe"), cascade=["click", "minutes"])


@pytest.mark.slow
def test_esm2_and_nmtr_rankers_export_the_split_with_parity(tmp_path: Path) -> None:
    arrays = {k: v.numpy() for k, v in random_batch(small_layout(), 40, seed=4).items()}
    torch.manual_seed(1)
    nmtr = MultiTaskRanker(
        small_layout(), BEHAVIOURS, arch("ple"), cascade=["click", "cart", "convert"]
    )
    for name, model, tasks in (("esm2", esm2_ranker("cgc"), FUNNEL), ("nmtr", nmtr, BEHAVIOURS)):
        model.eval()
        export = export_split(model, arrays, [t.id for t in tasks], tmp_path / name)
        report = verify_split(tmp_path / name, export.user, export.candidates, tasks, arrays,
                              unsplit_reference(model))  # fmt: skip
        assert report.max_abs_diff < 1e-5, name


def test_deepmcp_subnets_train_the_shared_embeddings_from_outside_the_ranker() -> None:
    model = esm2_ranker("shared_bottom")
    plain_keys = set(model.state_dict())
    heads = DeepMCPHeads(model, dim=4, hidden=(6,), window=2, negatives=2,
                         matching_weight=0.5, correlation_weight=0.5)  # fmt: skip
    assert set(model.state_dict()) == plain_keys  # the ranker holds only the prediction subnet
    batch = random_batch(model.layout, 32, seed=2)
    clicks = torch.randint(0, 2, (32,)).float()
    loss = heads.loss(model, batch, clicks)
    torch.autograd.backward(loss)
    item_table = model.item.embeddings.table(model.layout.sequence_columns[0]).weight
    assert item_table.grad is not None
    assert item_table.grad.abs().sum() > 0
    profile = model.user_tower.profile.embeddings.table(0).weight
    assert profile.grad is not None
    assert profile.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.heads.parameters())  # no task tower is involved
    assert heads.correlation_loss(model, batch) > 0


def test_deepmcp_correlation_needs_a_behaviour_sequence() -> None:
    torch.manual_seed(0)
    model = MultiTaskRanker(small_layout(sequences=False), FUNNEL, arch("mmoe"))
    with pytest.raises(ValueError, match="needs a behaviour sequence"):
        DeepMCPHeads(model, dim=4, hidden=(6,), window=2, negatives=2,
                     matching_weight=0.5, correlation_weight=0.5)  # fmt: skip
