"""The fast /rank body path never accepts what the pydantic path refuses, and agrees where both accept.

Every body runs through both: ``validate_rank_request`` (pydantic, the source of every error answer)
and ``parse_fast``. A body pydantic refuses must be declined by the fast path (``None``); a body both
accept must give the same engine input. The corpus is the HTTP bad-input table
(``tests/service/api/test_bad_input.py``), raw JSON the two parsers could read differently, and
seeded random mutations of a valid body. Every test runs three times: with the body parsed in C
(``service._speedups.parse_rank_body``), with msgspec's decoding and the C twin of the rows-to-columns
pass, and as installed without a C compiler.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from service import rank_body
from service.errors import RankError
from service.json_body import BodyLimits, parse_rank_request, validate_rank_request
from service.rank_body import FIELDS, ParsedRank, from_request, parse_fast
from service.schemas import RankRequest
from tests.service.api.test_bad_input import CASES, MARK, _columnar

LIMITS = BodyLimits(max_candidates=50, max_sequence_length=40)
Body = dict[str, Any]


@pytest.fixture(autouse=True, params=["c_parser", "msgspec_c_columns", "python"])
def rows_to_columns(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The body parsed in C; decoded by msgspec with rows turned into columns in C; as installed
    without a C compiler."""
    if request.param != "c_parser":
        monkeypatch.setattr(rank_body, "_parse_body", None)
    if request.param == "python":
        monkeypatch.setattr(rank_body, "_speedups", None)
    elif importlib.util.find_spec("service._speedups") is None:
        pytest.skip("service._speedups not built (no C compiler)")


def example() -> Body:
    """A valid body shaped like the HTTP tests' example: five candidates ``item-0``..``item-4``."""
    rows = [
        {"item_id": 574, "item_category": "cat9", "item_price": 58.88, "item_popularity": 35.0},
        {"item_id": 992, "item_category": "cat16", "item_price": 11.24, "item_popularity": 23},
    ]
    return {
        "request_id": "req-1",
        "user": {
            "id": "703",
            "features": {"user_id": 703, "user_age": "35-44", "history": [685, 396, "i9"]},
        },
        "context": {"hour": 16, "device": "android"},
        "candidates": [
            {"id": f"item-{i}", "features": copy.deepcopy(rows[i % 2])} for i in range(5)
        ],
        "top_k": 3,
        "explain": True,
    }


def slow(body: bytes) -> ParsedRank | RankError:
    try:
        return from_request(validate_rank_request(body, LIMITS))
    except RankError as exc:
        return exc


def assert_agree(body: bytes) -> ParsedRank | None:
    """The contract between the two paths; returns the fast result."""
    expected = slow(body)
    fast = parse_fast(body, LIMITS)
    if isinstance(expected, RankError):
        assert fast is None, (
            f"fast path accepted a body pydantic refuses ({expected.field}): {body!r}"
        )
        with pytest.raises(RankError) as raised:
            parse_rank_request(body, LIMITS)
        assert (raised.value.status_code, raised.value.field, raised.value.message) == (
            expected.status_code,
            expected.field,
            expected.message,
        )
    elif fast is not None:
        assert fast == expected, body
    return fast


def _raw(body: Body, raw: str | None) -> bytes:
    text = json.dumps(body)
    return (text if raw is None else text.replace(json.dumps(MARK), raw)).encode()


