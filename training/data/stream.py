"""An impression log read in pieces: a Parquet file or a folder of them (hive partitions allowed),
one row group at a time, so a log larger than memory can be fitted on and trained on.

A ``Unit`` is one row group of one file with its global row range; files are taken in path order
and row groups in file order, the order ``read_table`` concatenates them, so a row's global index
is its position in the whole log whichever way it is read. Reading a unit costs one row group of
the requested columns in memory: write logs with row groups of at most ~1M rows (the simulator
writes 100k).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from training.data.loader import parquet_dataset

PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Unit:
    """One row group: rows ``start .. start + rows - 1`` of the whole log."""

    index: int
    file: str
    row_group: int
    start: int
    rows: int
    partition: tuple[tuple[str, object], ...] = ()  # hive key=value of its folder


def is_streamable(path: Path) -> bool:
    """A Parquet file, or a folder (of Parquet files)."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in PARQUET_SUFFIXES


class ImpressionLog:
    """The units of a Parquet log and a reader for them."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not is_streamable(path):
            raise ValueError(
                f"{path}: streaming reads Parquet (a .parquet file or a folder of them), not "
                f"{path.suffix or 'this file'}; convert the log, e.g. with "
                "pandas.read_csv(...).to_parquet(...), or train in memory (streaming.mode=never)"
            )
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: check the impressions path")
        self.path = path
        self.dataset = parquet_dataset(path) if path.is_dir() else ds.dataset(str(path))
        self.schema: pa.Schema = self.dataset.schema
        units: list[Unit] = []
        start = 0
        for fragment in self.dataset.get_fragments():
            keys = ds.get_partition_keys(fragment.partition_expression) or {}
            metadata = pq.ParquetFile(fragment.path).metadata
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                units.append(
                    Unit(len(units), fragment.path, group, start, rows, tuple(sorted(keys.items())))
                )
                start += rows
        self.units = units
        self.num_rows = start

    def empty_frame(self) -> pd.DataFrame:
        """No rows, every column: for checking the columns a spec and tasks need."""
        frame: pd.DataFrame = self.schema.empty_table().to_pandas()
        return frame

    def read(self, unit: Unit, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One unit's rows as a frame (list columns as numpy arrays per row); every column
        (partition keys included) unless ``columns`` names some."""
        keys = dict(unit.partition)
        stored = None if columns is None else [c for c in columns if c not in keys]
        table = pq.ParquetFile(unit.file).read_row_group(unit.row_group, columns=stored)
        frame: pd.DataFrame = table.to_pandas()
        for key, value in unit.partition:
            if columns is None or key in columns:
                frame[key] = pd.Series([value] * len(frame), dtype=object)
        return frame
