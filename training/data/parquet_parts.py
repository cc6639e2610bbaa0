"""Write a table chunk by chunk as one Parquet file or as a folder of part files.

A log of tens of millions of rows is written as ``DIR/part-00000.parquet``, ``part-00001...``, each
holding ``rows_per_part`` rows in row groups of the chunks it was given, so neither the writer nor a
reader ever needs more than one chunk in memory and a reader (``pyarrow.dataset``, Spark, DuckDB)
can split the work by file or row group. A single file is written the same way for small logs.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

PART_NAME = "part-{:05d}.parquet"


class ParquetSink:
    """Append chunks (``pa.Table``) to ``path``: a file, or a folder of parts when
    ``rows_per_part`` is set (a new part starts once the current one holds that many rows)."""

    def __init__(self, path: Path, rows_per_part: int | None = None) -> None:
        if rows_per_part is not None and rows_per_part < 1:
            raise ValueError(f"rows_per_part = {rows_per_part} must be >= 1")
        self.path = Path(path)
        self.rows_per_part = rows_per_part
        self.files: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_part = 0
        if rows_per_part is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            stale = sorted(self.path.glob("part-*.parquet"))
            if stale:
                raise FileExistsError(
                    f"{self.path} already holds {len(stale)} part files: remove the folder or "
                    "write to another one (parts of two runs would be read as one log)"
                )

    def write(self, table: pa.Table) -> None:
        """Append one chunk (it stays one row group)."""
        if self._writer is not None and self.rows_per_part is not None:
            if self._rows_in_part >= self.rows_per_part:
                self._writer.close()
                self._writer = None
        if self._writer is None:
            target = self.path
            if self.rows_per_part is not None:
                target = self.path / PART_NAME.format(len(self.files))
            self._writer = pq.ParquetWriter(target, table.schema)
            self.files.append(target)
            self._rows_in_part = 0
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._rows_in_part += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
