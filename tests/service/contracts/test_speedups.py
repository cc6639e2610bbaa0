"""service._speedups, the C twins of the hot loops, against their Python twins.

The C code only ever returns what the Python code returns, or declines (None) and lets Python
decide: every id a column can hold (ints at and past int64's bounds, unicode, lone surrogates,
trailing NULs, None, bool, floats, lists) and every number (ints past float64's range, NaN, Inf,
-0.0, bool, strings) goes through the shared transform with and without it, and the items writer is
held to a plain ``orjson.dumps``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.contracts import transform as transform_module
from service.contracts.feature_spec import FeatureSpec
from service.contracts.transform import FeatureTransform, FeatureValueError, _clip
from service.metrics import FUSED_BUCKETS, OBJECTIVE_BUCKETS, bucket_guide
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


NUMBERS = st.one_of(
    st.floats(width=64),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -0.0, 0.0, 2**53 + 1, 10**308, 2**1024, -(2**1024), 1e308, 5e-324]),
    st.none(),
    st.booleans(),
    st.sampled_from(["1", [1.0]]),
)


def numbers_spec() -> FeatureSpec:
    """Every numeric pipeline: clip + log1p + standard (at a zero floor, a positive one, with a
    ceiling only), none with a default, none without a clip, a standardisation that overflows
    float32, bucketized with keep_value and with a default; and a sequence of hashed ids."""
    stats = {"mean": 1.0, "std": 2.0, "clip_lo": 0.0, "clip_hi": 1e6}
    return FeatureSpec.model_validate(
        {
            "name": "n",
            "features": [
                {"name": "item_hash", "side": "item", "kind": "categorical", "encoding": "hash"}
                | {"buckets": 97},
                {"name": "history", "side": "user", "kind": "sequence", "max_length": 4}
                | {"item_feature": "item_hash"},
                {"name": "price", "side": "item", "kind": "numeric", "log1p": True, "stats": stats},
                {"name": "score", "side": "item", "kind": "numeric", "default": 3.0}
                | {"normalize": "none", "stats": {"mean": 5.0, "std": 1.0, "clip_lo": -1.0}},
                {"name": "gain", "side": "item", "kind": "bucketized", "boundaries": [0.0, 9.5]}
                | {"keep_value": True, "stats": {"mean": 2.0, "std": 3.0}},
                {"name": "stake", "side": "item", "kind": "bucketized", "boundaries": [1.0]}
                | {"default": 7.0},
                {"name": "visits", "side": "item", "kind": "numeric", "log1p": True}
                | {"stats": {"mean": 1.0, "std": 0.4, "clip_lo": 0.172, "clip_hi": 11.4}},
                {"name": "tail", "side": "item", "kind": "numeric", "log1p": True}
                | {"stats": {"mean": -2.0, "std": 3.0, "clip_hi": 50.0}},
                {"name": "spike", "side": "item", "kind": "numeric"}
                | {"stats": {"mean": 0.5, "std": 1e-300, "clip_lo": -5.0, "clip_hi": 1e300}},
                {"name": "raw", "side": "item", "kind": "numeric", "normalize": "none"}
                | {"stats": {"mean": 0.0, "std": 1.0}},
            ],
        }
    )


def _transform(
    columns: dict[str, Any], n: int, strict: bool, sides: list[str], spec: FeatureSpec | None = None
) -> Any:
    transform = FeatureTransform(spec or fitted_spec(), strict=strict)
    try:
        return transform.transform_columns(columns, n, sides, "f")
    except FeatureValueError as exc:
        return ("refused", exc.field, exc.row, exc.problem)


def _both(
    columns: dict[str, Any], n: int, strict: bool, sides: list[str], spec: FeatureSpec | None = None
) -> tuple[Any, Any]:
    """The transform's answer with the C twin, then as installed without a C compiler."""
    with_c = _transform(columns, n, strict, sides, spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transform_module, "_speedups", None)
        without = _transform(columns, n, strict, sides, spec)
    return with_c, without


