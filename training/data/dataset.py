"""Training data directory: ``dataset.yaml`` + an unfitted feature spec + impressions (docs/design.md).

``load_dataset(dir)`` reads and checks everything a trainer needs: the feature spec, the tasks with
their sample spaces (PLE paper), derived objectives (ESMM's ``ctcvr``), the optional ESMM pair and
position feature, and the impressions as a pandas frame whose label columns are named by task id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.contracts.feature_spec import FeatureSpec
from service.contracts.tasks import DerivedObjective, TaskSpec, validate_task_set
from training.data.loader import check_columns, check_labels, read_table

logger = logging.getLogger(__name__)

DATASET_FILE = "dataset.yaml"


class EntityTable(BaseModel):
    """A feature table keyed by entity id (the rows an online feature store would hold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    key: str


class EsmmPair(BaseModel):
    """ESMM (Ma et al., SIGIR 2018): train ``cvr`` through pCTCVR = pCTR x pCVR on all impressions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ctr: str
    cvr: str


class DatasetConfig(BaseModel):
    """The content of ``dataset.yaml``; file names are relative to the data directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    feature_spec: str = "feature_spec.yaml"
    impressions: str = "impressions.parquet"
    users: EntityTable | None = None
    items: EntityTable | None = None
    tasks: list[TaskSpec] = Field(min_length=1)
    derived: list[DerivedObjective] = Field(default_factory=list)
    esmm: EsmmPair | None = None
    position_feature: str | None = None
    data_card: str | None = "data_card.json"

    @model_validator(mode="after")
    def _consistent(self) -> DatasetConfig:
        validate_task_set(self.tasks, self.derived)
        if self.esmm is not None:
            by_id = {t.id: t for t in self.tasks}
            for role, task_id in (("ctr", self.esmm.ctr), ("cvr", self.esmm.cvr)):
                task = by_id.get(task_id)
                if task is None or task.type != "binary":
                    raise ValueError(f"esmm.{role} = {task_id!r} must name a binary task")
        return self

    def dump(self, directory: Path) -> Path:
        """Write ``dataset.yaml`` into the directory."""
        path = Path(directory) / DATASET_FILE
        text = yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path


@dataclass(frozen=True)
class Dataset:
    """A loaded training data set; ``frame`` holds feature columns and one label column per task."""

    spec: FeatureSpec
    tasks: list[TaskSpec]
    derived: list[DerivedObjective]
    esmm: EsmmPair | None
    position_feature: str | None
    frame: pd.DataFrame
    meta: DatasetConfig
    dir: Path

    def __len__(self) -> int:
        return len(self.frame)

    def task(self, task_id: str) -> TaskSpec:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"no task {task_id!r}; the data set has {[t.id for t in self.tasks]}")

    def sample_space_mask(self, task: TaskSpec | str) -> npt.NDArray[np.bool_]:
        """True for rows in the task's sample space (the space task's label == 1, or every row)."""
        spec = self.task(task) if isinstance(task, str) else task
        if spec.sample_space == "all":
            return np.ones(len(self.frame), dtype=bool)
        mask: npt.NDArray[np.bool_] = self.frame[spec.sample_space].to_numpy(np.float64) == 1.0
        return mask

    def labels(self, task_id: str) -> npt.NDArray[np.float32]:
        """The task's label column as float32."""
        return self.frame[self.task(task_id).id].to_numpy(dtype=np.float32)

    def split(self, seed: int, val_fraction: float) -> tuple[Dataset, Dataset]:
        """Deterministic random split into (train, validation) by row."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction = {val_fraction} must be strictly between 0 and 1")
        n = len(self.frame)
        n_val = round(n * val_fraction)
        if n_val < 1 or n_val >= n:
            raise ValueError(
                f"{n} rows cannot be split with val_fraction {val_fraction}: both parts need rows"
            )
        order = np.random.default_rng(seed).permutation(n)
        val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        return self._subset(train_rows), self._subset(val_rows)

    def _subset(self, rows: npt.NDArray[np.int64]) -> Dataset:
        return replace(self, frame=self.frame.iloc[rows].reset_index(drop=True))

    def entity_table(self, which: Literal["users", "items"]) -> pd.DataFrame:
        """The users or items feature table declared in dataset.yaml."""
        table = self.meta.users if which == "users" else self.meta.items
        if table is None:
            raise ValueError(f"{self.dir / DATASET_FILE} declares no {which} table")
        sequences = [f.name for f in self.spec.sequences()]
        return read_table(self.dir / table.file, sequences)


def load_config(directory: Path) -> DatasetConfig:
    """Read and validate ``DIR/dataset.yaml``."""
    path = Path(directory) / DATASET_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: point --data at a directory made by "
            "'python -m training generate ...' or write a dataset.yaml (see docs/design.md)"
        )
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return DatasetConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path} is invalid: {exc}") from exc


def load_dataset(directory: Path | str) -> Dataset:
    """Load a training data directory and check its columns against the spec and tasks."""
    root = Path(directory)
    meta = load_config(root)
    spec_path = root / meta.feature_spec
    if not spec_path.is_file():
        raise FileNotFoundError(
            f"{spec_path} (feature_spec in {root / DATASET_FILE}) does not exist"
        )
    spec = FeatureSpec.load(spec_path)
    if meta.position_feature is not None:
        names = {f.name: f.side for f in spec.features}
        if names.get(meta.position_feature) != "training":
            raise ValueError(
                f"position_feature {meta.position_feature!r} must be a training-side feature of "
                f"{spec_path}"
            )
    impressions = root / meta.impressions
    frame = read_table(impressions, [f.name for f in spec.sequences()])
    check_columns(frame, spec, meta.tasks, str(impressions))
    check_labels(frame, meta.tasks, str(impressions))
    logger.info("loaded %d rows, tasks %s from %s", len(frame), [t.id for t in meta.tasks], root)
    return Dataset(
        spec=spec,
        tasks=list(meta.tasks),
        derived=list(meta.derived),
        esmm=meta.esmm,
        position_feature=meta.position_feature,
        frame=frame,
        meta=meta,
        dir=root,
    )


def write_dataset(
    directory: Path, meta: DatasetConfig, spec: FeatureSpec, frame: pd.DataFrame
) -> None:
    """Write a small in-memory data set (impressions, spec, dataset.yaml); data card is separate."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    check_columns(frame, spec, meta.tasks, "the frame to write")
    frame.to_parquet(root / meta.impressions, index=False)
    spec.dump(root / meta.feature_spec)
    meta.dump(root)
