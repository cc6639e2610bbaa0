"""Run checkpoints: ``RUN_DIR/checkpoint.pt`` holds the weights and everything needed to rebuild
the model (docs/design.md, "Training run directory"); ``load_run`` is the only way export and
evaluation get a trained model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.contracts.feature_spec import FeatureSpec
from service.contracts.tasks import DerivedObjective, TaskSpec
from training.data.splits import DataSources
from training.models.layout import InputLayout
from training.models.ranker import MultiTaskRanker
from training.train.config import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class ModelOptions:
    """The data-dependent model options a run resolved (ESMM pair, position-biased tasks, ESM²
    triple, NMTR cascade)."""

    esmm: tuple[str, str] | None = None
    position_bias_tasks: tuple[str, ...] = ()
    esm2: tuple[str, str, str] | None = None
    cascade: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedRun:
    """A trained run, its model rebuilt in eval mode."""

    model: MultiTaskRanker
    config: TrainConfig
    spec: FeatureSpec  # fitted on the run's training split
    tasks: list[TaskSpec]
    derived: list[DerivedObjective]
    sources: DataSources  # the data directories it trained, validated and tested on
    options: ModelOptions

    @property
    def dataset_dir(self) -> Path:
        """The training data directory."""
        return self.sources.train


def build_model(
    spec: FeatureSpec, tasks: Sequence[TaskSpec], config: TrainConfig, options: ModelOptions
) -> MultiTaskRanker:
    """A fresh ranker for a fitted spec (weights initialised from torch's current RNG state)."""
    return MultiTaskRanker(
        InputLayout.from_spec(spec),
        list(tasks),
        config.arch,
        esmm=options.esmm,
        position_bias_tasks=options.position_bias_tasks,
        esm2=options.esm2,
        cascade=options.cascade,
    )


def save_checkpoint(
    run_dir: Path,
    model: MultiTaskRanker,
    config: TrainConfig,
    spec: FeatureSpec,
    derived: Sequence[DerivedObjective],
    sources: DataSources,
    options: ModelOptions,
) -> Path:
    """Write ``checkpoint.pt``: plain tensors and JSON-able dicts (loads with weights_only)."""
    payload: dict[str, Any] = {
        "state_dict": model.state_dict(),
        "config": config.model_dump(mode="json"),
        "feature_spec": spec.model_dump(mode="json"),
        "tasks": [t.model_dump(mode="json") for t in model.tasks],
        "derived": [d.model_dump(mode="json") for d in derived],
        "dataset": str(sources.train.resolve()),
        "data": sources.as_json(),
        "model": {
            "esmm": list(options.esmm) if options.esmm else None,
            "position_bias_tasks": list(options.position_bias_tasks),
            "esm2": list(options.esm2) if options.esm2 else None,
            "cascade": list(options.cascade),
        },
    }
    path = Path(run_dir) / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_run(run_dir: Path | str) -> LoadedRun:
    """Rebuild a run's model from ``RUN_DIR/checkpoint.pt``, in eval mode."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: RUN_DIR must be the --out directory of 'python -m training train'"
        )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"state_dict", "config", "feature_spec", "tasks", "derived", "dataset"} - set(payload)
    if missing:
        raise ValueError(
            f"{path} lacks {sorted(missing)}: not a checkpoint written by mtrank train"
        )
    config = TrainConfig.model_validate(payload["config"])
    spec = FeatureSpec.model_validate(payload["feature_spec"])
    tasks = [TaskSpec.model_validate(t) for t in payload["tasks"]]
    derived = [DerivedObjective.model_validate(d) for d in payload["derived"]]
    stored = payload.get("model") or {}
    esmm, esm2 = stored.get("esmm"), stored.get("esm2")
    options = ModelOptions(
        esmm=(str(esmm[0]), str(esmm[1])) if esmm else None,
        position_bias_tasks=tuple(stored.get("position_bias_tasks", ())),
        esm2=(str(esm2[0]), str(esm2[1]), str(esm2[2])) if esm2 else None,
        cascade=tuple(stored.get("cascade", ())),
    )
    model = build_model(spec, tasks, config, options)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    sources = DataSources.from_json(payload.get("data") or {"train": payload["dataset"]})
    return LoadedRun(model, config, spec, tasks, derived, sources, options)