def _assert_same(with_c: Any, without: Any) -> None:
    if isinstance(without, tuple):
        assert with_c == without
        return
    assert with_c.keys() == without.keys()
    for name in without:
        assert with_c[name].dtype == without[name].dtype
        assert with_c[name].shape == without[name].shape
        # bit for bit: the same float32 values, NaN and the sign of zero included
        assert with_c[name].tobytes() == without[name].tobytes()


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
@settings(max_examples=300, deadline=None)
@given(
    column=st.lists(NUMBERS, min_size=1, max_size=12),
    plain=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=12),
    strict=st.booleans(),
)
def test_numeric_columns_scale_alike_with_and_without_c(
    column: list[Any], plain: list[float], strict: bool
) -> None:
    """Any column, and one of finite floats (the C path's usual input), through every pipeline."""
    for values in (column, plain):
        n = len(values)
        rotated = values[1:] + values[:1]
        columns = {"price": values, "score": rotated, "gain": values[::-1], "stake": rotated[::-1]}
        columns |= {"visits": values, "tail": rotated, "spike": values[::-1], "raw": values}
        _assert_same(*_both(columns, n, strict, ["item"], numbers_spec()))


@needs_c
@settings(max_examples=200, deadline=None)
@given(
    history=st.lists(st.one_of(st.lists(IDS, max_size=7), st.none()), min_size=1, max_size=5),
    strict=st.booleans(),
)
def test_hashed_sequences_encode_alike_with_and_without_c(history: list[Any], strict: bool) -> None:
    _assert_same(*_both({"history": history}, len(history), strict, ["user"], numbers_spec()))


@needs_c
def test_plain_floats_and_encode_sequences_decline_what_python_must_read() -> None:
    for value in (None, True, "1", [1.0], float("nan"), float("inf"), -float("inf"), 2**1024):
        assert speedups.plain_floats([1.0, value]) is None
    written = speedups.plain_floats([1, -0.0, 2**53 + 1, 1e308])
    assert written is not None
    assert np.frombuffer(written).tobytes() == np.array([1, -0.0, 2**53 + 1, 1e308]).tobytes()
    for row in (None, ("a",), ["a", None], ["a", 1.0], ["x\x00"], [2**63]):
        assert speedups.encode_sequences([["a"], row], 2, None, 10) is None
    assert speedups.encode_sequences([], 3, None, 10) == bytearray()
    codes = speedups.encode_sequences([["a", "b", "c"], [], ["b"]], 2, {"b": 1, "c": 2}, 0)
    assert codes is not None
    assert np.frombuffer(codes, dtype=np.int64).tolist() == [1, 2, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="buckets"):
        speedups.encode_sequences([["a"]], 2, None, 0)


