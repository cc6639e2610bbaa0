"""Training data directory: ``dataset.yaml`` + an unfitted feature spec + impressions (docs/design.md).

``load_dataset(dir)`` reads and checks everything a trainer needs: the feature spec, the tasks with
their sample spaces (PLE paper), derived objectives (ESMM's ``ctcvr``), the optional ESMM pair and
position feature, and the impressions as a pandas frame whose label columns are named by task id.
``load_dataset`` also takes the path of another YAML file in the directory (a *view*: other tasks
over the same files, e.g. the simulator's ``esm2.yaml``).

Computed columns (``columns: {action: "max(cart, wish)"}``) and per-task sample weights
(``sample_weights: {click: "1 + log1p(watch_time)"}``) are safe column expressions
(``training.data.expressions``); weights land in the frame as ``__weight__<task>`` columns and the
request id named by ``group`` as integer codes in ``__group__``, so every split keeps them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.contracts.feature_spec import FeatureSpec
from service.contracts.tasks import DerivedObjective, TaskSpec, validate_task_set
from training.data.computed import GROUP_COLUMN, computed_columns, weight_and_group_columns
from training.data.expressions import Expression
from training.data.loader import check_columns, check_labels, read_columns, read_table

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


class Esm2Spec(BaseModel):
    """ESM² (Wen et al., SIGIR 2020): impression -> click -> {direct action, other} -> purchase.

    ``action`` (e.g. add-to-cart or wish-list) and ``cvr`` are binary tasks in the click's sample
    space; both are trained through products with pCTR on every impression.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ctr: str
    action: str
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
    # The column naming the request a row was shown in (learning-to-rank tasks, fusion search).
    group: str | None = None
    # Columns computed from others when the data set loads: name -> expression.
    columns: dict[str, str] = Field(default_factory=dict)
    # Per-task sample weights: task id -> expression (a column name is one), >= 0 on every row.
    sample_weights: dict[str, str] = Field(default_factory=dict)
    esm2: Esm2Spec | None = None
    # Behaviours in cascade order, e.g. [click, cart, convert] (NMTR); binary, impression space.
    funnel: list[str] | None = None
    # A column of the impressions saying which rows are train / validation / test (splits.py).
    split_column: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DatasetConfig:
        validate_task_set(self.tasks, self.derived)
        by_id = {t.id: t for t in self.tasks}

        def binary(where: str, task_id: str) -> TaskSpec:
            task = by_id.get(task_id)
            if task is None or task.type != "binary":
                raise ValueError(f"{where} = {task_id!r} must name a binary task")
            return task

        if self.split_column is not None and self.split_column in by_id:
            raise ValueError(f"split_column {self.split_column!r} is a task label column")
        if self.esmm is not None:
            binary("esmm.ctr", self.esmm.ctr)
            binary("esmm.cvr", self.esmm.cvr)
        if self.esm2 is not None:
            binary("esm2.ctr", self.esm2.ctr)
            for role in ("action", "cvr"):
                task = binary(f"esm2.{role}", getattr(self.esm2, role))
                if task.sample_space != self.esm2.ctr:
                    raise ValueError(
                        f"esm2.{role} = {task.id!r} must have sample_space {self.esm2.ctr!r}"
                    )
        if self.funnel is not None:
            if len(self.funnel) < 2 or len(set(self.funnel)) != len(self.funnel):
                raise ValueError(f"funnel {self.funnel} needs two or more distinct tasks")
            for task_id in self.funnel:
                if binary("funnel", task_id).sample_space != "all":
                    raise ValueError(f"funnel task {task_id!r} must have sample_space 'all'")
        for name, text in {**self.columns, **self.sample_weights}.items():
            Expression(text)  # refuses anything outside the grammar, naming it
            if not name.isidentifier():
                raise ValueError(f"{name!r} is not a valid column name")
        unknown = sorted(set(self.sample_weights) - set(by_id))
        if unknown:
            raise ValueError(f"sample_weights name unknown tasks {unknown}; tasks: {list(by_id)}")
        ranked = [t.id for t in self.tasks if t.type == "rank"]
        if ranked and self.group is None:
            raise ValueError(
                f"rank tasks {ranked} need 'group': the column naming each row's request"
            )
        return self

    def dump(self, directory: Path, file: str = DATASET_FILE) -> Path:
        """Write ``dataset.yaml`` (or a view named ``file``) into the directory."""
        data = self.model_dump(mode="json", exclude_none=True)
        for key in ("columns", "sample_weights"):  # unused optional sections stay out
            if not data.get(key):
                data.pop(key, None)
        path = Path(directory) / file
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
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
    source: Path | None = None  # the YAML file read (None: DIR/dataset.yaml)

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

    def entity_table(self, which: Literal["users", "items"]) -> pd.DataFrame:
        """The users or items feature table declared in dataset.yaml."""
        table = self.meta.users if which == "users" else self.meta.items
        if table is None:
            raise ValueError(f"{self.dir / DATASET_FILE} declares no {which} table")
        sequences = [f.name for f in self.spec.sequences()]
        return read_table(self.dir / table.file, sequences)


def dataset_file(path: Path | str) -> Path:
    """``DIR`` -> ``DIR/dataset.yaml``; a YAML file (a view) stays as it is."""
    given = Path(path)
    return given if given.suffix in (".yaml", ".yml") else given / DATASET_FILE


def load_config(directory: Path) -> DatasetConfig:
    """Read and validate ``DIR/dataset.yaml`` (or the view file given)."""
    path = dataset_file(directory)
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


def load_dataset(directory: Path | str, *, rows: bool = True) -> Dataset:
    """Load a training data directory (or a view file in it) and check its columns.

    ``rows=False`` reads the columns only (an empty ``frame``): what a streamed run needs before
    reading the log in pieces (``training.data.stream``)."""
    source = dataset_file(directory)
    root = source.parent
    meta = load_config(source)
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
    if rows:
        frame = read_table(impressions, [f.name for f in spec.sequences()])
    else:
        frame = read_columns(impressions)
    computed_columns(frame, meta.columns, str(source))
    check_columns(frame, spec, meta.tasks, str(impressions))
    check_labels(frame, meta.tasks, str(impressions))
    weight_and_group_columns(frame, meta.sample_weights, meta.group, str(source))
    what = f"{len(frame)} rows" if rows else "the columns"
    logger.info("loaded %s, tasks %s from %s", what, [t.id for t in meta.tasks], root)
    return Dataset(
        spec=spec,
        tasks=list(meta.tasks),
        derived=list(meta.derived),
        esmm=meta.esmm,
        position_feature=meta.position_feature,
        frame=frame,
        meta=meta,
        dir=root,
        source=source,
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
