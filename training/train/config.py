"""Typed training configuration; presets (``training/presets/*.yaml``) override its defaults only.

``load_config(preset, overrides)`` resolves a preset name (or a YAML path) plus ``key=value``
overrides (dotted keys, YAML values: ``arch.n_experts=8``, ``weighting.kind=dwa``) into a validated
``TrainConfig``; the resolved config is what a run writes as ``config.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from training.data.splits import SplitPlan
from training.models.config import ArchConfig

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"

# bce: binary tasks; mse, huber: regression; softmax (listwise), ranknet, bpr (pairwise): rank tasks.
LossKind = Literal["bce", "mse", "huber", "softmax", "ranknet", "bpr"]
DEFAULT_LOSS: dict[str, LossKind] = {"binary": "bce", "regression": "mse", "rank": "softmax"}
WeightingKind = Literal[
    "fixed", "uncertainty", "gradnorm", "dwa", "pcgrad", "ple_schedule", "pareto"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightingConfig(_Strict):
    """How per-task losses are combined into one training objective."""

    kind: WeightingKind = "fixed"
    # Base weight per task id (missing ids weigh 1.0): fixed weights, the PLE schedule's w_k,0,
    # GradNorm's initial weights, multipliers of DWA's and PCGrad's per-task losses.
    weights: dict[str, float] = Field(default_factory=dict)
    # PLE schedule (Tang et al., RecSys'20): per-task decay gamma_k in w_k(t) = w_k,0 * gamma_k^t.
    gamma: dict[str, float] = Field(default_factory=dict)
    # GradNorm (Chen et al., ICML'18): restoring-force strength alpha.
    alpha: float = Field(default=1.5, ge=0.0)
    # DWA (Liu et al., CVPR'19): softmax temperature T over the loss-descent ratios.
    temperature: float = Field(default=2.0, gt=0.0)
    # PE-LTR (Lin et al., RecSys'19, kind "pareto"): lower bound c_k of each task's weight (weights
    # sum to 1; unlisted tasks: 0; the bounds must sum to less than 1).
    bounds: dict[str, float] = Field(default_factory=dict)


MONITOR_METRICS = ("auc", "logloss", "mse", "mae", "ndcg@5", "ndcg@10", "mrr", "loss")


class EarlyStoppingConfig(_Strict):
    """Stop when the monitored validation metric has not improved for ``patience`` epochs."""

    # Epochs without improvement before stopping (0 disables early stopping).
    patience: int = Field(default=3, ge=0)
    # What chooses the epoch: "mean" (the mean of ``metric`` over tasks) or "TASK.METRIC" with
    # METRIC one of auc, logloss (binary), mse, mae (regression), ndcg@5, ndcg@10, mrr (rank),
    # loss (the task's validation loss), e.g. "income.auc", "watch_time.mse"; TASK may be a
    # derived objective ("ctcvr.auc").
    monitor: str = "mean"
    # For monitor "mean": "auc", the mean AUC of binary tasks (higher is better), or "loss", the
    # mean validation loss (lower is better).
    metric: Literal["auc", "loss"] = "auc"
    # Reload the best epoch's weights at the end.
    restore_best: bool = True

    @field_validator("monitor")
    @classmethod
    def _task_dot_metric(cls, value: str) -> str:
        if value == "mean":
            return value
        task, dot, metric = value.rpartition(".")
        if not dot or not task or metric not in MONITOR_METRICS:
            raise ValueError(
                f"early_stopping.monitor {value!r}: use 'mean' or TASK.METRIC with METRIC one of "
                f"{list(MONITOR_METRICS)} (e.g. income.auc)"
            )
        return value


class DeepMCPConfig(_Strict):
    """DeepMCP's training-only subnets (Ouyang et al., IJCAI'19), sharing the ranker's embeddings."""

    # Weight of the matching (user-item) loss; 0 turns the subnet off.
    matching_weight: float = Field(default=0.5, ge=0.0)
    # Weight of the correlation (item-item skip-gram over the behaviour sequence) loss; 0: off.
    correlation_weight: float = Field(default=0.2, ge=0.0)
    # Width of the matching and correlation vectors (tanh outputs).
    dim: int = Field(default=16, ge=1)
    # Hidden widths of each subnet's MLP before its tanh layer.
    hidden: tuple[int, ...] = (32,)
    # Skip-gram window: neighbours within this many positions are positive pairs.
    window: int = Field(default=2, ge=1)
    # Random negative items per positive pair.
    negatives: int = Field(default=4, ge=1)
    # The click-like task the matching subnet fits; null: the first binary task over all rows.
    task: str | None = None


