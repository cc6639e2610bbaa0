"""The ``items`` array of a /rank answer, written from the score arrays.

Validating or even building 1,000 item dicts would cost milliseconds. Three writers, fastest first,
all byte for byte a plain ``orjson.dumps`` of the items (``tests/service/api/test_rank_outputs.py``
pins each):

* with the C extension (``service._speedups``, built at install when a compiler is there): orjson
  writes each score column in one call, and ``write_items`` interleaves its tokens with the ids (in
  the answer's order, straight from the request's list) and the fixed parts of an item in one pass
  (about 2x the msgspec writer at 500 candidates);
* without it, msgspec from small structs built in C (``map`` over the score columns): one encoder
  call writes every number and id. msgspec and orjson write the same bytes for every float below
  1e16 in magnitude and for every string; from 1e16 on msgspec writes ``1e16`` where orjson writes
  ``1e+16``, so an answer holding such a score takes the third writer:
* orjson's tokens interleaved in Python (``_tokens_json``).
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from service.scoring.ranker import RankOutput

try:
    from service import _speedups
except ImportError:  # built without a C compiler: the msgspec writer serves
    _speedups = None  # type: ignore[assignment]

SAME_FLOATS_BELOW = 1e16
"""msgspec writes a float as orjson does below this magnitude (above: no ``+`` in the exponent)."""
_encoder = msgspec.json.Encoder()


class _Item(msgspec.Struct, gc=False):
    """One returned candidate, fields in the response's order."""

    id: str
    rank: int
    score: float
    objectives: Any  # an ``_objectives_type`` struct


_OBJECTIVES: dict[tuple[str, ...], type[msgspec.Struct]] = {}


def _objectives_type(names: tuple[str, ...]) -> type[msgspec.Struct]:
    """A struct of one float per objective, written under the objectives' names (any strings:
    the fields are ``f0``, ``f1``, ... renamed), made once per tuple of names."""
    made = _OBJECTIVES.get(names)
    if made is None:
        fields = [f"f{k}" for k in range(len(names))]
        made = msgspec.defstruct(
            "Objectives",
            [(field, float) for field in fields],
            rename=dict(zip(fields, names, strict=True)),
            gc=False,
        )
        if len(_OBJECTIVES) < 64:  # a model has one tuple; canaries and shadows a few more
            _OBJECTIVES[names] = made
    return made


def items_json(output: RankOutput, before: bytes = b"", after: bytes = b"") -> bytes:
    """``before``, the JSON array of the returned candidates (best first, each with its
    objectives), then ``after``. The C writer puts the three in the one bytes object it writes, so
    the answer around the items (``before`` and ``after``) costs no second copy of them."""
    order = output.order
    if order.shape[0] == 0:
        return b"".join((before, b"[]", after))
    names = list(output.objective_scores)
    fused = output.fused_scores[order]
    objectives = [output.objective_scores[name][order] for name in names]
    if _speedups is not None and names:
        written = _speedups.write_items(
            output.candidate_ids,
            order,
            orjson.dumps,  # the JSON of an id that is not plain ASCII
            [
                orjson.dumps(column, option=orjson.OPT_SERIALIZE_NUMPY)
                for column in (fused, *objectives)
            ],
            _pieces(tuple(names)),
            before,
            after,
        )
        if written is not None:
            return written
    ids = list(map(output.candidate_ids.__getitem__, order.tolist()))
    largest = max(float(np.abs(column).max()) for column in (fused, *objectives))
    if largest >= SAME_FLOATS_BELOW or not names:
        return b"".join((before, _tokens_json(ids, names, [fused, *objectives]), after))
    structs = map(_objectives_type(tuple(names)), *(column.tolist() for column in objectives))
    ranks = range(1, order.shape[0] + 1)
    items = _encoder.encode(list(map(_Item, ids, ranks, fused.tolist(), structs)))
    return b"".join((before, items, after))


_PIECES: dict[tuple[str, ...], list[bytes]] = {}


def _pieces(names: tuple[str, ...]) -> list[bytes]:
    """The fixed parts of an item around its id, rank, score and objectives, made once per tuple of
    objective names (``write_items``'s ``pieces``)."""
    made = _PIECES.get(names)
    if made is None:
        made = [b'{"id":', b',"rank":', b',"score":', *_objective_keys(list(names)), b"}}"]
        if len(_PIECES) < 64:  # a model has one tuple; canaries and shadows a few more
            _PIECES[names] = made
    return made


def _objective_keys(names: list[str]) -> list[bytes]:
    """What precedes each objective's score: the ``objectives`` object's opening, then commas."""
    return [
        (b',"objectives":{' if k == 0 else b",") + orjson.dumps(name) + b":"
        for k, name in enumerate(names)
    ]


def _tokens(values: npt.NDArray[Any]) -> list[bytes]:
    """JSON numbers, one per value (a number never contains a comma)."""
    return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")


def _id_tokens(ids: list[str]) -> tuple[bytes, list[bytes], bytes]:
    """(what opens an item up to its id, each id's token, what follows the id up to the rank).

    One ``dumps`` for all ids when none needs an escape: then ``","`` only ever separates two ids
    and the tokens are the ids' bare text, their quotes written with the fixed parts (no bytes
    object built per id to add them). Otherwise one ``dumps`` per id, quotes included.
    """
    written = orjson.dumps(ids)
    if b"\\" in written:
        return b'{"id":', list(map(orjson.dumps, ids)), b',"rank":'
    return b'{"id":"', written[2:-2].split(b'","'), b'","rank":'


_RANKS: list[bytes] = []
"""``b"1"``, ``b"2"``, ...: the rank tokens, written once per process up to the largest list."""


def _rank_tokens(n: int) -> list[bytes]:
    """The first ``n`` rank tokens. A longer list is built whole and then swapped in by one
    assignment, so two threads answering at once never extend the shared list twice over."""
    global _RANKS
    ranks = _RANKS
    if len(ranks) < n:
        ranks = [b"%d" % rank for rank in range(1, n + 1)]
        _RANKS = ranks
    return ranks[:n]


def _tokens_json(ids: list[str], names: list[str], scores: list[npt.NDArray[np.float64]]) -> bytes:
    """The items from orjson's byte tokens: every number column written by one ``orjson.dumps``
    and split at its commas, the tokens interleaved with the fixed parts of an item.
    ``scores``: the fused score then each objective's, in the answer's order."""
    opening, id_tokens, after_id = _id_tokens(ids)
    fixed = [opening, after_id, b',"score":', *_objective_keys(names)]
    columns = [id_tokens, _rank_tokens(len(ids)), *map(_tokens, scores)]
    interleaved = [x for pair in zip(map(repeat, fixed), columns, strict=True) for x in pair]
    return b"[" + b",".join(map(b"".join, zip(*interleaved, repeat(b"}}")))) + b"]"
