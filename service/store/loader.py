"""Load user and item feature tables (Parquet or CSV) into Redis, in pipelined batches.

Each row becomes one compact value (``service.store.codec``) under ``{prefix}:u:{id}`` or
``{prefix}:i:{id}``, the layout ``RedisFeatureStore`` reads with one MGET. List-valued columns
(behaviour sequences) are kept as lists; in CSV they are written as JSON arrays (``[3, 17, 42]``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import redis

from service.store.codec import RowEncodeError, encode_row
from service.store.redis_feature_store import item_key, user_key

Entity = Literal["user", "item"]
ProgressCallback = Callable[[int, int | None], None]  # (rows loaded so far, total rows if known)


class FeatureLoadError(Exception):
    """A feature table cannot be loaded; the message says which file, what and how to fix it."""


@dataclass(frozen=True)
class LoadReport:
    path: Path
    entity: Entity
    rows: int
    seconds: float


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ModuleNotFoundError as exc:
        raise FeatureLoadError(
            "reading Parquet or CSV feature tables needs pyarrow, which is not installed: "
            "run `pip install 'mtrank[features]'` (or `pip install pyarrow`)"
        ) from exc
    return pyarrow


def canonical_id(value: Any, *, path: Path, column: str) -> str:
    """Entity id as the feature spec canonicalises ids: ints as decimal, integral floats as ints."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise FeatureLoadError(
        f"{path}: key column '{column}' holds {value!r}; every row needs a non-empty string or "
        "integer id: fix or drop those rows"
    )


def _json_lists(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells written as JSON arrays become lists."""
    for name, value in row.items():
        if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
            with contextlib.suppress(orjson.JSONDecodeError):
                row[name] = orjson.loads(value)
    return row


def _batches(path: Path, batch_size: int) -> tuple[list[str], int | None, Iterator[Any], bool]:
    """(column names, total rows if known, record batches, is_csv) of a Parquet or CSV file."""
    pa = _pyarrow()
    suffixes = "".join(path.suffixes[-2:]).lower()
    if not path.is_file():
        raise FeatureLoadError(f"{path}: no such file: check the path")
    if path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        names = list(parquet.schema_arrow.names)
        return names, parquet.metadata.num_rows, parquet.iter_batches(batch_size=batch_size), False
    if suffixes.endswith((".csv", ".csv.gz")):
        import pyarrow.csv as pcsv

        try:
            table = pcsv.read_csv(path)
        except pa.ArrowInvalid as exc:
            raise FeatureLoadError(f"{path}: not a readable CSV file: {exc}") from exc
        return list(table.column_names), table.num_rows, iter(table.to_batches(batch_size)), True
    raise FeatureLoadError(
        f"{path}: unknown table format '{path.suffix}': give a .parquet or .csv file"
    )


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a Parquet or CSV table as a dict (CSV JSON arrays become lists)."""
    _names, _total, batches, is_csv = _batches(path, 10_000)
    rows = [row for batch in batches for row in batch.to_pylist()]
    return [_json_lists(row) for row in rows] if is_csv else rows


def load_table(
    client: redis.Redis | redis.RedisCluster,
    path: Path,
    *,
    entity: Entity,
    key_column: str,
    prefix: str = "mtrank",
    batch_size: int = 1000,
    ttl_seconds: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> LoadReport:
    """Write every row of ``path`` to Redis, one pipeline per batch; returns how many rows."""
    if batch_size < 1:
        raise FeatureLoadError(f"batch size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    names, total, batches, is_csv = _batches(path, batch_size)
    if key_column not in names:
        flag = "--user-key" if entity == "user" else "--item-key"
        raise FeatureLoadError(
            f"{path}: no key column '{key_column}' among the columns {names}: "
            f"pass the id column with {flag} NAME"
        )
    make_key = user_key if entity == "user" else item_key
    cluster = isinstance(client, redis.RedisCluster)  # hash-tagged slot-group keys
    loaded = 0
    for record_batch in batches:
        pipe = client.pipeline(transaction=False)
        for row in record_batch.to_pylist():
            entity_id = canonical_id(row[key_column], path=path, column=key_column)
            try:
                value = encode_row(_json_lists(row) if is_csv else row)
            except RowEncodeError as exc:
                raise FeatureLoadError(f"{path}: {entity} {entity_id!r}: {exc}") from exc
            pipe.set(make_key(prefix, entity_id, cluster), value, ex=ttl_seconds)
        pipe.execute()
        loaded += record_batch.num_rows
        if on_progress is not None:
            on_progress(loaded, total)
    return LoadReport(path, entity, loaded, time.perf_counter() - started)
