import math

import pytest
import torch

from tests.training.models.small import TASKS, arch, random_batch, small_layout
from training.models import MultiTaskRanker
from training.train.arrays import TrainArrays
from training.train.config import TrainConfig
from training.train.feed import means_of, target_sums
from training.train.trainer import Trainer, build_weighting, init_output_biases, seed_everything
from training.train.weighting import GradNorm, PCGrad, UncertaintyWeighting


def toy_data(rows: int, seed: int) -> TrainArrays:
    """Random model arrays whose click depends on item_num[:, 0]; convert only after a click."""
    inputs = random_batch(small_layout(), rows, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    signal = inputs["item_num"][:, 0]
    click = (torch.rand(rows, generator=gen) < torch.sigmoid(2.0 * signal)).float()
    convert = torch.where(click == 1, (torch.rand(rows, generator=gen) < 0.4).float(), torch.nan)
    watch = torch.where(click == 1, torch.rand(rows, generator=gen) * 60.0, 0.0)
    return TrainArrays(inputs, torch.stack([click, convert, watch], dim=1))


def config(**overrides) -> TrainConfig:
    base = {
        "epochs": 3,
        "batch_size": 128,
        "lr": 0.01,
        "arch": arch("mmoe").model_dump(),
        "early_stopping": {"patience": 0},
    }
    return TrainConfig.model_validate(base | overrides)


def fit(cfg: TrainConfig, esmm=None, rows: int = 1500):
    seed_everything(cfg.seed)
    model = MultiTaskRanker(
        small_layout(), TASKS, cfg.arch, esmm=esmm, position_bias_tasks=["click"]
    )
    trainer = Trainer(model, cfg, TASKS, esmm=esmm, progress=False)
    return trainer.fit(toy_data(rows, seed=1), toy_data(300, seed=2))


def test_training_learns_the_click_signal_and_records_history_and_gates():
    result = fit(config(epochs=4))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    first, last = result.history[0], result.history[-1]
    assert set(last["train_loss"]) == set(last["val_loss"]) == {"click", "convert", "watch_time"}
    assert last["train_loss"]["click"] < first["train_loss"]["click"]
    assert result.metrics["tasks"]["click"]["auc"] > 0.7
    assert result.metrics["tasks"]["convert"]["n"] < 300  # only clicked validation rows
    assert set(result.gates) == {"click", "convert", "watch_time"}
    for weights in result.gates.values():
        assert len(weights) == 3
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)


