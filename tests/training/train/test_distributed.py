"""Data-parallel training: ranks stay identical, metrics are exact over all ranks' rows."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.multiprocessing.spawn import spawn

from service.contracts.tasks import TaskSpec
from tests.training.models.small import TASKS, small_layout
from tests.training.train.ddp_worker import train_rank
from tests.training.train.test_trainer import config, toy_data
from training.models import MultiTaskRanker
from training.train.distributed import Shard
from training.train.evaluate import evaluate_arrays
from training.train.feed import ArrayFeed

pytestmark = pytest.mark.slow

KINDS = ["fixed", "gradnorm", "pcgrad", "uncertainty", "pareto"]


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each weighting trained by 2 gloo ranks (one spawn for all, to pay torch's import once)."""
    out = tmp_path_factory.mktemp("ddp")
    spawn(train_rank, args=(2, out, KINDS), nprocs=2, join=True)  # type: ignore[no-untyped-call]
    return {
        kind: [torch.load(out / f"{kind}-rank{r}.pt", weights_only=False) for r in range(2)]
        for kind in KINDS
    }


@pytest.mark.parametrize("kind", KINDS)
def test_ranks_end_with_identical_weights_and_exact_gathered_metrics(
    two_rank_runs: dict[str, list[dict[str, Any]]], kind: str
) -> None:
    ranks = two_rank_runs[kind]
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), f"{name} differs between ranks"
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    assert ranks[0]["weights"] == ranks[1]["weights"]

    # The metrics the ranks agreed on are those of the whole validation set, not a mean per rank.
    cfg = config(epochs=2, weighting={"kind": kind})
    model = MultiTaskRanker(small_layout(), TASKS, cfg.arch, position_bias_tasks=["click"])
    model.load_state_dict(ranks[0]["state"])
    whole, _ = evaluate_arrays(model, toy_data(301, seed=2), TASKS, [], 8192)
    gathered = ranks[0]["metrics"]["tasks"]
    assert gathered["click"]["n"] == 301
    for task in ("click", "convert"):
        assert gathered[task]["auc"] == pytest.approx(whole["tasks"][task]["auc"], abs=1e-12)
    assert gathered["click"]["auc"] > 0.65


def test_rank_tasks_refuse_to_be_split_across_ranks() -> None:
    ranked = [TaskSpec(id="order", type="rank"), *TASKS]
    data = toy_data(50, seed=1)
    with pytest.raises(ValueError, match=r"rank tasks \['order'\].*without torchrun"):
        ArrayFeed(data, data, ranked, batch_size=16, seed=0, shard=Shard(0, 2))
    ArrayFeed(data, data, ranked, batch_size=16, seed=0)  # one process: fine
