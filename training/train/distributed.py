"""Data-parallel training under ``torchrun``: one process per rank, DistributedDataParallel.

``torchrun --nproc_per_node N -m training train ...`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``
and the rendezvous address; ``Distributed.from_env`` joins the process group with NCCL when the
rank has a CUDA device and gloo on CPU, and is a world of one (every collective a no-op) under
plain ``python -m training train``. What the trainer asks of it:

* ``wrap(model)``: the DDP module for training steps (gradients averaged across ranks during
  ``backward``); the bare model for a world of one;
* ``mean(tensor)``: an all-reduce average (epoch losses, loss-weighting statistics, gradients that
  DDP does not see);
* ``gather(tensor)``: every rank's rows concatenated in rank order on every rank, sizes may differ
  (validation predictions, so AUC is computed exactly over all ranks' rows, not averaged);
* ``merge_objects(obj)``: every rank's picklable object, in rank order (feature-fitting shards);
* ``is_main``: rank 0 alone writes the checkpoint, config, metrics and plots.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """Which part of the data this process reads: rank ``rank`` of ``world``."""

    rank: int = 0
    world: int = 1


class Distributed:
    """The process group of a run (a world of one when not launched by torchrun)."""

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None) -> None:
        self.rank, self.world = rank, world
        self.device = device or torch.device("cpu")

    @classmethod
    def from_env(cls) -> Distributed:
        """Join the process group torchrun describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            device = torch.device("cuda", local % torch.cuda.device_count())
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        logger.info(
            "rank %d of %d joined the process group (%s on %s)", rank, world, backend, device
        )
        return cls(rank, world, device)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module training steps run through: DDP across ranks (parameters broadcast from
        rank 0 here, so every rank starts from the same weights), the model itself alone."""
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def broadcast_parameters(self, params: list[Tensor]) -> None:
        """Copy rank 0's values of tensors DDP does not own (e.g. learnable loss weights)."""
        if self.active:
            for p in params:
                dist.broadcast(p.data, src=0)

    def mean(self, tensor: Tensor) -> Tensor:
        """The average of ``tensor`` over ranks (a new tensor; the input is left alone)."""
        if not self.active:
            return tensor
        out = tensor.detach().clone().to(self.device)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return (out / self.world).to(tensor.device)

    def gather(self, tensor: Tensor) -> Tensor:
        """Every rank's rows (dim 0, sizes may differ), concatenated in rank order."""
        if not self.active:
            return tensor
        local = tensor.detach().contiguous().to(self.device)
        size = torch.tensor([local.shape[0]], device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        longest = int(max(int(s) for s in sizes))
        padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=self.device)
        padded[: local.shape[0]] = local
        parts = [torch.zeros_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        rows = [part[: int(s)] for part, s in zip(parts, sizes, strict=True)]
        return torch.cat(rows).to(tensor.device)

    def merge_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
