"""The /rank body's fast path: orjson plus column-wise checks, straight into a :class:`RankInput`.

Validating a 500-candidate body into pydantic objects (``RankRequest``) costs about 6x parsing it
with orjson, and the objects are then turned into columns anyway. :func:`parse_fast` parses with
orjson and checks the body column by column with C-level passes (``map(type, ...)``, ``set``
unions) against the same rules as ``service.schemas``, and returns the engine's input directly.

It only ever *accepts* a body the pydantic path accepts, with the same values; whenever it is not
sure it returns ``None`` and ``parse_rank_request`` runs the pydantic path, which is the one source of
every error answer (so a refused body gets exactly the answer it always got). It declines:

* anything orjson refuses (NaN, Infinity, 1e309, bad UTF-8, lone surrogates, deep nesting);
* a float of magnitude >= 2**63 (orjson reads an integer past 64 bits as a float, which pydantic
  would refuse as an id or accept as a big int); an integer past int64;
* duplicate object keys (orjson keeps the last, pydantic validates every one): the body's colons
  outside strings must equal the keys parsed;
* a wrong type, a missing or unknown field, a limit exceeded, duplicate ids, a list in a candidate
  feature, a fusion override pydantic refuses: every rule of ``RankRequest`` and ``check_limits``.

``tests/service/test_rank_body.py`` runs both paths over a corpus of good and bad bodies.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from operator import itemgetter, methodcaller
from typing import TYPE_CHECKING, Any, TypeGuard

import orjson
from pydantic import ValidationError

from service.contracts.fusion import FusionSpec
from service.schemas import ColumnarCandidates, RankRequest
from service.scoring.assembly import RankInput

if TYPE_CHECKING:
    from service.json_body import BodyLimits

_TOP = frozenset(RankRequest.model_fields)
_ROW = frozenset({"id", "features"})
_COLUMNS = frozenset({"ids", "features"})
_VALUE: frozenset[type] = frozenset({str, int, float, list, type(None)})
_CANDIDATE_VALUE: frozenset[type] = frozenset({str, int, float, type(None)})  # lists: pydantic's
_SEQUENCE_ID: frozenset[type] = frozenset({str, int})
_INT64_MAX = 2**63 - 1
_BIG_FLOAT = 2.0**63  # orjson reads integers past 64 bits as floats: one this large may be one
_NO_FEATURES: dict[str, Any] = {}
_get_id = itemgetter("id")
_get_features = methodcaller("get", "features", _NO_FEATURES)


@dataclass(frozen=True, slots=True)
class ParsedRank:
    """A validated /rank body: the engine's input plus what the response echoes."""

    input: RankInput
    request_id: str | None
    explain: bool


def from_request(request: RankRequest) -> ParsedRank:
    """The pydantic path's result as the engine's input."""
    return ParsedRank(
        RankInput(
            user_id=request.user.id,
            user_features=dict(request.user.features),
            context=dict(request.context),
            candidate_ids=request.candidate_ids(),
            candidate_features=request.candidate_columns(),
            fusion=request.fusion,
            fusion_preset=request.fusion_preset,
            top_k=request.top_k,
            candidates_columnar=isinstance(request.candidates, ColumnarCandidates),
        ),
        request.request_id,
        request.explain,
    )