@needs_c
def test_plain_floats_clip_and_scale_floats_decline_what_numpy_must_compute() -> None:
    """The clip bounds are the spec's floats (an int is a caller's bug); a NaN after
    standardising, a buffer that is not 1-d float64, or a value plain_floats declines, goes to
    numpy."""
    clipped = speedups.plain_floats([0.1, 5, 2.5, -7.0], 0.5, 3.0)
    assert clipped is not None
    assert np.frombuffer(clipped).tolist() == [0.5, 3.0, 2.5, 0.5]
    assert speedups.plain_floats([1.0, None], 0.5, None) is None
    with pytest.raises(TypeError, match="clip bound"):
        speedups.plain_floats([1.0], 1, None)
    for x in (np.array([1.0, np.nan]), np.ones(2, dtype=np.float32), np.ones((2, 2)), b"12345678"):
        assert speedups.scale_floats(x, 0.0, 1.0, True, True) is None
    scaled = speedups.scale_floats(np.array([1.0, 1e300, -1e300]), 0.5, 0.25, True, True)
    assert scaled is not None
    limit = np.finfo(np.float32).max
    assert np.frombuffer(scaled, dtype=np.float32).tolist() == [2.0, limit, -limit]


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(width=64), min_size=1, max_size=8),
    lo=st.one_of(st.none(), st.floats(allow_nan=False, width=64)),
    hi=st.one_of(st.none(), st.floats(allow_nan=False, width=64)),
)
def test_the_transforms_clip_is_numpys(
    values: list[float], lo: float | None, hi: float | None
) -> None:
    """The transform clips without np.clip's dispatch: the same values, NaN kept (a zero may
    change its sign, which no model can tell apart)."""
    x = np.array(values)
    if lo is None and hi is None:
        return
    np.testing.assert_array_equal(_clip(x, lo, hi), np.clip(x, lo, hi))


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
@settings(max_examples=300, deadline=None)
@given(number=INT64, buckets=st.integers(min_value=1, max_value=2**64 - 1))
def test_an_integer_id_hashes_as_its_decimal_text(number: int, buckets: int) -> None:
    assert speedups.encode_ids([number], None, buckets) == speedups.encode_ids(
        [str(number)], None, buckets
    )


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
    try:
        orjson.dumps(ids)
    except orjson.JSONEncodeError:  # a lone surrogate: not JSON, never an id of a parsed body
        return
    # the answer's order: any subset of the candidates (top k) in any order
    order = np.array(
        data.draw(st.permutations(range(len(ids))))[: data.draw(st.integers(1, len(ids)))]
    )
    # short names, and names whose piece is longer than the C writer's wide copy (32 bytes)
    name = st.text(max_size=5) | st.text(min_size=28, max_size=40)
    names = data.draw(st.lists(name, min_size=1, max_size=4, unique=True))
    floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
    columns = [
        np.array(data.draw(st.lists(floats, min_size=len(order), max_size=len(order))))
        for _ in range(len(names) + 1)
    ]
    pieces = [b'{"id":', b',"rank":', b',"score":']
    pieces += [
        (b',"objectives":{' if k == 0 else b",") + orjson.dumps(n) + b":"
        for k, n in enumerate(names)
    ]
    pieces.append(b"}}")
    tokens = [orjson.dumps(c, option=orjson.OPT_SERIALIZE_NUMPY) for c in columns]
    written = speedups.write_items(ids, order, orjson.dumps, tokens, pieces)
    plain = [
        {
            "id": ids[i],
            "rank": k + 1,
            "score": float(columns[0][k]),
            "objectives": {n: float(columns[j + 1][k]) for j, n in enumerate(names)},
        }
        for k, i in enumerate(order.tolist())
    ]
    assert written == orjson.dumps(plain)
    before, after = data.draw(st.binary(max_size=40)), data.draw(st.binary(max_size=40))
    around = speedups.write_items(ids, order, orjson.dumps, tokens, pieces, before, after)
    assert around == before + written + after


@needs_c
def test_write_items_writes_plain_ids_itself_and_asks_escape_for_the_rest() -> None:
    pieces = [b"<", b"|", b"|", b">"]
    ids = ["plain", 'quote"', "back\\slash", "tab\t", "caf\u00e9", "\x7f", "~ !"]
    asked: list[str] = []

    def escape(id_: str) -> bytes:
        asked.append(id_)
        return orjson.dumps(id_)

    order = np.arange(len(ids))
    written = speedups.write_items(ids, order, escape, [orjson.dumps(order.tolist())], pieces)
    assert (
        written
        == b"["
        + b",".join(b"<" + orjson.dumps(id_) + b"|%d|%d>" % (k + 1, k) for k, id_ in enumerate(ids))
        + b"]"
    )
    # ASCII that JSON writes as is (DEL, space and tilde included) never goes through escape
    assert asked == ['quote"', "back\\slash", "tab\t", "caf\u00e9"]


