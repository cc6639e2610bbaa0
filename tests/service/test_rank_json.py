"""``parse_rank_body``, the C reader of /rank bodies, against msgspec, which it stands in for.

Whatever it reads it must read as msgspec does: the same numbers bit for bit (ints within int64,
floats correctly rounded, -0.0 kept), the same strings, the same nested values, and the list form's
rows as the same columns ``rank_body`` makes of msgspec's structs. Whatever it is not sure of
it declines (None), and the tests pin that it declines each such case, and that it does *not*
decline the bodies clients send, so the fast path is the one they get.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import rank_body
from service.json_body import BodyLimits

try:
    from service import _speedups as speedups
except ImportError:
    speedups = None  # type: ignore[assignment]
pytestmark = pytest.mark.skipif(speedups is None, reason="service._speedups not built")

ROWS = [
    {"id": "item-0", "features": {"item_id": 574, "item_category": "cat9", "item_price": 58.88}},
    {"id": "item-1", "features": {"item_id": 992, "item_category": "cat16", "item_price": 11}},
    {"id": "日本-2", "features": {"item_id": -3, "item_category": None, "item_price": -0.0}},
]
HEAD = {
    "request_id": "r-1",
    "user": {"id": "u", "features": {"user_id": 7, "history": [1, "i9", 3], "score": 0.5}},
    "context": {"hour": 16, "device": "ios", "nested": {"a": [True, False, None, {}]}},
    "top_k": 2,
    "explain": True,
}


def expected(body: bytes) -> tuple[dict[str, Any], Any]:
    """What msgspec makes of the body, in ``parse_rank_body``'s shape."""
    members = msgspec.json.decode(body)
    del members["candidates"]
    return members, rank_body._candidates(rank_body._decoder.decode(body).candidates)


def identical(a: Any, b: Any) -> bool:
    """Equal, with the same types throughout and floats bit for bit (-0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def parse(body: bytes) -> Any:
    assert speedups is not None
    return speedups.parse_rank_body(body)


def assert_reads_as_msgspec(body: bytes) -> None:
    got = parse(body)
    assert got is not None, f"declined a body msgspec reads: {body[:200]!r}"
    assert identical(got, expected(body))


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps({**HEAD, "candidates": ROWS}),
        orjson.dumps({"candidates": ROWS, **HEAD}),
        orjson.dumps({**HEAD, "candidates": ROWS}, option=orjson.OPT_INDENT_2),
        orjson.dumps({"user": {"id": "u"}, "candidates": [{"id": "a"}, {"id": "b"}]}),
        orjson.dumps({"candidates": [{"features": {}, "id": "a"}, {"id": "b", "features": {}}]}),
        orjson.dumps({"candidates": [{"features": r["features"], "id": r["id"]} for r in ROWS]}),
        orjson.dumps({**HEAD, "candidates": {"ids": ["a", "b"], "features": {"x": [1, None]}}}),
        orjson.dumps({"candidates": {"ids": ["a", "b"]}}),
        b'{"candidates": { "ids" : [ "a" ] , "features" : { "x" : [ -0.0 ] , "y" : [ "s" ] } } }',
        orjson.dumps({"candidates": [{"id": "a", "features": {"s": "x:y,z}{]["}}]}),
        b' \r\n\t{ "candidates" : [ { "id" : "a" , "features" : { "x" : 1.5e-3 } } ] } \n',
    ],
    ids=[
        "list",
        "candidates first",
        "indented",
        "ids only",
        "empty features",
        "features first",
        "columnar",
        "columnar ids only",
        "columnar with whitespace",
        "json punctuation in a string",
        "whitespace everywhere",
    ],
)
def test_bodies_clients_send_are_read_as_msgspec_reads_them(body: bytes) -> None:
    assert_reads_as_msgspec(body)


def test_rows_become_columns_under_the_first_rows_names() -> None:
    members, (ids, columns, columnar, keys) = parse(orjson.dumps({**HEAD, "candidates": ROWS}))
    assert not columnar
    assert members == HEAD
    assert ids == ["item-0", "item-1", "日本-2"]
    assert list(columns) == ["item_id", "item_category", "item_price"]
    assert columns["item_price"] == [58.88, 11, -0.0]
    assert keys == 3 * (2 + 3)  # each row's id and features, and its three names


REPEATED_KEYS = {
    "member": b'{"top_k":1,"top_k":2,"user":{"id":"u"},"candidates":[{"id":"a"}]}',
    "user": b'{"user":{"id":"u","id":"v"},"candidates":[{"id":"a"}]}',
    "user feature": b'{"user":{"id":"u","features":{"x":1,"x":2}},"candidates":[{"id":"a"}]}',
    "context": b'{"user":{"id":"u"},"context":{"h":1,"d":"a","h":2},"candidates":[{"id":"a"}]}',
    "nested": b'{"user":{"id":"u"},"context":{"n":{"a":[{"b":1,"b":1}]}},"candidates":[{"id":"a"}]}',
    "fusion": b'{"user":{"id":"u"},"fusion":{"kind":"weighted_sum","kind":"power_product",'
    b'"terms":{"click":{"weight":1}}},"candidates":[{"id":"a"}]}',
    "first row": b'{"user":{"id":"u"},"candidates":[{"id":"a","features":{"x":1,"x":2}},'
    b'{"id":"b","features":{"x":1}}]}',
    "later row": b'{"user":{"id":"u"},"candidates":[{"id":"a","features":{"x":1}},'
    b'{"id":"b","features":{"x":1,"x":2}}]}',
    "row id": b'{"user":{"id":"u"},"candidates":[{"id":"a","id":"b"}]}',
    "row features": b'{"user":{"id":"u"},"candidates":[{"id":"a","features":{},"features":{}}]}',
    "column": b'{"user":{"id":"u"},"candidates":{"ids":["a"],"features":{"x":[1],"x":[2]}}}',
}


@pytest.mark.parametrize("body", REPEATED_KEYS.values(), ids=REPEATED_KEYS.keys())
def test_a_key_repeated_in_any_object_is_declined_and_left_to_pydantic(body: bytes) -> None:
    """msgspec keeps a repeated key's last value where pydantic validates both: the reader
    declines, so rank_body need not count a body's colons, and the fast path leaves it too."""
    assert msgspec.json.decode(body) is not None  # valid JSON: nothing else declines it
    assert parse(body) is None
    assert rank_body.parse_fast(body, BodyLimits(max_candidates=10, max_sequence_length=5)) is None


