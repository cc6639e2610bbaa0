"""The /rank body's fast path: the body parsed in C (or by msgspec) plus a few checks, straight into a :class:`RankInput`.

Validating a 500-candidate body into pydantic objects (``RankRequest``) costs about 6x parsing it,
and the objects are then turned into columns anyway. :func:`parse_fast` reads the body in one of two
ways, then checks what it read against the same rules as ``service.schemas``:

* ``parse_rank_body`` in C (``service/_rank_json.c``): the list form's candidates go straight into
  the ids and one list per feature as the rows are read (no object per candidate), the columnar
  form's into the same lists, checked as msgspec checks them, every other member into plain values;
  about 2x faster than msgspec at 500 list candidates. It declines (and msgspec reads the body)
  whatever it is not sure of: an escape in a string, rows with other feature names than the first,
  a number it cannot read exactly;
* msgspec into small typed structs: the candidate rows (or columns) are checked while they are
  decoded (an id is a string of 1 to 256 characters, a feature value a string, an int64, a finite
  float or null, no unknown keys); the user, the context and the fusion override are plain JSON
  values.

It only ever *accepts* a body the pydantic path accepts, with the same values; whenever it is not
sure it returns ``None`` and ``parse_rank_request`` runs the pydantic path, which is the one source of
every error answer (so a refused body gets exactly the answer it always got). It declines:

* anything msgspec refuses (NaN, Infinity, 1e309, bad UTF-8, lone surrogates, deep nesting, a
  wrong type or a missing or unknown field in a candidate);
* an integer past int64 (pydantic takes it as a number, not an id);
* duplicate object keys (msgspec keeps the last, pydantic validates every one): the C parser
  declines a body with one, and of a body msgspec reads the colons outside strings must equal the
  keys decoded;
* a limit exceeded, duplicate ids (the C parser declines them as it reads the ids; of a body
  msgspec reads, a set of the ids is counted), a list in a candidate feature (pydantic's), a
  fusion override pydantic refuses: every other rule of ``RankRequest`` and ``check_limits``.

``tests/service/test_rank_body.py`` runs both paths over a corpus of good and bad bodies.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from operator import attrgetter, itemgetter, methodcaller
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, cast

import msgspec
import numpy as np
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType
from pydantic import ValidationError

from service.contracts.fusion import FusionSpec
from service.schemas import ColumnarCandidates, RankRequest
from service.scoring.assembly import RankInput

if TYPE_CHECKING:
    from service.json_body import BodyLimits

try:
    from service import _speedups
except ImportError:  # built without a C compiler: rows become columns in Python
    _speedups = None  # type: ignore[assignment]

_USER_KEYS = frozenset({"id", "features"})
_VALUE: frozenset[type] = frozenset({str, int, float, list, type(None)})
_SEQUENCE_ID: frozenset[type] = frozenset({str, int})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NO_FEATURES: dict[str, Any] = {}

_Scalar: TypeAlias = str | Annotated[int, Meta(ge=_INT64_MIN, le=_INT64_MAX)] | float | None
"""A candidate's feature value (msgspec refuses bool, NaN, Infinity and numbers past float range)."""
_Id: TypeAlias = Annotated[str, Meta(min_length=1, max_length=256)]


class _Row(Struct, forbid_unknown_fields=True, gc=False):
    """A candidate of the list form (a list value is pydantic's to read)."""

    id: _Id
    features: dict[str, _Scalar] | UnsetType = UNSET


class _Columns(Struct, forbid_unknown_fields=True, gc=False):
    """The columnar candidates; column lengths are checked after decoding."""

    ids: list[_Id]
    features: dict[str, list[_Scalar]] | UnsetType = UNSET


class _Body(Struct, forbid_unknown_fields=True):
    """A /rank body: the candidates typed, the rest plain JSON values checked by ``parse_fast``."""

    candidates: list[_Row] | _Columns
    request_id: Any = UNSET
    user: Any = UNSET
    context: Any = UNSET
    fusion: Any = UNSET
    fusion_preset: Any = UNSET
    top_k: Any = UNSET
    explain: Any = UNSET


FIELDS = _Body.__struct_fields__
_MEMBERS = frozenset(FIELDS) - {"candidates"}
_decoder = msgspec.json.Decoder(_Body)
_parse_body = None if _speedups is None else _speedups.parse_rank_body
_get_id = attrgetter("id")
_get_features = attrgetter("features")


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
    decoded = _decode(body)
    if decoded is None:
        return None
    data, candidates, by_reader = decoded
    scalars = _scalars(data)
    user = data.get("user")
    if scalars is None or type(user) is not dict or not user.keys() <= _USER_KEYS:
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
    if candidates is None:
        return None
    ids, columns, columnar, candidate_keys = candidates
    if len(ids) > limits.max_candidates or (not by_reader and len(set(ids)) != len(ids)):
        return None
    if not by_reader:  # read by msgspec: count the keys it kept against the body's colons
        # the body's members (candidates among them), then the objects within them
        keys = 1 + len(data) + len(user) + len(user_features) + len(context) + fusion_keys
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


_Candidates: TypeAlias = tuple[list[str], dict[str, list[Any]], bool, int]
"""(ids, feature columns, columnar?, object keys in the candidates)."""


