"""Types of the C extension built from service/_speedups.c (see its header for what each does)."""

from collections.abc import Callable
from typing import Any

def encode_ids(
    values: list[object], vocabulary: dict[str, int] | None, buckets: int, /
) -> bytearray | None: ...
def write_items(
    ids: list[str],
    order: Any,
    escape: Callable[[str], bytes],
    columns: list[bytes],
    pieces: list[bytes],
    before: bytes = ...,
    after: bytes = ...,
    /,
) -> bytes | None: ...
def rows_to_columns(rows: list[Any], /) -> tuple[list[str], dict[str, list[Any]], int] | None: ...
def encode_sequences(
    rows: list[Any], length: int, vocabulary: dict[str, int] | None, buckets: int, /
) -> bytearray | None: ...
def plain_floats(
    values: list[Any], lo: float | None = None, hi: float | None = None, /
) -> bytearray | None: ...
def scale_floats(
    x: Any, mean: float, std: float, standard: bool, clip: bool, /
) -> bytearray | None: ...
def parse_rank_body(
    body: bytes, /
) -> tuple[dict[str, Any], tuple[list[str], dict[str, list[Any]], bool, int]] | None: ...

GUIDE_SHIFT: int

def bucket_counts(
    upper: Any, columns: list[Any], counts: list[Any], guide_from: int = 0, guide: Any = None, /
) -> list[float] | None: ...
def scores_within(columns: list[Any], unit: list[bool], /) -> bool | None: ...
def weighted_sum(columns: list[Any], weights: list[float], /) -> bytearray | None: ...
def indices_within(block: Any, bounds: Any, /) -> bool | None: ...
def best_first(scores: Any, k: int, /) -> bytearray | None: ...