def parse_fast(body: bytes, limits: BodyLimits) -> ParsedRank | None:
    """The body as a :class:`ParsedRank`, or ``None`` when the pydantic path must decide."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or not data.keys() <= _TOP:
        return None
    scalars = _scalars(data)
    user = data.get("user")
    if scalars is None or type(user) is not dict or not user.keys() <= _ROW:
        return None
    user_id = user.get("id")
    user_features = user.get("features", _NO_FEATURES)
    context = data.get("context", _NO_FEATURES)
    if (user_id is not None and not _is_id(user_id)) or (user_id is None and not user_features):
        return None
    sequence_limit = limits.max_sequence_length
    if not (_features(user_features, sequence_limit) and _features(context, sequence_limit)):
        return None
    fusion, fusion_keys = _fusion(data.get("fusion"))
    if fusion_keys < 0 or (fusion is not None and data.get("fusion_preset") is not None):
        return None
    candidates = _candidates(data.get("candidates"), limits.max_candidates)
    if candidates is None:
        return None
    ids, columns, columnar, candidate_keys = candidates
    keys = len(data) + len(user) + len(user_features) + len(context) + fusion_keys
    if not _keys_unique(body, keys + candidate_keys):
        return None
    request_id, top_k, explain = scalars
    return ParsedRank(
        RankInput(
            user_id=user_id,
            user_features=dict(user_features),
            context=dict(context),
            candidate_ids=ids,
            candidate_features=columns,
            fusion=fusion,
            fusion_preset=data.get("fusion_preset"),
            top_k=top_k,
            candidates_columnar=columnar,
        ),
        request_id,
        explain,
    )


def _scalars(data: dict[str, Any]) -> tuple[str | None, int | None, bool] | None:
    """(request_id, top_k, explain) when they and fusion_preset are valid."""
    request_id = data.get("request_id")
    preset = data.get("fusion_preset")
    top_k = data.get("top_k")
    explain = data.get("explain", False)
    if request_id is not None and not (type(request_id) is str and len(request_id) <= 128):
        return None
    if preset is not None and not (type(preset) is str and 1 <= len(preset) <= 64):
        return None
    if top_k is not None and not (type(top_k) is int and top_k >= 1):
        return None
    if type(explain) is not bool:
        return None
    return request_id, top_k, explain


def _is_id(value: Any) -> bool:
    return type(value) is str and 1 <= len(value) <= 256


def _ids(values: Any) -> TypeGuard[list[str]]:
    """A non-empty list of ids (strings of 1 to 256 characters)."""
    return (
        type(values) is list
        and bool(values)
        and set(map(type, values)) == {str}
        and min(map(len, values)) >= 1
        and max(map(len, values)) <= 256
    )


def _numbers_ok(values: list[Any], types: set[type]) -> bool:
    """Integers within int64, floats below 2**63 in magnitude (see the module docstring)."""
    if int in types:
        ints = values if types == {int} else [v for v in values if type(v) is int]
        if max(ints) > _INT64_MAX:  # orjson gives floats below int64's minimum: checked next
            return False
    if float in types:
        floats = values if types == {float} else [v for v in values if type(v) is float]
        if max(map(abs, floats)) >= _BIG_FLOAT:
            return False
    return True


def _column(values: Any, allowed: frozenset[type]) -> bool:
    """A list of feature values of ``allowed`` types, numbers in range."""
    if type(values) is not list:
        return False
    types = set(map(type, values))
    return types <= allowed and _numbers_ok(values, types)


def _features(features: Any, sequence_limit: int) -> bool:
    """A ``{name: value}`` object; sequences (lists of ids) at most ``sequence_limit`` long."""
    if type(features) is not dict:
        return False
    values = list(features.values())
    if not _column(values, _VALUE):
        return False
    for value in values:
        if type(value) is list and (
            len(value) > sequence_limit or not _column(value, _SEQUENCE_ID)
        ):
            return False
    return True


def _fusion(fusion: Any) -> tuple[FusionSpec | None, int]:
    """(the override, its object keys), (None, 0) when absent, (None, -1) when pydantic decides."""
    if fusion is None:
        return None, 0
    keys = _plain_keys(fusion)
    if keys < 0:
        return None, -1
    try:  # the same JSON validator the pydantic path runs on this part of the body
        return FusionSpec.model_validate_json(orjson.dumps(fusion)), keys
    except ValidationError:
        return None, -1


def _plain_keys(value: Any) -> int:
    """Object keys in a JSON value, or -1 when a float in it may hide an integer past 64 bits."""
    kind = type(value)
    if kind is dict:
        inner = [_plain_keys(v) for v in value.values()]
        return -1 if -1 in inner else len(value) + sum(inner)
    if kind is list:
        inner = [_plain_keys(v) for v in value]
        return -1 if -1 in inner else sum(inner)
    if kind is float and abs(value) >= _BIG_FLOAT:
        return -1
    return 0


def _candidates(
    candidates: Any, max_candidates: int
) -> tuple[list[str], dict[str, list[Any]], bool, int] | None:
    """(ids, feature columns, columnar?, object keys) of a valid candidate list, else None."""
    if type(candidates) is list:
        found = _rows(candidates)
        columnar = False
    elif type(candidates) is dict:
        found = _columns(candidates)
        columnar = True
    else:
        return None
    if found is None:
        return None
    ids, columns, keys = found
    if len(ids) > max_candidates or len(set(ids)) != len(ids):
        return None
    return ids, columns, columnar, keys


def _rows(rows: list[Any]) -> tuple[list[str], dict[str, list[Any]], int] | None:
    """``[{id, features}, ...]`` as ids and one column per feature (None where a row lacks it)."""
    if not rows or set(map(type, rows)) != {dict} or not set().union(*rows) <= _ROW:
        return None
    try:
        ids = list(map(_get_id, rows))
    except KeyError:
        return None
    features = list(map(_get_features, rows))
    if not _ids(ids) or set(map(type, features)) != {dict}:
        return None
    columns = _transpose(features)
    if not all(_column(column, _CANDIDATE_VALUE) for column in columns.values()):
        return None
    return ids, columns, sum(map(len, rows)) + sum(map(len, features))


def _transpose(features: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row feature objects as columns in first-seen name order, None where a row lacks a name."""
    names = list(set().union(*features))
    if not names:
        return {}
    if set(map(len, features)) == {len(names)}:  # every row has every name (the usual request)
        names = list(features[0])
        if len(names) == 1:
            return {names[0]: list(map(itemgetter(names[0]), features))}
        return dict(
            zip(
                names, map(list, zip(*map(itemgetter(*names), features), strict=False)), strict=True
            )
        )
    names = list(dict.fromkeys(itertools.chain.from_iterable(features)))
    return {name: list(map(methodcaller("get", name), features)) for name in names}


def _columns(candidates: dict[str, Any]) -> tuple[list[str], dict[str, list[Any]], int] | None:
    """``{ids, features: {name: [values]}}`` with every column as long as ``ids``."""
    ids = candidates.get("ids")
    features = candidates.get("features", _NO_FEATURES)
    if not candidates.keys() <= _COLUMNS or not _ids(ids) or type(features) is not dict:
        return None
    n = len(ids)
    for column in features.values():
        if not _column(column, _CANDIDATE_VALUE) or len(column) != n:
            return None
    return ids, dict(features), len(candidates) + len(features)


def _keys_unique(body: bytes, keys: int) -> bool:
    """No object in ``body`` repeats a key: its name separators (colons outside strings) number
    exactly the keys parsed. Colons inside strings are counted only when there are some."""
    colons = body.count(b":")
    if colons == keys:  # colons >= separators >= keys parsed: equal means no key was dropped
        return True
    if b"\\" in body:  # an escaped quote would hide where strings end: the pydantic path decides
        return False
    outside = b"".join(body.split(b'"')[0::2])  # with no escapes, every quote opens or closes one
    return outside.count(b":") == keys