class StreamingConfig(_Strict):
    """Whether training reads the impression log in row groups instead of all at once."""

    # auto: stream a Parquet log of more than ``above_rows`` rows; always; never (in memory).
    # A run records the mode it used ("always" or "never"): the split rule depends on it.
    mode: Literal["auto", "always", "never"] = "auto"
    above_rows: int = Field(default=2_000_000, ge=1)
    # Rows shuffled together in a streamed epoch (row groups are read in a shuffled order too).
    shuffle_rows: int = Field(default=262_144, ge=1)


class TrainConfig(_Strict):
    """Everything a training run depends on besides the data."""

    # Seeds torch and numpy, the data order and the train/validation split.
    seed: int = 0
    # Seeds the train/validation split alone; null: ``seed``. Fix it to compare seeds of one model
    # (or several models) on the same validation rows.
    split_seed: int | None = None
    # Fraction of impressions held out for validation (training.data.splits; ignored when the
    # data set has a split column or validation rows come from --val-data).
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    # Fraction held out as a test set, never seen by training nor by early stopping (0: no test
    # set, the run reports validation metrics; ignored with a split column or --test-data).
    test_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Most passes over the training split; early stopping usually ends the run sooner.
    epochs: int = Field(default=50, ge=1)
    # Rows per optimisation step.
    batch_size: int = Field(default=1024, ge=1)
    # Adam learning rate (model parameters and learnable loss weights).
    lr: float = Field(default=3e-3, gt=0.0)
    # AdamW decoupled weight decay of every parameter except embedding tables.
    weight_decay: float = Field(default=0.0, ge=0.0)
    # AdamW decoupled weight decay of embedding tables: shrinks rarely seen ids (whose random
    # initial rows are noise to the first layer) towards zero.
    embedding_weight_decay: float = Field(default=0.0, ge=0.0)
    # Training-only: probability per categorical feature of replacing a row's value by missing
    # (index 0), e.g. {user_id: 0.5}; see training.train.feature_dropout.
    feature_dropout: dict[str, float] = Field(default_factory=dict)
    # Model architecture and widths.
    arch: ArchConfig = Field(default_factory=ArchConfig)
    # Loss per task id; unlisted tasks: "bce" (binary), "mse" (regression) or "softmax" (rank).
    # Regression losses compare in the task's training space (log1p of the label when
    # target_transform is log1p); rank losses compare the rows of one request (group).
    losses: dict[str, LossKind] = Field(default_factory=dict)
    # Huber loss transition point (regression tasks with loss "huber").
    huber_delta: float = Field(default=1.0, gt=0.0)
    # How task losses are weighted.
    weighting: WeightingConfig = Field(default_factory=WeightingConfig)
    # Early stopping on the validation split.
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    # ESMM (Ma et al., SIGIR'18): when the dataset declares esmm {ctr, cvr}, train the cvr task
    # through pCTCVR = pCTR x pCVR against click*convert on every impression.
    esmm: bool = True
    # ESM² (Wen et al., SIGIR'20): when the dataset declares esm2 {ctr, action, cvr}, decompose
    # pCVR through the post-click action and fit pCTR, pCTAVR and pCTCVR on every impression.
    esm2: bool = True
    # NMTR (Gao et al., ICDE'19): when the dataset declares a funnel (behaviours in cascade order),
    # each behaviour's score adds the previous one's.
    nmtr: bool = True
    # DeepMCP's matching and correlation subnets as auxiliary losses (null: off). Training only:
    # the published model is the prediction subnet alone.
    deepmcp: DeepMCPConfig | None = None
    # Position-bias shallow tower (YouTube, RecSys'19) over the dataset's training-only features.
    position_bias: bool = True
    # Binary tasks whose logits get the position logit; null = binary tasks over all impressions.
    position_bias_tasks: list[str] | None = None
    # Start every task head at its training base rate (binary) or mean target (regression).
    init_output_bias: bool = True
    # AITM's behavioural expectation calibrator weight (arch aitm only; 0 disables it).
    calibration_weight: float = Field(default=0.0, ge=0.0)
    # Use at most this many impressions (split first, then both splits shrink proportionally).
    max_rows: int | None = Field(default=None, ge=10)
    # Rows per forward pass when predicting for validation and evaluation.
    eval_batch_size: int = Field(default=8192, ge=1)
    # Stream the log from Parquet row groups (logs larger than memory); see StreamingConfig.
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    # torch intra-op threads; 1 is fastest for these small models on a shared CPU (null: torch's).
    threads: int | None = Field(default=1, ge=1)

    @property
    def data_split_seed(self) -> int:
        """The seed of the train/validation split: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def split_plan(self) -> SplitPlan:
        """How ``training.data.splits.split_rows`` splits a run's rows."""
        return SplitPlan(self.data_split_seed, self.val_fraction, self.test_fraction, self.max_rows)

    def for_tasks(
        self, task_ids: Sequence[str], derived_ids: Sequence[str] = ()
    ) -> tuple[TrainConfig, list[str]]:
        """This config without per-task settings naming tasks the data set lacks, and a note
        per dropped setting (a preset written for the simulator's ``click`` still trains Adult).

        A monitor naming a missing task is an error: it is a choice, not a preset's default.
        """
        ids = set(task_ids)
        notes: list[str] = []

        def keep(what: str, names: Sequence[str]) -> list[str]:
            dropped = [n for n in names if n not in ids]
            if dropped:
                notes.append(
                    f"{what} names {dropped}, which this data set lacks (tasks: "
                    f"{list(task_ids)}): ignored"
                )
            return [n for n in names if n in ids]

        w = self.weighting
        per_task = {"weights": w.weights, "gamma": w.gamma, "bounds": w.bounds}
        weighting = w.model_copy(
            update={
                key: {k: values[k] for k in keep(f"weighting.{key}", list(values))}
                for key, values in per_task.items()
            }
        )
        update: dict[str, Any] = {
            "weighting": weighting,
            "losses": {k: self.losses[k] for k in keep("losses", list(self.losses))},
        }
        if self.position_bias_tasks is not None:
            update["position_bias_tasks"] = keep("position_bias_tasks", self.position_bias_tasks)
        monitor = self.early_stopping.monitor
        if monitor != "mean" and monitor.rpartition(".")[0] not in ids | set(derived_ids):
            raise ValueError(
                f"early_stopping.monitor {monitor!r} names no task of this data set; tasks: "
                f"{[*task_ids, *derived_ids]}"
            )
        return self.model_copy(update=update), notes

    def loss_kind(self, task_id: str, task_type: str) -> LossKind:
        """The configured loss of a task, or the default for its type."""
        return self.losses.get(task_id, DEFAULT_LOSS[task_type])


def preset_path(preset: str) -> Path:
    """A preset name (``training/presets/NAME.yaml``) or a path to a YAML file."""
    given = Path(preset)
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return given
    path = PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise ValueError(f"unknown preset {preset!r}: choose one of {names} or give a YAML path")
    return path


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], YAML-parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not key=value (e.g. arch.n_experts=8)")
    return key.strip().split("."), yaml.safe_load(value)


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {'.'.join(keys)}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and value and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)  # an empty mapping replaces (clears) the section
        else:
            out[key] = value
    return out


def load_config(preset: str = "default", overrides: Sequence[str] = ()) -> TrainConfig:
    """Defaults <- preset YAML <- ``key=value`` overrides, validated."""
    path = preset_path(preset)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {path} must hold a mapping of config keys")
    for text in overrides:
        keys, value = parse_override(text)
        patch: dict[str, Any] = {}
        _set(patch, keys, value)
        data = _merge(data, patch)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid training config from preset {path.name}: {exc}") from exc


def dump_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML (tuples as lists)."""
    data = config.model_dump(mode="json")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
