"""``POST /rank``: validate the raw body, score every candidate, answer ordered by fused score.

The route is declared with FastAPI (OpenAPI document, the same function behind both paths), but a
request is dispatched by :class:`RankFastPath`, which the app factory puts in front of the router:
it skips route matching over every route and FastAPI's per-request dependency solving and calls
:func:`rank` with the same collaborators the dependencies would give, in the same order (not ready,
then content type, then the concurrency slot). Errors still go through the app's exception handlers
and every middleware sees the request as routed to ``/rank``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.contracts.fusion import FusionSpec
from service.dependencies import AppState, MetricsDep, RankerDep, StateDep, get_ranker, rank_slot
from service.json_body import parse_rank_request, read_json_body
from service.metrics import VERSION_STATE, ServiceMetrics
from service.rank_body import ParsedRank
from service.rank_items import items_json
from service.request_schema import UNSTATED_RULES
from service.schemas import EXAMPLE_COLUMNS, EXAMPLE_ROWS, RankResponse
from service.scoring.ranker import Ranker, RankOutput

logger = logging.getLogger(__name__)

router = APIRouter(tags=["rank"])

# The body is read and validated by ``parse_rank_request`` (model_validate_json on the raw bytes), so
# FastAPI does not parse it; the OpenAPI request body is declared here and the schema registered by
# ``install_rank_schema`` in main.py (with this process's limits and model).
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
    415: {"description": "content type is not JSON"},
    422: {
        "description": "invalid value; `error.field` names it, e.g. `candidates[2].id`. Besides "
        "what the request schema states, the rules no JSON Schema can: " + "; ".join(UNSTATED_RULES)
    },
    503: {"description": "not ready, or overloaded (with Retry-After)"},
}


@router.post(
    "/rank",
    response_model=RankResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=REQUEST_BODY,
    summary="Rank candidates for one user by the fused multi-objective score",
)
async def rank(
    request: Request, state: StateDep, ranker: RankerDep, metrics: MetricsDep
) -> Response:
    body = await read_json_body(request)  # already received in full by the front door
    parsed, output = await score_body(state, ranker, body)
    setattr(request.state, VERSION_STATE, output.version)
    return ranked_answer(
        parsed, output, BackgroundTask(after_answer, state, ranker, metrics, parsed, output)
    )


async def score_body(state: AppState, ranker: Ranker, body: bytes) -> tuple[ParsedRank, RankOutput]:
    """Parse and score a /rank body within a concurrency slot; a ``RankError`` names what is wrong."""
    with rank_slot(state):  # held while parsing and scoring, never while a client sends or reads
        parsed = parse_rank_request(body, state.limits)
        output = await ranker.rank(parsed.input, cache_now=False)  # cached after the answer
    return parsed, output


def ranked_answer(
    parsed: ParsedRank, output: RankOutput, background: BackgroundTask | None = None
) -> Response:
    """The 200 answer. Its scores are finite: ``score_request`` checked every objective
    (``check_outputs``) and the fused score (``fuse``), so orjson never writes a NaN as null."""
    return Response(
        encode_response(parsed, output), media_type="application/json", background=background
    )


async def after_answer(
    state: AppState,
    ranker: Ranker,
    metrics: ServiceMetrics,
    parsed: ParsedRank,
    output: RankOutput,
) -> None:
    """What a ranked request still has to do once its answer is sent, so the client never waits on
    it: record its metrics, queue its sampled shadow job, store the user representation it
    computed in the user cache (a Redis round trip), and release the request's objects (the parsed
    body, the score arrays), which this task holds until it ends.

    Starlette runs it on the event loop's thread as soon as the answer's last byte is handed to the
    transport. Nothing before the metrics are recorded lets the loop switch requests (only a full
    socket buffer would), so another request, a ``/metrics`` scrape included, sees them recorded."""
    metrics.record_rank(output)
    if state.shadow is not None:
        state.shadow.submit_for(parsed.input, output)
    await ranker.cache_user_rep(output)


class RankFastPath:
    """ASGI wrapper of the app's router: ``POST /rank`` goes straight to :func:`rank`.

    What FastAPI would do for this route per request, done directly: the route is put in the scope
    (metrics label requests by it), the ranker is taken from the app state as ``get_ranker`` does
    (503 while not ready) and the response is sent. Anything else (other paths and methods, a
    ``root_path`` mount, ``/rank/``) goes to the router unchanged.
    """

    def __init__(self, app: ASGIApp, route: APIRoute) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_rank_request(scope):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        scope["endpoint"] = rank
        scope["path_params"] = {}
        scope.setdefault("router", scope["app"].router)
        state: AppState = scope["app"].state.mtrank
        ranker = await get_ranker(state)
        response = await rank(Request(scope, receive, send), state, ranker, state.metrics)
        await response(scope, receive, send)


def is_rank_request(scope: Scope) -> bool:
    """``POST /rank`` outside a ``root_path`` mount (``/rank/`` and other methods are the router's)."""
    return (
        scope["type"] == "http"
        and scope["path"] == "/rank"
        and scope["method"] == "POST"
        and not scope.get("root_path")
    )


def rank_route(routes: list[Any]) -> APIRoute:
    """The ``POST /rank`` route among the app's routes (FastAPI keeps included routers whole)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        candidates = [c.original_route for c in contexts()] if contexts is not None else [route]
        for candidate in candidates:
            if isinstance(candidate, APIRoute) and candidate.endpoint is rank:
                return candidate
    raise LookupError("the app has no /rank route")


def encode_response(parsed: ParsedRank, output: RankOutput) -> bytes:
    """The JSON of a :class:`RankResponse`, written from the score arrays (the items by
    :func:`service.rank_items.items_json`, never as pydantic objects)."""
    head: dict[str, Any] = {
        "request_id": parsed.request_id,
        "model": {"name": output.model, "version": output.version},
        "fusion": {"name": output.fusion_name, "spec": _fusion_json(output.fusion)},
    }
    before = orjson.dumps(head)[:-1] + b',"items":'
    after = b"}"
    if parsed.explain:
        fetch = output.feature_fetch
        explain = {
            "timings": output.timings,
            "feature_fetch": None
            if fetch is None
            else {"status": fetch.status, "hits": fetch.hits, "misses": fetch.misses},
            "user_cache": output.user_cache,
        }
        after = b',"explain":' + orjson.dumps(explain) + b"}"
    return items_json(output, before, after)  # the items written between the two, no join


_FUSION_JSON: dict[int, tuple[FusionSpec, orjson.Fragment]] = {}


def _fusion_json(spec: FusionSpec) -> orjson.Fragment:
    """A fusion spec's JSON, written once per spec object (a model's presets are reused)."""
    cached = _FUSION_JSON.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    if len(_FUSION_JSON) >= 64:  # request overrides are new objects each time: stay small
        _FUSION_JSON.clear()
    written = orjson.Fragment(orjson.dumps(spec.model_dump(mode="json")))
    _FUSION_JSON[id(spec)] = (spec, written)
    return written
