"""The training loop: seeded, deterministic batches, weighted multi-task losses, validation every
epoch, early stopping on the monitored validation metric (``early_stopping.monitor``), and a
history of everything it saw.

Batches come from a feed (``training.train.feed``): rows in memory or streamed from Parquet, this
rank's share in a data-parallel run (``training.train.distributed``), where steps run through
DistributedDataParallel and validation metrics are computed over every rank's predictions."""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from service.contracts.tasks import DerivedObjective, TaskSpec
from training.models.ranker import MultiTaskRanker
from training.train.arrays import TrainArrays, split_extras
from training.train.auxiliary import build_deepmcp
from training.train.config import TrainConfig
from training.train.distributed import Distributed
from training.train.evaluate import (
    Prediction,
    evaluate_batches,
    validation_losses,
)
from training.train.feature_dropout import FeatureDropout
from training.train.feed import ArrayFeed, Feed
from training.train.losses import (
    TaskLosses,
    calibration_loss,
    task_losses,
)
from training.train.monitor import Monitor
from training.train.pareto import ParetoWeighting
from training.train.progress import progress_bar
from training.train.weighting import (
    DynamicWeightAverage,
    FixedWeights,
    GradNorm,
    LossWeighting,
    PCGrad,
    PLESchedule,
    UncertaintyWeighting,
)

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_weighting(
    config: TrainConfig, tasks: Sequence[TaskSpec], model: MultiTaskRanker
) -> LossWeighting:
    """The loss weighting named by ``config.weighting.kind``."""
    w = config.weighting
    unknown = sorted((set(w.weights) | set(w.gamma) | set(w.bounds)) - {t.id for t in tasks})
    if unknown:
        raise ValueError(
            f"weighting names unknown tasks {unknown}; tasks: {[t.id for t in tasks]} "
            "(TrainConfig.for_tasks drops a preset's settings for absent tasks)"
        )
    base = [w.weights.get(t.id, 1.0) for t in tasks]
    if w.kind == "fixed":
        return FixedWeights(base)
    if w.kind == "ple_schedule":
        return PLESchedule(base, [w.gamma.get(t.id, 1.0) for t in tasks])
    if w.kind == "dwa":
        return DynamicWeightAverage(base, w.temperature)
    if w.kind == "uncertainty":
        return UncertaintyWeighting([t.type == "regression" for t in tasks])
    first = [p for p in (model.split.weight_user, model.split.weight_item) if p.numel()]
    if w.kind == "pareto":  # the first layer over [u; i] is shared by every task of every core
        return ParetoWeighting([w.bounds.get(t.id, 0.0) for t in tasks], first)
    params = [p for p in model.parameters() if p.requires_grad]
    if w.kind == "pcgrad":
        return PCGrad(base, params, config.seed)
    core = [m.weight for m in model.core.modules() if isinstance(m, nn.Linear)]  # (in order)
    return GradNorm(base, w.alpha, config.lr, core, first)


@torch.no_grad()
def init_output_biases(model: MultiTaskRanker, means: Sequence[float | None]) -> None:
    """Start each task head at its base rate: logit(mean label) for binary tasks, the mean
    training-space target for regression, over the task's sample space (``Feed.target_means``).

    Heads otherwise start at p = 0.5 and 0, so the first steps spend the shared layers on
    learning rates and scales (a log1p watch time of ~4 gives an initial MSE near 17 that
    swamps every other task's gradient).
    """
    for task, head, mean in zip(model.tasks, model.heads, means, strict=True):
        if mean is None or task.type == "rank":  # rank scores are shift-free
            continue
        if task.type == "binary":
            rate = min(max(mean, 1e-4), 1.0 - 1e-4)
            mean = math.log(rate / (1.0 - rate))
        out: nn.Linear = head.out  # type: ignore[assignment]
        out.bias.fill_(mean)


