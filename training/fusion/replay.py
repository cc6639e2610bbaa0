"""Replay logged requests through a published model version, exactly as ``/rank`` scores them.

The version is loaded by the service's own ``ModelRegistry`` (checksums, manifest, fusion config,
onnxruntime sessions, warm-up); each request's rows are transformed by the contract's
``FeatureTransform``, the user graph runs once per request and the candidate graph once over its
rows, and ``LoadedModel.objective_scores`` adds the derived objectives. Nothing here imports the
training model: the scores are the published graphs' own.

Requests are the data set's ``group`` (e.g. ``request_id``); rows of one request are its
candidates, in log order (ties in a fused score keep that order, as ``/rank`` does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from service.contracts.fusion import FusionConfig
from service.contracts.transform import FeatureTransform
from service.model_store import ModelStore
from service.scoring.registry import ModelRegistry
from training.data.computed import GROUP_COLUMN
from training.data.dataset import load_dataset
from training.data.splits import DataSources, SplitPlan, split_rows
from training.train.arrays import frame_columns
from training.train.metrics import request_matrix

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float64]
Split = Literal["validation", "test", "all"]
USER_ARRAYS = ("user_cat", "user_num", "user_seq")
CANDIDATE_ARRAYS = ("item_cat", "item_num", "context_cat", "context_num")


@dataclass(frozen=True)
class Replay:
    """Every row's served objectives and logged labels, with the requests as an index matrix."""

    model: str
    version: str
    fusion: FusionConfig  # the version's own presets
    objectives: dict[str, Floats]  # objective id -> (n,) score per row
    labels: dict[str, Floats]  # numeric log column -> (n,) value per row
    index: npt.NDArray[np.int64]  # (R, K): row of each request's k-th candidate, -1 = padding

    @property
    def requests(self) -> int:
        return int(self.index.shape[0])

    def subset(self, requests: npt.NDArray[np.int64]) -> Replay:
        """The same replay restricted to some requests (rows renumbered)."""
        index = self.index[requests]
        rows = index[index >= 0]
        renumber = np.full(len(next(iter(self.objectives.values()))), -1, dtype=np.int64)
        renumber[rows] = np.arange(len(rows))
        return Replay(
            self.model,
            self.version,
            self.fusion,
            {k: v[rows] for k, v in self.objectives.items()},
            {k: v[rows] for k, v in self.labels.items()},
            np.where(index >= 0, renumber[np.maximum(index, 0)], -1),
        )


def logged_requests(data: Path, hyperparameters: dict[str, Any], split: Split) -> pd.DataFrame:
    """The data set's rows (a part of the model's own split, ``training.data.splits``, or all),
    sorted by request, keeping each request's log order."""
    dataset = load_dataset(data)
    if GROUP_COLUMN not in dataset.frame.columns:
        raise ValueError(
            f"{dataset.source or dataset.dir}: fusion search replays requests; declare the "
            "request column as 'group' in dataset.yaml (the simulator: --request-size K)"
        )
    frame = dataset.frame
    if split != "all":
        seed = hyperparameters.get("split_seed")
        plan = SplitPlan(
            seed=int(hyperparameters.get("seed", 0) if seed is None else seed),
            val_fraction=float(hyperparameters.get("val_fraction", 0.2)),
            test_fraction=float(hyperparameters.get("test_fraction", 0.0)),
        )
        frame = split_rows(DataSources(Path(data)), plan).part(split).frame
    return frame.sort_values(GROUP_COLUMN, kind="stable").reset_index(drop=True)


def replay(
    store: Path,
    model: str,
    data: Path,
    *,
    version: str | None = None,
    split: Split = "validation",
    progress: bool = False,
) -> Replay:
    """Score every logged request of ``data`` with the published ``model`` version."""
    registry = ModelRegistry(ModelStore(store), model)
    loaded = registry.load(version)  # the service's validation and warm-up
    frame = logged_requests(data, loaded.manifest.hyperparameters, split)
    if frame.empty:
        raise ValueError(f"no logged requests to replay in {data} ({split} split)")
    transform = FeatureTransform(loaded.spec, strict=False)  # logged data is what it is
    arrays = transform.transform_columns(
        frame_columns(frame), len(frame), sides=("user", "item", "context")
    )
    index = request_matrix(frame[GROUP_COLUMN].to_numpy(np.int64))  # rows sorted by request
    scores: dict[str, list[Floats]] = {name: [] for name in loaded.objectives}
    for row in tqdm(index, desc="requests", unit="req", disable=not progress):
        start, stop = int(row[0]), int(row.max()) + 1
        user = {n: arrays[n][start : start + 1] for n in USER_ARRAYS}
        rep = loaded.sessions.user_rep(user)  # the user graph, once per request
        candidates = {n: arrays[n][start:stop] for n in CANDIDATE_ARRAYS}
        for name, values in loaded.objective_scores(rep, candidates, stop - start).items():
            scores[name].append(values)
    labels = {
        str(c): pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64)
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not str(c).startswith("__")
    }
    logger.info("replayed %d requests (%d rows) through %s/%s", len(index), len(frame), model,
                loaded.version)  # fmt: skip
    return Replay(
        model,
        loaded.version,
        loaded.fusion,
        {k: np.concatenate(v) for k, v in scores.items()},
        labels,
        index,
    )