def number_body(token: bytes) -> bytes:
    return b'{"candidates":[{"id":"a","features":{"x":' + token + b"}}]}"


def assert_number_as_msgspec(token: bytes) -> None:
    """The token read in a candidate row and in the user: as msgspec reads it, or declined only
    where the fast path may not take it (msgspec's typed row refuses it, or it is past int64)."""
    try:
        reference = msgspec.json.decode(token)
    except msgspec.DecodeError:
        assert parse(number_body(token)) is None
        return
    got = parse(number_body(token))
    in_int64 = not isinstance(reference, int) or -(2**63) <= reference < 2**63
    if not in_int64:
        assert got is None
        return
    assert got is not None, token
    assert identical(got[1][1]["x"], [reference]), (token, got[1][1]["x"], reference)
    columnar = parse(b'{"candidates":{"ids":["a"],"features":{"x":[' + token + b"]}}}")
    assert columnar is not None
    assert identical(columnar[1][1]["x"], [reference])


@settings(max_examples=2000, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["r", ".17g", ".16e", ".3e", ".1f", ".20f", ".25g", ".40e", "E"]),
)
def test_floats_are_read_bit_for_bit(value: float, style: str) -> None:
    if style == "r":
        token = repr(value)
    elif style == "E":
        token = f"{value:.12E}".replace("E+", "E")
    else:
        token = format(value, style)
    assert_number_as_msgspec(token.encode())


@settings(max_examples=1000, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**25),
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=-340, max_value=340),
    st.booleans(),
)
def test_decimal_tokens_are_read_bit_for_bit(
    digits: int, fraction: int, exponent: int, negative: bool
) -> None:
    """Mantissas past 2^53 and 19 digits, exponents past 1e22 and the float range: Clinger's path
    and CPython's parser must agree with msgspec wherever each is taken."""
    text = str(digits).rjust(fraction + 1, "0")
    mantissa = (
        f"{text[: len(text) - fraction]}.{text[len(text) - fraction :]}" if fraction else text
    )
    token = f"{'-' if negative else ''}{mantissa}e{exponent}"
    assert_number_as_msgspec(token.encode())