@dataclass
class TrainResult:
    """The trained model (best epoch when restored) and what happened on the way."""

    model: MultiTaskRanker
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics of the final model
    gates: dict[str, list[float]] = field(default_factory=dict)  # task -> mean weight per expert
    best_epoch: int = 0
    monitor: str = "mean auc"  # what chose the epoch
    stopped: str = "epoch_cap"  # "early_stopping" or "epoch_cap"
    # The cap ended the run at its best epoch so far: validation was still improving.
    still_improving: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def summary(self) -> dict[str, Any]:
        """The run's stopping facts for metrics.json."""
        return {
            "monitor": self.monitor,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "still_improving": self.still_improving,
        }


class Trainer:
    """Fits a ``MultiTaskRanker`` with a ``TrainConfig``."""

    def __init__(
        self,
        model: MultiTaskRanker,
        config: TrainConfig,
        tasks: Sequence[TaskSpec],
        derived: Sequence[DerivedObjective] = (),
        esmm: tuple[int, int] | None = None,
        progress: bool | None = None,
        dist: Distributed | None = None,
        esm2: tuple[int, int, int] | None = None,
        feature_dropout: FeatureDropout | None = None,
    ) -> None:
        """``progress``: show a bar per epoch (None: only on a terminal)."""
        self.feature_dropout = feature_dropout or FeatureDropout([])
        self.dist = dist or Distributed()
        self.model, self.config = model.to(self.dist.device), config
        self.tasks, self.derived = list(tasks), list(derived)
        self.loss_spec = TaskLosses(
            self.tasks,
            [config.loss_kind(t.id, t.type) for t in self.tasks],
            config.huber_delta,
            esmm,
            esm2,
        )
        self.weighting = build_weighting(config, self.tasks, model)
        self.weighting.reduce = self.dist.mean
        # Every rank starts from rank 0's weights (DDP would broadcast its module's; PCGrad
        # runs without DDP and the loss weights are not in the module).
        self.dist.broadcast_parameters(
            list(model.state_dict().values()) + list(self.weighting.parameters())
        )
        # PCGrad writes .grad itself from averaged per-task gradients: no DDP backward to sync.
        self.step_model = model if self.weighting.manual_gradients else self.dist.wrap(model)
        tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        params = [p for p in model.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [
            {
                "params": [p for p in params if id(p) not in tables],
                "weight_decay": config.weight_decay,
            },
            {
                "params": [p for p in params if id(p) in tables],
                "weight_decay": config.embedding_weight_decay,
            },
        ]
        if self.weighting.parameters():
            groups.append({"params": self.weighting.parameters(), "weight_decay": 0.0})
        self.auxiliary, self.click_column = build_deepmcp(config, self.tasks, model)
        if self.auxiliary is not None:  # DeepMCP's training-only subnets
            groups.append(
                {"params": list(self.auxiliary.parameters()), "weight_decay": config.weight_decay}
            )
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr)
        self.calibrate = config.arch.name == "aitm" and config.calibration_weight > 0
        self.progress = progress
        self.monitor = Monitor.from_config(config.early_stopping)
        self.monitor.check(self.tasks, self.derived)

    def _train_epoch(self, feed: Feed, epoch: int) -> list[float]:
        self.model.train()
        device = self.dist.device
        sums = torch.zeros(len(self.tasks), dtype=torch.float64)
        steps = 0
        show = self.progress if self.dist.is_main else False
        bar = progress_bar(feed.epoch(epoch), show=show, desc=f"epoch {epoch + 1}")
        for inputs, labels in bar:
            inputs, weights, groups = split_extras({k: v.to(device) for k, v in inputs.items()})
            inputs = self.feature_dropout(inputs)
            labels = labels.to(device)
            self.optimizer.zero_grad(set_to_none=True)
            out = self.step_model(inputs)
            losses = task_losses(out, labels, self.loss_spec, weights, groups)  # (T,)
            extra = None
            if self.calibrate:
                extra = self.config.calibration_weight * calibration_loss(out, self.loss_spec)
            if self.auxiliary is not None:
                aux = self.auxiliary.loss(self.model, inputs, labels[:, self.click_column])
                extra = aux if extra is None else extra + aux
            self.weighting.backward(losses, extra)
            for p in self.weighting.parameters():  # learnable loss weights DDP does not own
                if p.grad is not None:
                    p.grad = self.dist.mean(p.grad)
            self.optimizer.step()
            sums += losses.detach().double().cpu()
            steps += 1
            bar.set_postfix(
                {t.id: f"{float(v):.4f}" for t, v in zip(self.tasks, losses.detach(), strict=True)}
            )
        return self.dist.mean(sums / max(steps, 1)).tolist()

    def _validate(self, feed: Feed) -> tuple[dict[str, Any], Prediction, list[float]]:
        """Metrics over every rank's validation rows (gathered, not averaged), the prediction
        and the per-task validation losses, the same on every rank."""
        gather = self.dist.gather if self.dist.active else None
        batches = feed.validation(self.config.eval_batch_size)
        s = evaluate_batches(self.model, batches, self.tasks, self.derived, gather=gather)
        losses = validation_losses(s.prediction, s.labels, self.loss_spec, s.weights, s.groups)
        return s.metrics, s.prediction, losses

    def fit(self, train: TrainArrays, val: TrainArrays) -> TrainResult:
        """Train on in-memory rows (this rank's share of them in a data-parallel run)."""
        feed = ArrayFeed(
            train,
            val,
            self.tasks,
            batch_size=self.config.batch_size,
            seed=self.config.seed,
            shard=self.dist.shard,
        )
        return self.fit_feed(feed)

    def fit_feed(self, feed: Feed) -> TrainResult:
        """Train for ``config.epochs`` (or until early stopping) and return the result."""
        stop, monitor = self.config.early_stopping, self.monitor
        result = TrainResult(self.model, monitor=monitor.name)
        if self.config.init_output_bias:
            init_output_biases(self.model, feed.target_means())
        ids = [t.id for t in self.tasks]
        best_score, best_state, stale = -math.inf, copy.deepcopy(self.model.state_dict()), 0
        for epoch in range(self.config.epochs):
            started = time.perf_counter()
            weights = self.weighting.weights().tolist()
            train_losses = self._train_epoch(feed, epoch)
            self.weighting.end_epoch(train_losses)
            metrics, prediction, val_losses = self._validate(feed)
            value = monitor.value(metrics, dict(zip(ids, val_losses, strict=True)))
            result.history.append(
                {
                    "epoch": epoch + 1,
                    "seconds": round(time.perf_counter() - started, 3),
                    "weights": dict(zip(ids, weights, strict=True)),
                    "train_loss": dict(zip(ids, train_losses, strict=True)),
                    "val_loss": dict(zip(ids, val_losses, strict=True)),
                    "val": metrics,
                    "monitor": None if math.isnan(value) else value,
                }
            )
            logger.info(
                "epoch %d: train %s | val %s | %s %.4f",
                epoch + 1,
                _fmt(train_losses),
                _fmt(val_losses),
                monitor.name,
                value,
            )
            if monitor.score(value) > best_score or epoch == 0:
                best_score, stale, result.best_epoch = monitor.score(value), 0, epoch + 1
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                stale += 1
                if stop.patience and stale >= stop.patience:
                    result.stopped = "early_stopping"
                    logger.info(
                        "early stopping after epoch %d: best %s at epoch %d",
                        epoch + 1,
                        monitor.name,
                        result.best_epoch,
                    )
                    break
        if result.stopped == "epoch_cap" and result.best_epoch == result.epochs_run > 1:
            result.still_improving = True
            logger.warning(
                "training stopped at the epoch cap (%d) while validation %s was still improving "
                "(best at the last epoch): the model is probably under-trained; raise --epochs "
                "and let early stopping end the run",
                self.config.epochs,
                monitor.name,
            )
        if stop.restore_best:
            self.model.load_state_dict(best_state)
        result.metrics, prediction, _ = self._validate(feed)
        result.gates = prediction.gates
        self.model.eval()
        return result


def _fmt(values: Sequence[float]) -> str:
    return " ".join(f"{v:.4f}" for v in values)