@needs_c
def test_write_items_declines_what_does_not_match_the_order() -> None:
    pieces = [b"<", b"|", b"|", b">"]
    two = np.array([0, 1])
    dumps = orjson.dumps
    assert speedups.write_items(["a", "b"], two, dumps, [b"[1,2]"], pieces) == (
        b'[<"a"|1|1>,<"b"|2|2>]'
    )
    assert speedups.write_items(["a", "b"], np.array([1]), dumps, [b"[7]"], pieces) == (
        b'[<"b"|1|7>]'
    )
    assert speedups.write_items(["a", "b"], two, dumps, [b"[1]"], pieces) is None  # too few
    assert speedups.write_items(["a", "b"], two[:1], dumps, [b"[1,2]"], pieces) is None  # too many
    assert speedups.write_items(["a"], two[:1], dumps, [b"1"], pieces) is None  # not an array
    assert speedups.write_items(["a", 1], two, dumps, [b"[1,2]"], pieces) is None  # type: ignore[list-item]
    assert speedups.write_items(["a", "b"], two.astype(np.int32), dumps, [b"[1,2]"], pieces) is None
    assert speedups.write_items(["a", "b"], [0, 1], dumps, [b"[1,2]"], pieces) is None
    empty = np.array([], dtype=np.intp)
    assert speedups.write_items([], empty, dumps, [b"[]"], pieces) == b"[]"
    assert speedups.write_items([], empty, dumps, [b"[]"], pieces, b"{", b"}") == b"{[]}"
    with pytest.raises(IndexError, match="not an index"):
        speedups.write_items(["a"], np.array([1]), dumps, [b"[1]"], pieces)
    with pytest.raises(ValueError, match="pieces"):
        speedups.write_items(["a"], two[:1], dumps, [b"[1]"], pieces[:2])


BOUNDS = np.array([-1.0, 0.0, 0.001, 0.5, 0.99, 1.0, 10.0, 1000.0])
SCORES = st.one_of(
    st.floats(width=64),
    st.sampled_from([*BOUNDS.tolist(), -0.0, np.nextafter(0.5, 1), np.nextafter(0.5, 0)]),
)


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(SCORES, max_size=40), min_size=1, max_size=4), st.integers(0, 8))
def test_bucket_counts_equal_searchsorted_and_bincount(
    columns: list[list[float]], bounds: int
) -> None:
    """Every float (NaN and infinities dropped, -0.0, values on and next to the bounds) counted in
    the slot numpy's ``searchsorted(side="left")`` gives it, the sums those of the finite values;
    with no bounds, one slot."""
    upper = BOUNDS[:bounds]
    arrays = [np.asarray(column, dtype=np.float64) for column in columns]
    counts = [np.full(bounds + 1, 7, dtype=np.int64) for _ in arrays]  # counts add up
    sums = speedups.bucket_counts(upper, arrays, counts)
    assert sums is not None
    for array, got, total in zip(arrays, counts, sums, strict=True):
        finite = array[np.isfinite(array)]
        slots = np.searchsorted(upper, finite, side="left")
        assert got.tolist() == (7 + np.bincount(slots, minlength=bounds + 1)).tolist()
        if np.abs(finite).max(initial=0.0) < 1e300:  # sums in another order may overflow apart
            # a sum in order: within n * eps of the exact sum, relative to the sum of magnitudes
            bound = 1e-13 * math.fsum(np.abs(finite).tolist())
            assert abs(total - math.fsum(finite.tolist())) <= bound