@pytest.mark.parametrize(
    "token",
    [
        b"0", b"-0", b"1", b"-1", b"9223372036854775807", b"-9223372036854775808",
        b"9223372036854775808", b"-9223372036854775809", b"99999999999999999999", b"0.0", b"-0.0",
        b"1e-400", b"-1e-400", b"1e308", b"1.7976931348623157e308", b"1.7976931348623159e308",
        b"1e309", b"4.9e-324", b"2.2250738585072011e-308", b"9007199254740993.0",
        b"0.1000000000000000055511151231257827021181583404541015625", b"1E+2", b"1e-2", b"0e999999",
        b"123456789012345678901234567890.5", b"1e-1000000", b"-1e-99999999999999999999",
        b"1e+0000000000000000000001", b"1234567890123456789012345e-330",
    ],
)  # fmt: skip
def test_edge_numbers_are_read_as_msgspec_reads_them(token: bytes) -> None:
    assert_number_as_msgspec(token)


@pytest.mark.parametrize(
    "token", [b"01", b"-", b"1.", b".5", b"+1", b"1e", b"1e+", b"NaN", b"Infinity", b"-Infinity",
              b"0x10", b"1_0", b"--1", b"true", b"[1]", b"{}"],
)  # fmt: skip
def test_what_is_not_a_feature_value_is_declined(token: bytes) -> None:
    assert parse(number_body(token)) is None


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=20))
def test_strings_are_read_as_msgspec_reads_them_or_declined(text: str) -> None:
    body = orjson.dumps({"candidates": [{"id": "a", "features": {"s": text}}], "request_id": text})
    got = parse(body)
    plain = not any(c in text for c in '"\\') and all(ord(c) >= 0x20 for c in text)
    if plain:
        assert got is not None
    if got is not None:
        assert identical(got, expected(body))