def _decode(body: bytes) -> tuple[dict[str, Any], _Candidates | None, bool] | None:
    """(the members other than candidates, the candidates or None when they are not valid, whether
    the C reader read it), or None when the body is not one msgspec's typed decoder accepts. The C
    reader first (the list form's rows straight into columns; it declines a repeated key and a
    repeated candidate id, so what it reads needs no colon count and no set of its ids); whatever
    it declines, msgspec."""
    if _parse_body is not None:
        parsed = _parse_body(body)
        if parsed is not None:
            members, candidates = parsed
            if not members.keys() <= _MEMBERS:  # an unknown member: msgspec refuses it too
                return None
            return members, candidates, True
    try:
        decoded = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):  # a validation error is a DecodeError too
        return None
    data = {name: value for name in _MEMBERS if (value := getattr(decoded, name)) is not UNSET}
    return data, _candidates(decoded.candidates), False


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


def _column(values: list[Any], allowed: frozenset[type]) -> bool:
    """Values of ``allowed`` types; integers within int64 (msgspec keeps any integer an int)."""
    types = set(map(type, values))
    if not types <= allowed:
        return False
    if int in types:
        ints = values if types == {int} else [v for v in values if type(v) is int]
        return min(ints) >= _INT64_MIN and max(ints) <= _INT64_MAX
    return True


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
    """Object keys in a JSON value, or -1 when it holds an integer past int64."""
    kind = type(value)
    if kind is dict:
        inner = [_plain_keys(v) for v in value.values()]
        return -1 if -1 in inner else len(value) + sum(inner)
    if kind is list:
        inner = [_plain_keys(v) for v in value]
        return -1 if -1 in inner else sum(inner)
    if kind is int and not _INT64_MIN <= value <= _INT64_MAX:
        return -1
    return 0


def _candidates(candidates: list[_Row] | _Columns) -> _Candidates | None:
    """The typed candidates as ids and columns, None when they are not valid."""
    if isinstance(candidates, _Columns):
        found = _columns(candidates)
        columnar = True
    else:
        found = _rows(candidates)
        columnar = False
    if found is None:
        return None
    ids, columns, keys = found
    return ids, columns, columnar, keys


def _rows(rows: list[_Row]) -> tuple[list[str], dict[str, list[Any]], int] | None:
    """``[{id, features}, ...]`` as ids and one column per feature (None where a row lacks it).
    Rows that all have the first row's names (the usual request) are turned in one C pass."""
    if not rows:
        return None
    if _speedups is not None:
        turned = _speedups.rows_to_columns(rows)
        if turned is not None:
            return turned
    ids: list[str] = list(map(_get_id, rows))
    found: list[dict[str, Any] | UnsetType] = list(map(_get_features, rows))
    try:  # every row has "features" (the usual request): no pass looks for UNSET
        values = sum(map(len, found))  # type: ignore[arg-type]  # UNSET has no length
        missing = 0
    except TypeError:
        missing = found.count(UNSET)
        found = [_NO_FEATURES if f is UNSET else f for f in found]
        values = sum(map(len, found))  # type: ignore[arg-type]
    features = cast(list[dict[str, Any]], found)
    # object keys: each row's "id" and "features", and the feature names
    return ids, _transpose(features), 2 * len(rows) - missing + values


def _transpose(features: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row feature objects as columns in first-seen name order, None where a row lacks a name."""
    first = features[0]
    if set(map(len, features)) == {len(first)}:  # as many names in every row as in the first
        try:  # the usual request: every row has the first row's names (else one lacks one)
            return {name: list(map(itemgetter(name), features)) for name in first}
        except KeyError:
            pass
    names = dict.fromkeys(itertools.chain.from_iterable(features))
    return {name: list(map(methodcaller("get", name), features)) for name in names}


def _columns(candidates: _Columns) -> tuple[list[str], dict[str, list[Any]], int] | None:
    """``{ids, features: {name: [values]}}`` with every column as long as ``ids``."""
    ids = candidates.ids
    features = _NO_FEATURES if candidates.features is UNSET else candidates.features
    n = len(ids)
    if not n or any(len(column) != n for column in features.values()):
        return None
    keys = 1 + (candidates.features is not UNSET) + len(features)
    return ids, dict(features), keys


def _keys_unique(body: bytes, keys: int) -> bool:
    """No object in ``body`` repeats a key: its name separators (colons outside strings) number
    exactly the keys parsed. Colons inside strings are counted only when there are some."""
    colons = _count_colons(body)
    if colons == keys:  # colons >= separators >= keys parsed: equal means no key was dropped
        return True
    if b"\\" in body:  # an escaped quote would hide where strings end: the pydantic path decides
        return False
    outside = b"".join(body.split(b'"')[0::2])  # with no escapes, every quote opens or closes one
    return outside.count(b":") == keys


_COLON = ord(":")


def _count_colons(body: bytes) -> int:
    """``body.count(b":")``; a large body in one vectorized numpy pass (about 6x faster at 50 KB
    than ``bytes.count``, which loses on a small one to numpy's call cost)."""
    if len(body) < 4096:
        return body.count(b":")
    return int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == _COLON))