@pytest.mark.parametrize(
    ("mutate", "raw"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_table_is_refused_by_both_paths_alike(
    mutate: Callable[[Body], Body], raw: str | None
) -> None:
    assert_agree(_raw(mutate(example()), raw))


@pytest.mark.parametrize("columnar", [False, True], ids=["rows", "columns"])
def test_valid_bodies_take_the_fast_path_with_the_same_input(columnar: bool) -> None:
    body = _columnar(example()) if columnar else example()
    for variant in (
        body,
        {**body, "fusion": {"kind": "power_product", "terms": {"click": {"weight": 0.5}}}},
        {**body, "fusion_preset": "balanced", "request_id": None, "top_k": None},
        {"user": {"features": {"history": []}}, "candidates": body["candidates"]},
    ):
        for text in (orjson.dumps(variant), json.dumps(variant, indent=2).encode()):
            fast = assert_agree(text)
            assert fast is not None, text
            assert fast.input.candidates_columnar is columnar


def test_colons_in_strings_keep_the_fast_path_unless_escapes_hide_string_ends() -> None:
    body = example()
    body["candidates"][0]["id"] = "urn:item:0"
    body["candidates"][1]["features"]["item_category"] = "c:d"
    fast = assert_agree(json.dumps(body).encode())
    assert fast is not None
    assert fast.input.candidate_ids[0] == "urn:item:0"
    body["request_id"] = 'a "quoted": id'  # escapes and colons: the pydantic path decides
    assert assert_agree(json.dumps(body).encode()) is None
    body["candidates"][0]["id"] = "urn"  # escapes but no colon inside a string: exact again
    body["candidates"][1]["features"]["item_category"] = "c"
    body["request_id"] = 'a "quoted" id'
    assert assert_agree(json.dumps(body).encode()) is not None


def test_a_duplicate_key_in_a_large_body_is_seen() -> None:
    """Large bodies count their colons another way (numpy); a repeated key still sends them to
    the pydantic path, wherever it is."""
    rows = [
        b'{"id": "c%d", "features": {"x": %d, "y": "%s"}}' % (k, k, b"y" * 90) for k in range(50)
    ]
    head = b'{"user": {"id": "u"}, "candidates": ['
    assert len(head + b", ".join(rows)) > 5_000
    assert assert_agree(head + b", ".join(rows) + b"]}") is not None
    for k in (0, 25, 49):
        repeated = rows.copy()
        repeated[k] = b'{"id": "c%d", "features": {"x": 1, "x": 2, "y": "y"}}' % k
        assert assert_agree(head + b", ".join(repeated) + b"]}") is None


TEMPLATE = (
    b'{"user": {"id": "u", "features": {"history": [1, 2]}}, '
    b'"candidates": [{"id": "a", "features": {"x": %s}}, {"id": "b"}]}'
)
RAW_VALUES = [
    b"1e-400", b"-0", b"-0.0", b"1E2", b"0.1e1", b"123456789012345678", b"9223372036854775807",
    b"9223372036854775808", b"18446744073709551615", b"18446744073709551616", b"-9223372036854775808",
    b"-9223372036854775809", b"1e19", b"9.3e18", b"-9.3e18", b"1.5", b"01", b"1.", b".5", b"+1",
    b"NaN", b"Infinity", b"-Infinity", b"1e309", b"true", b"null", b'"\\ud800"', b'"\\ud83d\\ude00"',
    b'"\\u0000"', b'"tab\there"', b'"\x7f"', b'"\xff"', b'"\xc3\xa9"', b'"\xed\xa0\x80"', b"[1, 2]",
    b'["a", 1]', b"[1.0]", b"{}", b'"a:b"', b'"\\":"',
]  # fmt: skip
RAW_BODIES = [
    *(TEMPLATE % value for value in RAW_VALUES),
    b'{"user": {"id": "u"}, "candidates": [{"id": "a", "features": {"x": true, "x": 1}}]}',
    b'{"user": {"id": "u"}, "candidates": [{"id": "a", "features": {"x": 1, "x": 1}}]}',
    b'{"user": {"id": "u"}, "top_k": true, "top_k": 2, "candidates": [{"id": "a"}]}',
    b'{"user": {"id": "u"}, "candidates": [{"id": "a"}], "candidates": [{"id": "b"}]}',
    b'{"user": {"id": "u"}, "candidates": [{"id": "a", "id": "b"}]}',
    b'{"user": {"id": "u"}, "candidates": [{"id": "a:1"}], "explain": 1, "explain": true}',
    b'{"user": {"id": "u"}, "candidates": [{"id": "a\\"", "features": {"x" : 1, "x": 1}}]}',
    b'{"user": {"id": "u"} , "candidates" : [{"id" : "a"}]}',
    b'{"user": {"id": "u"}, "candidates": {"ids": ["a"], "features": {"x": [1], "x": [true]}}}',
    b'{"user": {"id": "u"}, "candidates": {"ids": ["a"], "features": {"x": [1], "x": [2]}}}',
    b'{"user": {"id": "u"}, "candidates": {"ids": ["a"], "features": {"x": [1, 2], "x": [2]}}}',
    b'{"user": {"id": "u"}, "candidates": {"features": {"x": [1]}, "ids": ["a"]}}',
    b'{"user": {"id": "u"}, "candidates": {"ids": ["a"], "ids": ["b"]}}',
    b'{"user": {"id": "u"}, "candidates": {"ids": ["a", "a"]}}',
    b'{"user": {"id": "u"}, "candidates": [{"id": "a"}]} x',
    b'\xef\xbb\xbf{"user": {"id": "u"}, "candidates": [{"id": "a"}]}',
    b'{"user": {"id": "u"}, "candidates": [{"id": "a"}],}',
    b'{"user": {"id": "u"}, "candidates": [{"id": "a", "features": {"x": [[[[]]]]}}]}',
    b'{"user": {"id": "u"}, "fusion": {"kind": "weighted_sum", "terms": {"click": {"weight": 1e19}}}, '
    b'"candidates": [{"id": "a"}]}',
    b'{"user": {"id": "u"}, "fusion": {"kind": "weighted_sum", "kind": "max", '
    b'"terms": {"click": {"weight": 1}}}, "candidates": [{"id": "a"}]}',
    b"[" * 2000 + b"]" * 2000,
    b'{"user": {"id": "u", "features": {"x": ' + b"[" * 2000 + b"]" * 2000 + b"}}, "
    b'"candidates": [{"id": "a"}]}',
    b'{"user": {"id": "u", "features": {"x": 1e19, "y": -9.3e18}}, "candidates": [{"id": "a"}]}',
    *(
        template % big
        for big in (
            b"-9223372036854775809",
            b"9223372036854775808",
            b"123456789012345678901234567890",
        )
        for template in (
            b'{"user": {"id": "u", "features": {"x": %s}}, "candidates": [{"id": "a"}]}',
            b'{"user": {"id": "u"}, "context": {"h": %s}, "candidates": [{"id": "a"}]}',
            b'{"user": {"id": "u", "features": {"history": [1, %s]}}, "candidates": [{"id": "a"}]}',
            b'{"user": {"id": "u"}, "candidates": {"ids": ["a"], "features": {"x": [%s]}}}',
            b'{"user": {"id": "u"}, "fusion": {"kind": "weighted_sum", "terms": {"click": '
            b'{"weight": %s}}}, "candidates": [{"id": "a"}]}',
        )
    ),
]


@pytest.mark.parametrize("body", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_raw_json_the_parsers_could_read_differently(body: bytes) -> None:
    assert_agree(body)


MUTANTS: list[Any] = [
    None, True, False, 0, -1, 2**63 - 1, 2**63, 2**64, -(2**63), 1.5, 1e19, -1e300, "", "x",
    "a:b", 'q"uote', "\\", [], [1, "a"], [True], [1.5], [[1]], {}, {"a": 1}, [None],
]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _paths(item, (*prefix, index))
    return paths


def _mutated(body: Body, rng: random.Random) -> Body:
    body = copy.deepcopy(body)
    path = rng.choice(_paths(body)[1:])
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.2:
        parent[f"{path[-1]}_extra"] = rng.choice(MUTANTS)  # an unknown key
    elif isinstance(parent, dict) and rng.random() < 0.1:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(MUTANTS))
    return body


def test_random_mutations_of_valid_bodies() -> None:
    rng = random.Random(0)
    bases = [example(), _columnar(example())]
    accepted = 0
    for _ in range(3000):
        body = _mutated(rng.choice(bases), rng)
        if rng.random() < 0.3:
            body = _mutated(body, rng)
        accepted += assert_agree(json.dumps(body).encode()) is not None
    assert accepted > 100  # the fast path also takes mutants that stay valid


@pytest.mark.parametrize(
    ("body", "repeated"),
    [
        (
            b'{"user": {"id": "u"}, "candidates": [{"id": "a"}, {"id": "b", "features": {"x": 1}}, '
            b'{"id": "c", "features": {}}, {"id": "d"}]}',
            b'"id": "d"',
        ),
        (b'{"user": {"id": "u"}, "candidates": [{"id": "a"}]}', b'"id": "a"'),
        (b'{"user": {"id": "u"}, "candidates": {"ids": ["a", "b"]}}', b'"ids": ["a", "b"]'),
        (
            b'{"user": {"id": "u"}, "candidates": {"ids": ["a", "b"], "features": {}}}',
            b'"features": {}',
        ),
    ],
    ids=["some-rows-without-features", "no-row-features", "no-columns", "empty-columns"],
)
def test_candidates_without_features_take_the_fast_path(body: bytes, repeated: bytes) -> None:
    fast = assert_agree(body)
    assert fast is not None
    twice = body.replace(repeated, repeated + b", " + repeated)  # a repeated key: pydantic decides
    assert twice != body
    assert assert_agree(twice) is None


def test_fast_decoder_knows_every_field_of_the_request() -> None:
    assert set(FIELDS) == set(RankRequest.model_fields)


@pytest.mark.parametrize(
    ("rows", "columns"),
    [
        (
            [{"a": 1, "b": "x"}, {"b": "y", "a": 2}],  # the same names in another order
            {"a": [1, 2], "b": ["x", "y"]},
        ),
        (
            [{"a": 1, "b": 2}, {"a": 3, "c": 4}],  # as many names, not the same ones
            {"a": [1, 3], "b": [2, None], "c": [None, 4]},
        ),
        ([{"a": 1}, {"a": None, "b": 2.5}, {}], {"a": [1, None, None], "b": [None, 2.5, None]}),
    ],
    ids=["reordered", "same-count-other-names", "ragged"],
)
def test_rows_become_columns_in_first_seen_order(
    rows: list[Body], columns: dict[str, list[Any]]
) -> None:
    body = {
        "user": {"id": "u"},
        "candidates": [{"id": str(k), "features": row} for k, row in enumerate(rows)],
    }
    fast = assert_agree(orjson.dumps(body))
    assert fast is not None
    assert list(fast.input.candidate_features.items()) == list(columns.items())