def _wide_scores() -> st.SearchStrategy[float]:
    """Scores of every size and sign, with the histograms' own bounds and their neighbours."""
    bounds = sorted({*OBJECTIVE_BUCKETS, *FUSED_BUCKETS})
    near = [
        b for bound in bounds for b in (np.nextafter(bound, -np.inf), np.nextafter(bound, np.inf))
    ]
    return st.one_of(
        st.floats(width=64),
        st.floats(1e-9, 2e3),
        st.sampled_from([*bounds, *near, 0.0, -0.0, 5e-324, 1e-300, 2.0**-30]),
    )


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.lists(_wide_scores(), max_size=60), st.sampled_from(["objective", "fused", "few"]))
def test_bucket_counts_with_the_guide_equal_searchsorted(values: list[float], which: str) -> None:
    """The guided lookup puts every value in numpy's slot: values on, next to and between the
    bounds, below the guide's first cell, past its last, zero, negative and subnormal."""
    upper = {
        "objective": np.asarray(OBJECTIVE_BUCKETS, dtype=np.float64),
        "fused": np.asarray(FUSED_BUCKETS, dtype=np.float64),
        "few": np.array([0.25, 0.75]),  # two bounds a power of two apart
    }[which]
    guide = bucket_guide(upper)
    assert guide is not None
    array = np.asarray(values, dtype=np.float64)
    counts = np.zeros(len(upper) + 1, dtype=np.int64)
    assert speedups.bucket_counts(upper, [array], [counts], *guide) is not None
    finite = array[np.isfinite(array)]
    slots = np.searchsorted(upper, finite, side="left")
    assert counts.tolist() == np.bincount(slots, minlength=len(upper) + 1).tolist()


@needs_c
def test_bucket_counts_with_a_wrong_guide_stays_within_the_counts() -> None:
    """A guide made for other bounds (entries past the bounds, negative) miscounts at worst: every
    finite value is still counted once, in one of the histogram's slots."""
    upper = np.array([0.1, 0.5, 1.0])
    values = np.linspace(1e-6, 3.0, 1000)
    guide_from, _ = bucket_guide(upper) or (0, None)
    for wrong in (np.full(4000, 10**9), np.full(4000, -5), np.arange(4000) % 7):
        counts = np.zeros(4, dtype=np.int64)
        assert speedups.bucket_counts(upper, [values], [counts], guide_from, wrong) is not None
        assert counts.sum() == values.size
    assert speedups.bucket_counts(upper, [values], [np.zeros(4, np.int64)], 0, b"x" * 8) is None


def test_no_bucket_guide_without_a_positive_bound() -> None:
    assert bucket_guide(np.array([-1.0, 0.0])) is None
    assert bucket_guide(np.array([], dtype=np.float64)) is None


@needs_c
def test_bucket_counts_declines_buffers_of_another_kind_and_counts_nothing() -> None:
    upper = np.array([0.5, 1.0])
    column = np.array([0.2, 0.7])
    fine = np.zeros(3, dtype=np.int64)
    declined: list[tuple[list[Any], list[Any]]] = [
        ([column.astype(np.float32)], [np.zeros(3, dtype=np.int64)]),
        ([column], [np.zeros(3, dtype=np.int32)]),
        ([column], [np.zeros(4, dtype=np.int64)]),
        ([column, column], [fine, np.zeros(3, dtype=np.int64)[::-1]]),  # a column counted first
        ([column, column], [fine]),
        ([np.ones((2, 2))], [np.zeros(3, dtype=np.int64)]),
        ([b"not floats"], [np.zeros(3, dtype=np.int64)]),
    ]
    for columns, counts in declined:
        assert speedups.bucket_counts(upper, columns, counts) is None
        assert not fine.any()
    assert speedups.bucket_counts(upper.astype(np.float32), [column], [fine]) is None
    read_only = np.zeros(3, dtype=np.int64)
    read_only.flags.writeable = False
    assert speedups.bucket_counts(upper, [column], [read_only]) is None
    sums = speedups.bucket_counts(upper, [column[::-1]], [fine])
    assert sums is not None
    assert sums[0] == pytest.approx(0.9)
    assert fine.tolist() == [1, 1, 0]


@pytest.mark.skipif(
    os.environ.get("MTRANK_REQUIRE_SPEEDUPS") != "1", reason="MTRANK_REQUIRE_SPEEDUPS unset"
)
def test_the_extension_is_built_where_ci_requires_it() -> None:
    """.ci/run sets MTRANK_REQUIRE_SPEEDUPS=1: a C build that silently failed must not pass CI."""
    assert speedups is not None, "service._speedups did not build: is a C compiler installed?"
    assert speedups.encode_ids([1], None, 10) is not None