def test_same_seed_gives_identical_weights_and_history():
    a, b = fit(config(seed=3)), fit(config(seed=3))
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]
    for (name, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    # lr so large that the validation loss cannot keep improving for 8 epochs
    result = fit(config(epochs=8, lr=0.5, early_stopping={"patience": 1, "metric": "loss"}))
    losses = [h["monitor"] for h in result.history]
    assert len(losses) < 8
    assert (result.stopped, result.monitor) == ("early_stopping", "mean loss")
    assert result.best_epoch == losses.index(min(losses)) + 1
    assert result.best_epoch == len(losses) - 1  # patience 1: one stale epoch, then stop
    assert not result.still_improving


@pytest.mark.parametrize(("monitor", "pick"), [("click.auc", max), ("watch_time.mse", min)])
def test_early_stopping_follows_the_chosen_task_and_metric(monitor, pick):
    result = fit(config(epochs=5, lr=0.05, early_stopping={"patience": 0, "monitor": monitor}))
    task, _, metric = monitor.partition(".")
    values = [h["val"]["tasks"][task][metric] for h in result.history]
    assert [h["monitor"] for h in result.history] == values
    assert result.monitor == monitor
    assert result.best_epoch == values.index(pick(values)) + 1
    assert result.metrics["tasks"][task][metric] == pytest.approx(pick(values))  # restored


def test_stopping_at_the_cap_while_improving_warns(caplog):
    result = fit(config(epochs=3, lr=0.01, early_stopping={"monitor": "click.loss"}))
    losses = [h["monitor"] for h in result.history]
    assert losses == sorted(losses, reverse=True)  # still falling at the cap
    assert (result.stopped, result.best_epoch, result.still_improving) == ("epoch_cap", 3, True)
    assert "still improving" in caplog.text
    assert "raise --epochs" in caplog.text


@pytest.mark.parametrize(
    ("monitor", "message"),
    [
        ("clicks.auc", "no task 'clicks'"),
        ("watch_time.auc", "not 'auc'"),
        ("click.mse", "not 'mse'"),
    ],
)
def test_a_monitor_the_tasks_cannot_give_is_refused(monitor, message):
    cfg = config(early_stopping={"monitor": monitor})
    model = MultiTaskRanker(small_layout(), TASKS, cfg.arch)
    with pytest.raises(ValueError, match=message):
        Trainer(model, cfg, TASKS, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["uncertainty", "gradnorm", "dwa", "pcgrad", "ple_schedule"])
def test_esmm_and_every_weighting_train_without_nan(kind):
    cfg = config(epochs=2, batch_size=100, weighting={"kind": kind, "gamma": {"click": 0.5}})
    result = fit(cfg, esmm=("click", "convert"), rows=300)
    for record in result.history:
        assert all(v == v for v in record["train_loss"].values()), kind
    if kind == "ple_schedule":
        assert result.history[1]["weights"]["click"] == pytest.approx(0.5)


def test_build_weighting_picks_the_configured_method_and_rejects_unknown_tasks():
    model = MultiTaskRanker(small_layout(), TASKS, arch("cgc"))
    assert isinstance(build_weighting(config(weighting={"kind": "pcgrad"}), TASKS, model), PCGrad)
    assert isinstance(
        build_weighting(config(weighting={"kind": "gradnorm"}), TASKS, model), GradNorm
    )
    uncertainty = build_weighting(config(weighting={"kind": "uncertainty"}), TASKS, model)
    assert isinstance(uncertainty, UncertaintyWeighting)
    with pytest.raises(ValueError, match="clicks"):
        build_weighting(config(weighting={"weights": {"clicks": 2.0}}), TASKS, model)


def test_heads_start_at_the_base_rate_of_their_sample_space():
    model = MultiTaskRanker(small_layout(), TASKS, arch("mmoe"))
    data = toy_data(500, seed=4)
    init_output_biases(model, means_of(*target_sums(TASKS, data.labels)))
    params = dict(model.named_parameters())
    bias = [params[f"heads.{k}.out.bias"].item() for k in range(3)]
    click, convert, watch = data.labels[:, 0], data.labels[:, 1], data.labels[:, 2]
    clicked = click == 1
    rate = float(click.mean())
    assert bias[0] == pytest.approx(math.log(rate / (1 - rate)), rel=1e-4)
    cvr = float(convert[clicked].mean())
    assert bias[1] == pytest.approx(math.log(cvr / (1 - cvr)), rel=1e-4)
    mean_log = float(torch.log1p(watch[clicked]).mean())
    assert bias[2] == pytest.approx(mean_log, rel=1e-4)


def test_batchnorm_trains_when_the_last_batch_would_hold_one_row():
    cfg = config(epochs=1, arch=arch("mmoe", norm="batch").model_dump())
    result = fit(cfg, rows=257)  # batches of 128, 128 and a single row, which is skipped
    assert result.history[0]["train_loss"]["click"] == result.history[0]["train_loss"]["click"]


def test_weight_decay_is_split_between_dense_layers_and_embedding_tables():
    cfg = config(weight_decay=0.01, embedding_weight_decay=0.2)
    model = MultiTaskRanker(small_layout(), TASKS, cfg.arch)
    groups = Trainer(model, cfg, TASKS, progress=False).optimizer.param_groups
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    dense, embedding = groups[0], groups[1]
    assert (dense["weight_decay"], embedding["weight_decay"]) == (0.01, 0.2)
    assert {id(p) for p in embedding["params"]} == tables
    assert not {id(p) for p in dense["params"]} & tables
    assert len(dense["params"]) + len(embedding["params"]) == len(list(model.parameters()))


def position_data(rows: int, seed: int) -> TrainArrays:
    """Clicks driven mostly by the display position (train_cat), a little by item_num[:, 0]."""
    data = toy_data(rows, seed)
    gen = torch.Generator().manual_seed(seed + 100)
    position = data.inputs["train_cat"][:, 0].float()
    logit = -1.2 * position + 2.0 + 0.5 * data.inputs["item_num"][:, 0]
    click = (torch.rand(rows, generator=gen) < torch.sigmoid(logit)).float()
    labels = data.labels.clone()
    labels[:, 0] = click
    labels[:, 1] = torch.where(click == 1, labels[:, 1].nan_to_num(0.0), torch.nan)
    labels[:, 2] = torch.where(click == 1, labels[:, 2], 0.0)
    return TrainArrays(data.inputs, labels)


def test_position_biased_tasks_also_report_the_auc_of_the_logged_score():
    seed_everything(0)
    model = MultiTaskRanker(small_layout(), TASKS, arch("mmoe"), position_bias_tasks=["click"])
    trainer = Trainer(model, config(epochs=4), TASKS, progress=False)
    result = trainer.fit(position_data(3000, seed=1), position_data(1500, seed=2))
    click = result.metrics["tasks"]["click"]
    # The served score cannot see the position; the logged score adds the tower's logit back.
    assert click["auc_logged"] > click["auc"] + 0.1
    assert "auc_logged" not in result.metrics["tasks"]["convert"]  # not position-biased
