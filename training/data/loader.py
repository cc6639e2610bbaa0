"""Load a user's own impression log (CSV or Parquet) against a feature spec and a task list.

Every feature of the spec and every task label must be a column of the log; the error names all the
missing ones at once. Sequence features become lists of ids: Parquet list columns as they are, CSV
cells as JSON lists (``[3, 17, 42]``) or space/comma separated ids (``3 17 42``). Labels are checked:
binary labels must be 0 or 1, regression labels finite, rank labels (graded relevance) finite and
>= 0; a row outside a task's sample space may hold any finite value (it is masked out in training).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from service.contracts.feature_spec import FeatureSpec
from service.contracts.tasks import TaskSpec

logger = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".pq", ".csv")


def read_table(path: Path, sequence_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet file, or a folder of Parquet files (hive partitions allowed, read in
    path order); sequence columns become lists of Python ids."""
    path = Path(path)
    if path.is_dir():
        table = parquet_dataset(path).to_table()
        return _parquet_frame(table, sequence_columns)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: check the path (expected a .csv or .parquet file or a "
            "folder of .parquet files)"
        )
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _parquet_frame(pq.read_table(path), sequence_columns)
    if suffix == ".csv":
        frame = pd.read_csv(path)
        for name in sequence_columns:
            if name in frame.columns:
                frame[name] = pd.Series([_parse_ids(v) for v in frame[name]], dtype=object)
        return frame
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {list(SUFFIXES)}")


def read_columns(path: Path) -> pd.DataFrame:
    """The columns of a log without its rows (Parquet schema, CSV header): for checking them."""
    path = Path(path)
    if path.is_dir():
        frame: pd.DataFrame = parquet_dataset(path).schema.empty_table().to_pandas()
        return frame
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: check the path")
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pq.read_schema(path).empty_table().to_pandas()
        return frame
    return pd.read_csv(path, nrows=0)


def parquet_dataset(path: Path) -> ds.Dataset:
    """A folder of Parquet files as one ``pyarrow.dataset`` (hive ``key=value`` folders become
    columns); a clear error when it holds none."""
    files = sorted(p for p in Path(path).rglob("*") if p.suffix.lower() in (".parquet", ".pq"))
    if not files:
        raise FileNotFoundError(f"{path} is a folder without .parquet files: nothing to read")
    return ds.dataset(
        [str(p) for p in files], format="parquet", partitioning="hive", partition_base_dir=str(path)
    )


def _parquet_frame(table: pa.Table, sequence_columns: Sequence[str]) -> pd.DataFrame:
    frame: pd.DataFrame = table.to_pandas()
    for name in sequence_columns:
        if name in table.column_names:
            frame[name] = pd.Series(table.column(name).to_pylist(), dtype=object)
    return frame


def _parse_ids(cell: Any) -> list[Any] | None:
    """One CSV cell of a sequence column: JSON list, or ids separated by spaces or commas."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return None
    text = str(cell).strip()
    if not text:
        return []
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError(f"sequence cell {text[:40]!r} is not a list")
        return value
    return [_as_id(part) for part in text.replace(",", " ").split()]


def _as_id(token: str) -> int | str:
    return int(token) if token.lstrip("-").isdigit() else token


def check_columns(
    frame: pd.DataFrame, spec: FeatureSpec, tasks: Sequence[TaskSpec], source: str
) -> None:
    """Raise ValueError naming every feature or label column the frame lacks."""
    features = [f.name for f in spec.features]
    labels = [t.id for t in tasks]
    missing_features = [n for n in features if n not in frame.columns]
    missing_labels = [n for n in labels if n not in frame.columns]
    if missing_features or missing_labels:
        parts = []
        if missing_features:
            parts.append(f"feature columns {missing_features} (declared in the feature spec)")
        if missing_labels:
            parts.append(f"label columns {missing_labels} (one per task id)")
        raise ValueError(
            f"{source} lacks {' and '.join(parts)}; it has {list(frame.columns)}. Add the columns "
            "or remove them from the spec / task list."
        )


def check_labels(frame: pd.DataFrame, tasks: Sequence[TaskSpec], source: str) -> None:
    """Raise ValueError when a label column holds values its task type cannot take."""
    for task in tasks:
        values = pd.to_numeric(frame[task.id], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if task.type == "binary":
            bad |= (values != 0.0) & (values != 1.0)
        elif task.type == "rank":
            bad |= values < 0.0
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            kind = {"binary": "0 or 1", "rank": "a relevance >= 0"}.get(task.type, "a finite number")
            raise ValueError(
                f"{source}: label column {task.id!r} holds {frame[task.id].iloc[row]} at row "
                f"{row} ({int(bad.sum())} bad rows in all); a {task.type} label must be {kind}"
            )


def load_log(path: Path, spec: FeatureSpec, tasks: Sequence[TaskSpec]) -> pd.DataFrame:
    """Read a log file and check it holds every feature and label column with valid labels."""
    frame = read_table(path, [f.name for f in spec.sequences()])
    check_columns(frame, spec, tasks, str(path))
    check_labels(frame, tasks, str(path))
    logger.info("loaded %d rows from %s", len(frame), path)
    return frame
