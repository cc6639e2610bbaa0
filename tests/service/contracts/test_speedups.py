"""service._speedups, the C twins of two hot loops, against their Python twins.

The C code only ever returns what the Python code returns, or declines (None) and lets Python
decide: every id a column can hold (ints at and past int64's bounds, unicode, lone surrogates,
trailing NULs, None, bool, floats, lists) goes through the shared transform with and without it, and
the items writer is held to a plain ``orjson.dumps``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.contracts import transform as transform_module
from service.contracts.transform import FeatureTransform, FeatureValueError
from tests.service.contracts.test_transform import fitted_spec

try:
    from service import _speedups as speedups
except ImportError:  # built without a C compiler: only the last test has something to say
    speedups = None  # type: ignore[assignment]
needs_c = pytest.mark.skipif(speedups is None, reason="service._speedups not built (no C compiler)")

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
IDS = st.one_of(
    INT64,
    st.sampled_from([0, -1, 42, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**30]),
    st.text(max_size=12),
    st.sampled_from(["a", "b", "42", "", "é日本", "x\x00", "\x00", "a\x00b", "\ud800", "1"]),
    st.none(),
    st.booleans(),
    st.sampled_from([42.0, 1.5, float("nan"), float("inf")]),
)


def _transform(columns: dict[str, Any], n: int, strict: bool, sides: list[str]) -> Any:
    transform = FeatureTransform(fitted_spec(), strict=strict)
    try:
        return transform.transform_columns(columns, n, sides, "f")
    except FeatureValueError as exc:
        return ("refused", exc.field, exc.row, exc.problem)


def _both(columns: dict[str, Any], n: int, strict: bool, sides: list[str]) -> tuple[Any, Any]:
    """The transform's answer with the C twin, then as installed without a C compiler."""
    with_c = _transform(columns, n, strict, sides)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transform_module, "_speedups", None)
        without = _transform(columns, n, strict, sides)
    return with_c, without


def _assert_same(with_c: Any, without: Any) -> None:
    if isinstance(without, tuple):
        assert with_c == without
        return
    assert with_c.keys() == without.keys()
    for name in without:
        assert with_c[name].dtype == without[name].dtype
        np.testing.assert_array_equal(with_c[name], without[name])


@needs_c
@settings(max_examples=300, deadline=None)
@given(column=st.lists(IDS, min_size=1, max_size=20), strict=st.booleans())
def test_categorical_columns_encode_alike_with_and_without_c(
    column: list[Any], strict: bool
) -> None:
    n = len(column)
    columns = {"item_id": column, "item_hash": list(reversed(column))}
    _assert_same(*_both(columns, n, strict, ["item"]))


@needs_c
@settings(max_examples=200, deadline=None)
@given(
    history=st.lists(st.one_of(st.lists(IDS, max_size=6), st.none()), min_size=1, max_size=5),
    strict=st.booleans(),
)
def test_sequences_encode_alike_with_and_without_c(history: list[Any], strict: bool) -> None:
    columns = {"history": history, "user_age": ["20"] * len(history)}
    _assert_same(*_both(columns, len(history), strict, ["user"]))


@needs_c
def test_numpy_columns_encode_alike_with_and_without_c() -> None:
    """Training's typed columns: int64, uint64 past int64, object arrays of str, numpy str."""
    rng = np.random.default_rng(0)
    for column in (
        rng.integers(-(2**62), 2**62, 500),
        np.array([2**64 - 1, 0, 7], dtype=np.uint64),
        np.array(["a", "b", "42", "zz"] * 50, dtype=object),
        np.array(["a", "b", "42", "zz"] * 50),
    ):
        columns = {"item_id": column, "item_hash": column}
        _assert_same(*_both(columns, len(column), False, ["item"]))


@needs_c
def test_encode_ids_declines_what_python_must_read() -> None:
    for value in (None, True, 1.0, [1], 2**63, "x\x00", "\ud800"):
        assert speedups.encode_ids(["a", value], None, 10) is None
    assert speedups.encode_ids([], None, 10) == bytearray()
    with pytest.raises(ValueError, match="buckets"):
        speedups.encode_ids(["a"], None, 0)
    with pytest.raises(TypeError, match="vocabulary"):
        speedups.encode_ids(["a"], ["a"], 1)  # type: ignore[arg-type]  # the wrong type on purpose


@needs_c
@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.text(max_size=8), min_size=1, max_size=30, unique=True),
    data=st.data(),
)
def test_write_items_is_the_plain_dumps_of_the_items(ids: list[str], data: st.DataObject) -> None:
    names = data.draw(st.lists(st.text(max_size=5), min_size=1, max_size=4, unique=True))
    floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
    columns = [
        np.array(data.draw(st.lists(floats, min_size=len(ids), max_size=len(ids))))
        for _ in range(len(names) + 1)
    ]
    pieces = [b'{"id":', b',"rank":', b',"score":']
    pieces += [
        (b',"objectives":{' if k == 0 else b",") + orjson.dumps(n) + b":"
        for k, n in enumerate(names)
    ]
    pieces.append(b"}}")
    try:
        id_json = orjson.dumps(ids)
    except orjson.JSONEncodeError:  # a lone surrogate: not JSON, never an id of a parsed body
        return
    written = speedups.write_items(
        id_json, [orjson.dumps(c, option=orjson.OPT_SERIALIZE_NUMPY) for c in columns], pieces
    )
    plain = [
        {
            "id": id_,
            "rank": k + 1,
            "score": float(columns[0][k]),
            "objectives": {n: float(columns[j + 1][k]) for j, n in enumerate(names)},
        }
        for k, id_ in enumerate(ids)
    ]
    assert written == orjson.dumps(plain)


@needs_c
def test_write_items_declines_columns_that_do_not_match_the_ids() -> None:
    pieces = [b"<", b"|", b"|", b">"]
    assert speedups.write_items(b'["a","b"]', [b"[1,2]"], pieces) == b'[<"a"|1|1>,<"b"|2|2>]'
    assert speedups.write_items(b'["a","b"]', [b"[1]"], pieces) is None
    assert speedups.write_items(b'["a"]', [b"[1,2]"], pieces) is None
    assert speedups.write_items(b'["a"]', [b"1"], pieces) is None
    assert speedups.write_items(b"[]", [b"[]"], pieces) == b"[]"
    with pytest.raises(ValueError, match="pieces"):
        speedups.write_items(b'["a"]', [b"[1]"], pieces[:2])


@pytest.mark.skipif(
    os.environ.get("MTRANK_REQUIRE_SPEEDUPS") != "1", reason="MTRANK_REQUIRE_SPEEDUPS unset"
)
def test_the_extension_is_built_where_ci_requires_it() -> None:
    """.ci/run sets MTRANK_REQUIRE_SPEEDUPS=1: a C build that silently failed must not pass CI."""
    assert speedups is not None, "service._speedups did not build: is a C compiler installed?"
    assert speedups.encode_ids([1], None, 10) is not None
