"""Publish a trained ranker: export the split, verify it, then write a version into the model store.

Nothing touches the store before every verification check has passed; the store itself makes the
write atomic (staging folder, fsync, rename), so a failure at any step publishes nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from torch import nn

from service.contracts.feature_spec import FeatureSpec
from service.contracts.manifest import Graphs, Manifest, ManifestTask, RankExample
from service.contracts.tasks import DerivedObjective, TaskSpec, validate_task_set
from service.model_store import ModelStore
from training.export.external_data import EXTERNAL_DATA_BYTES
from training.export.onnx_split import ModelArrays, export_split
from training.export.verify import Reference, Tolerances, verify_split

logger = logging.getLogger(__name__)

FUSION_FILE = "fusion.yaml"
DEFAULT_PRESET = "balanced"
REGRESSION_WEIGHT = 0.1  # log1p of natural units is ~10x a probability's scale


@dataclass(frozen=True)
class PublishInputs:
    """Everything one version is made of, whatever produced the model."""

    ranker: nn.Module  # has user_representation / score_candidates (see onnx_split.SplitRanker)
    reference: Reference  # PyTorch predictions the ONNX pair must match (the unsplit forward)
    architecture: str
    hyperparameters: dict[str, Any]
    tasks: list[TaskSpec]
    derived: list[DerivedObjective]
    feature_spec: FeatureSpec  # fitted on the training rows
    arrays: ModelArrays  # held-out rows as model arrays (>= 1,000 rows when the data allows)
    warmup: list[RankExample]
    metrics: dict[str, Any] = field(default_factory=dict)
    data_card: dict[str, Any] = field(default_factory=dict)
    attachments: Mapping[str, Path] = field(default_factory=dict)  # name in version -> source file


def default_fusion(tasks: list[TaskSpec], derived: list[DerivedObjective]) -> dict[str, Any]:
    """Contract 3 fusion config with one weighted-sum preset over every objective.

    Probabilities (binary tasks, derived products) weigh 1.0 as they are; regression outputs, in
    natural units, enter as ``log1p`` with weight 0.1 so one long watch time cannot swamp the rest;
    learning-to-rank scores (meaningful only within a request) as their percentile rank, weight 1.
    """
    terms: dict[str, dict[str, Any]] = {}
    for task in tasks:
        if task.type == "binary":
            terms[task.id] = {"weight": 1.0}
        elif task.type == "rank":
            terms[task.id] = {"weight": 1.0, "transform": "rank"}
        else:
            terms[task.id] = {"weight": REGRESSION_WEIGHT, "transform": "log1p"}
    for objective in derived:
        terms[objective.id] = {"weight": 1.0}
    return {
        "default": DEFAULT_PRESET,
        "presets": {DEFAULT_PRESET: {"kind": "weighted_sum", "terms": terms}},
    }


def publish(
    inputs: PublishInputs,
    store: ModelStore,
    model: str,
    *,
    set_current: bool | None = None,
    tolerances: Tolerances | None = None,
    batch_size: int = 32,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> str:
    """Export, verify and publish; return the new version name.

    ``set_current``: None points ``current`` at the new version only when the model had no current
    version yet. Raises ``VerificationError`` (nothing published) when a check fails.
    """
    validate_task_set(inputs.tasks, inputs.derived)
    store.model_dir(model)  # validates the name before any work
    task_ids = [t.id for t in inputs.tasks]
    with tempfile.TemporaryDirectory(prefix="mtrank-export-") as tmp:
        export_dir = Path(tmp)
        export = export_split(
            inputs.ranker,
            inputs.arrays,
            task_ids,
            export_dir,
            external_data_bytes=external_data_bytes,
        )
        verification = verify_split(
            export_dir,
            export.user,
            export.candidates,
            inputs.tasks,
            inputs.arrays,
            inputs.reference,
            tolerances=tolerances,
            batch_size=batch_size,
        )
        logger.info(
            "verified on %d rows: max abs diff %.3g", verification.rows, verification.max_abs_diff
        )

        def write(staging: Path, version: str) -> Manifest:
            for name in export.files:  # both graphs, and their external weights if any
                shutil.copyfile(export_dir / name, staging / name)
            fusion = default_fusion(inputs.tasks, inputs.derived)
            (staging / FUSION_FILE).write_text(
                yaml.safe_dump(fusion, sort_keys=False), encoding="utf-8"
            )
            for name, source in inputs.attachments.items():
                target = staging / name
                if target.exists():
                    raise ValueError(f"attachment {name!r} would overwrite a file of the version")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            return Manifest(
                model=model,
                version=version,
                created_at=datetime.now(UTC),
                architecture=inputs.architecture,
                hyperparameters=inputs.hyperparameters,
                tasks=[ManifestTask(**t.model_dump(), output=t.id) for t in inputs.tasks],
                derived=inputs.derived,
                feature_spec=inputs.feature_spec,
                graphs=Graphs(user=export.user, candidates=export.candidates),
                opset=export.opset,
                metrics=inputs.metrics,
                data_card=inputs.data_card,
                verification=verification,
                warmup=inputs.warmup,
                fusion_default=fusion["default"],
            )

        had_current = store.current(model) is not None
        version = store.publish(model, write)
    if set_current or (set_current is None and not had_current):
        store.set_current(model, version)
    return version


def _jsonable(value: Any) -> Any:
    """Python scalars/lists from numpy and pandas values; None for missing (NaN, NA)."""
    if isinstance(value, np.ndarray | list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value


def _features(row: Mapping[Hashable, Any], names: list[str]) -> dict[str, Any]:
    values = {name: _jsonable(row[name]) for name in names if name in row}
    return {name: value for name, value in values.items() if value is not None}


def warmup_requests(
    frame: pd.DataFrame,
    user: list[str],
    item: list[str],
    context: list[str],
    *,
    requests: int = 4,
    candidates: int = 8,
) -> list[RankExample]:
    """Raw /rank-like requests from held-out rows: a row's user and context, the next rows' items.

    ``user``, ``item``, ``context``: raw feature names per side; the first user feature's value is
    the user id; candidate ids are row positions as strings (unique within a request, as /rank requires).
    """
    records = frame.head(requests * candidates).to_dict("records")
    examples = []
    for start in range(0, len(records), candidates):
        chunk = records[start : start + candidates]
        head = chunk[0]
        user_id = _jsonable(head.get(user[0])) if user else None
        examples.append(
            RankExample.model_validate(
                {
                    "user": {
                        "id": None if user_id is None else str(user_id),
                        "features": _features(head, user),
                    },
                    "context": _features(head, context),
                    "candidates": [
                        {"id": str(start + k), "features": _features(row, item)}
                        for k, row in enumerate(chunk)
                    ],
                }
            )
        )
    return examples