# strings that repeat: more of one length than a body has slots to share them in (so two of them
# always meet in one slot), ones that differ in their last byte or in a multi-byte character, and
# lengths either side of the 32 bytes up to which a repeated string is shared
_POOL = [
    *(f"v{k:03d}" for k in range(200)),
    *("x" * size + end for size in (30, 31, 32, 33, 40) for end in ("a", "b", "日")),
    "",
]
_CELLS = st.lists(
    st.one_of(st.sampled_from(_POOL), st.integers(0, 3), st.none()),
    min_size=1,
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(_CELLS, _CELLS)
def test_repeated_feature_strings_are_each_read_as_written(
    first: list[Any], second: list[Any]
) -> None:
    """A string met again in the candidates' features is shared, never confused with another."""
    n = min(len(first), len(second))
    rows = [{"id": f"c{k}", "features": {"s": first[k], "t": second[k]}} for k in range(n)]
    listed = orjson.dumps({"candidates": rows})
    columnar = orjson.dumps(
        {
            "candidates": {
                "ids": [r["id"] for r in rows],
                "features": {"s": first[:n], "t": second[:n]},
            }
        }
    )
    for body in (listed, columnar):
        assert_reads_as_msgspec(body)
        _, (_, columns, _, _) = parse(body)
        assert columns == {"s": first[:n], "t": second[:n]}


@pytest.mark.parametrize(
    "body",
    [
        b'{"candidates":[{"id":"a\\u0062"}]}',
        b'{"candidates":[{"id":"a\tb"}]}',
        b'{"candidates":[{"id":"\xff"}]}',
        b'{"candidates":[{"id":"\xed\xa0\x80"}]}',  # a lone surrogate in UTF-8
        b'{"candidates":[{"id":"a"}],"candidates":[{"id":"b"}]}',
        b'{"top_k":1,"top_k":2,"candidates":[{"id":"a"}]}',
        b'{"candidates":[{"id":"a","extra":1}]}',
        b'{"candidates":[{"id":"a","id":"b"}]}',
        b'{"candidates":[{"id":"a","features":{"x":true}}]}',
        b'{"candidates":[{"id":"a","features":{"x":[1]}}]}',
        b'{"candidates":[{"id":"a","features":{"x":1,"x":2}}]}',
        b'{"candidates":[{"id":"a","features":{"x":1,"y":2}},{"id":"b","features":{"y":2,"x":1}}]}',
        b'{"candidates":[{"id":"a","features":{"x":1}},{"id":"b","features":{}}]}',
        b'{"candidates":[{"id":"a","features":{"x":1}},{"id":"b"}]}',
        b'{"candidates":[{"id":"a"},{"id":"b","features":{"x":1}}]}',
        b'{"candidates":[{"id":""}]}',
        b'{"candidates":[{"id":"' + b"x" * 257 + b'"}]}',
        b'{"candidates":[{"id":1}]}',
        b'{"candidates":[]}',
        b'{"candidates":[{"id":"a"}]} x',
        b'\xef\xbb\xbf{"candidates":[{"id":"a"}]}',
        b'{"candidates":[{"id":"a"}],"user":' + b"[" * 70 + b"]" * 70 + b"}",
        b'{"candidates":[{"id":"a"}],"user":{"x":1,}}',
        b'{"candidates":{"features":{"x":[1]},"ids":["a"]}}',
        b'{"candidates":{"ids":["a","b"],"features":{"x":[1]}}}',
        b'{"candidates":{"ids":["a"],"features":{"x":[true]}}}',
        b'{"candidates":{"ids":["a"],"features":{"x":[[1]]}}}',
        b'{"candidates":{"ids":["a"],"features":{"x":1}}}',
        b'{"candidates":{"ids":["a"],"extra":1}}',
        b'{"candidates":{"ids":[]}}',
        b'{"candidates":{"ids":[""]}}',
        b'{"candidates":{"ids":[1]}}',
        b'{"candidates":{}}',
        b'{"candidates":null}',
        b'{"candidates":[{"id":"a"},]}',
        b'{"candidates":[{"id":"a"}]',
        b'{"user":{}}',
        b"[]",
        b"",
    ],
)
def test_what_it_is_not_sure_of_is_declined(body: bytes) -> None:
    assert parse(body) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
    max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(JSON, JSON)
def test_any_member_value_is_read_as_msgspec_reads_it(user: Any, context: Any) -> None:
    body = orjson.dumps({"user": user, "context": context, "candidates": [{"id": "a"}]})
    got = parse(body)
    if got is not None:  # declined only for an escape in a string
        assert identical(got, expected(body))
    else:
        assert b"\\" in body


def _rows(ids: list[str]) -> bytes:
    return orjson.dumps({"user": {"id": "u"}, "candidates": [{"id": i} for i in ids]})


def _columns(ids: list[str]) -> bytes:
    return orjson.dumps({"user": {"id": "u"}, "candidates": {"ids": ids}})


MANY = [f"item-{k}" for k in range(5000)]  # past the first table's room: it grows while reading


@pytest.mark.parametrize("form", [_rows, _columns], ids=["list", "columnar"])
@pytest.mark.parametrize(
    "ids",
    [
        ["a", "b", "a"],
        ["日本", "x", "日本"],
        [*MANY, "item-0"],  # the first id again, after the table grew twice
        [*MANY[:2500], "item-17", *MANY[2500:]],
    ],
    ids=["adjacent", "non-ascii", "first again after growth", "middle"],
)
def test_an_id_named_twice_is_declined_and_left_to_pydantic(form: Any, ids: list[str]) -> None:
    """The reader declines a repeated candidate id (pydantic names the repeat), so rank_body need
    not put a body's ids in a set; msgspec reads the same body."""
    body = form(ids)
    assert msgspec.json.decode(body) is not None
    assert parse(body) is None
    assert (
        rank_body.parse_fast(body, BodyLimits(max_candidates=10_000, max_sequence_length=50))
        is None
    )


@pytest.mark.parametrize("form", [_rows, _columns], ids=["list", "columnar"])
def test_many_distinct_ids_are_all_read(form: Any) -> None:
    """Ids that share prefixes, differ by one byte or in length, all distinct, through growth."""
    ids = [*MANY, "item-", "item-00", "item-0 ", "Item-0", "日本", "日本語"]
    _, (got, _, _, _) = parse(form(ids))
    assert got == ids


def _fnv1a(text: str) -> int:
    hash_ = 14695981039346656037
    for byte in text.encode():
        hash_ = ((hash_ ^ byte) * 1099511628211) % 2**64
    return hash_


def test_ids_made_to_collide_are_left_to_the_msgspec_path() -> None:
    """Distinct ids whose hashes share one slot of the reader's table cost it a bounded probe each:
    past 64 it declines, and the msgspec path reads them (a hostile body costs no quadratic time)."""
    crowded = [f"x{k}" for k in range(200_000) if _fnv1a(f"x{k}") % 1024 == 0][:80]
    assert len(crowded) == 80
    body = _rows(crowded)
    assert parse(body) is None
    parsed = rank_body.parse_fast(body, BodyLimits(max_candidates=100, max_sequence_length=50))
    assert parsed is not None
    assert parsed.input.candidate_ids == crowded
