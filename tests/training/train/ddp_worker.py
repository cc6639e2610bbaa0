"""A rank of a 2-process gloo group for tests (spawned by torch.multiprocessing; importable)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from tests.training.models.small import TASKS, small_layout
from tests.training.train.test_trainer import config, toy_data
from training.models import MultiTaskRanker
from training.train.distributed import Distributed
from training.train.trainer import Trainer, seed_everything


def train_rank(rank: int, world: int, out: Path, kinds: list[str]) -> None:
    """Train the toy model once per loss weighting on this rank; save weights and metrics."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{out / 'rendezvous'}", rank=rank, world_size=world
    )
    group = Distributed(rank, world)
    try:
        for kind in kinds:
            cfg = config(epochs=2, weighting={"kind": kind})
            seed_everything(cfg.seed + 7 * rank)  # ranks start apart: the trainer must sync them
            model = MultiTaskRanker(small_layout(), TASKS, cfg.arch, position_bias_tasks=["click"])
            trainer = Trainer(model, cfg, TASKS, progress=False, dist=group)
            result = trainer.fit(toy_data(1200, seed=1), toy_data(301, seed=2))
            saved = {"state": model.state_dict(), "metrics": result.metrics}
            saved["weights"] = result.history[-1]["weights"]
            torch.save(saved, out / f"{kind}-rank{rank}.pt")
        # both ranks done before either tears the group down: a rank destroying it while the other
        # still has gloo traffic in flight aborted the other at exit ("terminate called without an
        # active exception", SIGABRT), once in a CI run
        group.barrier()
    finally:
        group.close()
