"""Reading and validating a /rank body fast: raw bytes straight into ``RankRequest.model_validate_json``.

FastAPI's default body path decodes JSON with ``json.loads`` into Python objects and then validates those;
pydantic-core parsing and validating the bytes in one pass is cheaper (``benchmarks/parse_vs_score.py``
measures both against scoring). The body arrives already read, limited and decoded by the front door
(``service/front_door.py``); the checks that depend on settings (candidate count, sequence length) or
on the whole list (unique ids, column lengths) run here, each naming the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request

from service.errors import InvalidInput, UnsupportedMediaType, from_validation_errors
from service.rank_body import ParsedRank, from_request, parse_fast
from service.schemas import ColumnarCandidates, RankRequest


@dataclass(frozen=True)
class BodyLimits:
    """The limits checked while validating a body. Its size limit is not here: the front door
    enforces it while receiving (``MTRANK_MAX_BODY_BYTES``), before a route runs."""

    max_candidates: int
    max_sequence_length: int


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_json_body(request: Request) -> bytes:
    """The raw body; 415 for a non-JSON content type. The front door (``service/front_door.py``) has
    already received it in full, within the size limit and the deadline, and decoded it."""
    check_content_type(request.headers.get("content-type"))
    return await request.body()


def check_content_type(content_type: str | None) -> None:
    """415 unless the content type is JSON (or absent)."""
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not JSON: send the body as application/json"
        )


def parse_rank_request(body: bytes, limits: BodyLimits) -> ParsedRank:
    """Validate ``body`` into the engine's input; raise a ``RankError`` naming the bad field.

    The fast path (``service.rank_body``) accepts most bodies; whatever it declines is validated
    into a :class:`RankRequest` here, which gives every error answer.
    """
    fast = parse_fast(body, limits)
    if fast is not None:
        return fast
    return from_request(validate_rank_request(body, limits))


def validate_rank_request(body: bytes, limits: BodyLimits) -> RankRequest:
    """The pydantic path: ``body`` as a :class:`RankRequest`, or a ``RankError`` naming the field."""
    try:
        request = RankRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_errors(exc.errors(include_url=False)) from None
    check_limits(request, limits)
    return request


def check_limits(request: RankRequest, limits: BodyLimits) -> None:
    columnar = isinstance(request.candidates, ColumnarCandidates)
    ids = request.candidate_ids()
    if len(ids) > limits.max_candidates:
        raise InvalidInput(
            f"{len(ids)} candidates, at most {limits.max_candidates} per request "
            "(MTRANK_MAX_CANDIDATES): split the request",
            field="candidates.ids" if columnar else "candidates",
        )
    seen: set[str] = set()
    for index, item_id in enumerate(ids):
        if item_id in seen:
            raise InvalidInput(
                f"candidate id {item_id!r} appears more than once: ids must be unique",
                field=f"candidates.ids[{index}]" if columnar else f"candidates[{index}].id",
            )
        seen.add(item_id)
    if isinstance(request.candidates, ColumnarCandidates):
        for name, column in request.candidates.features.items():
            if len(column) != len(ids):
                raise InvalidInput(
                    f"feature column {name!r} has {len(column)} values for {len(ids)} ids: "
                    "every column must be as long as `ids` (use null for a missing value)",
                    field=f"candidates.features.{name}",
                )
    if request.fusion is not None and request.fusion_preset is not None:
        raise InvalidInput(
            "give either `fusion` (a spec) or `fusion_preset` (a name), not both",
            field="fusion_preset",
        )
    _check_sequences(request.user.features, "user.features", limits.max_sequence_length)
    _check_sequences(request.context, "context", limits.max_sequence_length)


def _check_sequences(features: dict[str, Any], prefix: str, max_length: int) -> None:
    for name, value in features.items():
        if isinstance(value, list) and len(value) > max_length:
            raise InvalidInput(
                f"sequence {name!r} has {len(value)} ids, at most {max_length} "
                "(MTRANK_MAX_SEQUENCE_LENGTH): send the most recent ones",
                field=f"{prefix}.{name}",
            )
