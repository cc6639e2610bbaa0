"""``POST /rank``: validate the raw body, score every candidate, answer ordered by fused score."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from service.dependencies import MetricsDep, RankerDep, StateDep, rank_slot
from service.errors import RankError
from service.json_body import parse_rank_request, read_json_body
from service.schemas import EXAMPLE_COLUMNS, EXAMPLE_ROWS, RankRequest, RankResponse
from service.scoring.ranker import RankInput, RankOutput

logger = logging.getLogger(__name__)

router = APIRouter(tags=["rank"])

# The body is read and validated by ``parse_rank_request`` (model_validate_json on the raw bytes), so
# FastAPI does not parse it; the OpenAPI request body is declared here and the schema registered by
# ``install_openapi_models`` in main.py.
REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/RankRequest"},
                "examples": {
                    "rows": {"summary": "candidates as a list", "value": EXAMPLE_ROWS},
                    "columnar": {"summary": "candidates as columns", "value": EXAMPLE_COLUMNS},
                },
            }
        },
    }
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "body is not JSON"},
    413: {"description": "body larger than MTRANK_MAX_BODY_BYTES"},
    415: {"description": "content type is not JSON"},
    422: {"description": "invalid value; `error.field` names it, e.g. `candidates[2].id`"},
    503: {"description": "not ready, or overloaded (with Retry-After)"},
}


@router.post(
    "/rank",
    response_model=RankResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=REQUEST_BODY,
    dependencies=[Depends(rank_slot)],
    summary="Rank candidates for one user by the fused multi-objective score",
)
async def rank(
    request: Request, state: StateDep, ranker: RankerDep, metrics: MetricsDep
) -> Response:
    body = await read_json_body(request, state.limits.max_body_bytes)
    parsed = parse_rank_request(body, state.limits)
    output = await ranker.rank(to_rank_input(parsed))
    _require_finite(output)
    metrics.record_rank(output)
    return Response(orjson.dumps(response_body(parsed, output)), media_type="application/json")


def to_rank_input(request: RankRequest) -> RankInput:
    return RankInput(
        user_id=request.user.id,
        user_features=dict(request.user.features),
        context=dict(request.context),
        candidate_ids=request.candidate_ids(),
        candidate_features=request.candidate_columns(),
        fusion=request.fusion,
        fusion_preset=request.fusion_preset,
        top_k=request.top_k,
        candidates_columnar=not isinstance(request.candidates, list),
    )


def _require_finite(output: RankOutput) -> None:
    """Never emit NaN/Inf (orjson would silently write null): a non-finite score is a model fault."""
    arrays = {"fused": output.fused_scores, **output.objective_scores}
    bad = [name for name, values in arrays.items() if not np.isfinite(values).all()]
    if bad:
        raise RankError(
            f"model {output.model}/{output.version} produced non-finite scores for {', '.join(bad)}: "
            "roll back (POST /admin/models/rollback) and check the export"
        )


def response_body(request: RankRequest, output: RankOutput) -> dict[str, Any]:
    """The JSON of a :class:`RankResponse`, built directly (validating 1,000 items would cost ms)."""
    body: dict[str, Any] = {
        "request_id": request.request_id,
        "model": {"name": output.model, "version": output.version},
        "fusion": {"name": output.fusion_name, "spec": output.fusion.model_dump(mode="json")},
        "items": [
            {"id": i.id, "rank": i.rank, "score": i.score, "objectives": i.objectives}
            for i in output.items
        ],
    }
    if request.explain:
        fetch = output.feature_fetch
        body["explain"] = {
            "timings": output.timings,
            "feature_fetch": None
            if fetch is None
            else {"status": fetch.status, "hits": fetch.hits, "misses": fetch.misses},
            "user_cache": output.user_cache,
        }
    return body
