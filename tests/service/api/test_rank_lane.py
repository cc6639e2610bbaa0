"""The rank lane (``service/rank_lane.py``) answers ordinary ``POST /rank`` requests as the whole app
would, and leaves every other request, and every answer it does not know, to the whole app."""

from __future__ import annotations

import asyncio
import gzip
import time
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from service.rank_lane import RankLane
from tests.service.api.conftest import AppClient, MakeApp, rank_cases

Body = dict[str, Any]


def _lane(app: FastAPI) -> RankLane:
    lane = app.middleware_stack
    assert isinstance(lane, RankLane)
    return lane


class _Counting:
    """The app behind the lane, counting the /rank requests it is handed."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ranks = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/rank":
            self.ranks += 1
        await self.app(scope, receive, send)


def _counting(app: FastAPI) -> _Counting:
    lane = _lane(app)
    inner = _Counting(lane.app)
    lane.app = inner
    return inner


def _rank_counts(metrics: str) -> list[str]:
    """The /rank request and error counters that are not 0."""
    return sorted(
        line
        for line in metrics.splitlines()
        if line.startswith(("mtrank_requests_total{", "mtrank_errors_total{"))
        and ('endpoint="/rank"' in line or "errors" in line)
        and not line.endswith(" 0.0")
    )


@pytest.mark.parametrize("case", range(7))
def test_the_lane_answers_as_the_whole_app(make_app: MakeApp, example: Body, case: int) -> None:
    body, headers = rank_cases(example)[case]
    seen = []
    for use_lane in (True, False):
        app = make_app()
        if not use_lane:
            app.middleware_stack = _lane(app).app
        with AppClient(app) as client:
            response = client.post("/rank", content=body, headers=headers)
            seen.append((response, _rank_counts(client.get("/metrics").text)))
    (lane, lane_counts), (whole, whole_counts) = seen
    assert lane.status_code == whole.status_code
    for header in ("content-type", "connection", "retry-after"):
        assert lane.headers.get(header) == whole.headers.get(header)
    lane_json, whole_json = lane.json(), whole.json()
    if lane.status_code == 200:  # stage timings differ between two runs
        lane_json.pop("explain", None)
        whole_json.pop("explain", None)
    else:
        assert lane.headers["content-length"] == whole.headers["content-length"]
    assert lane_json == whole_json
    assert lane_counts == whole_counts  # counted once, under the route, with the same error


def _post(
    client: AppClient, parts: list[bytes], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """``POST /rank`` straight through the app's ASGI interface, the body in ``parts``."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/rank", "raw_path": b"/rank", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    messages: list[Message] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    status, answer_headers, answer = 0, {}, b""

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stays connected and sends nothing more
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status, answer_headers, answer
        if message["type"] == "http.response.start":
            status = message["status"]
            answer_headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            answer += message.get("body", b"")

    async def run() -> None:
        await client.app(scope, receive, send)

    client.portal.call(run)
    return status, answer_headers, answer


def _json(body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "content-length": str(len(body))}


def test_an_ordinary_request_never_reaches_the_middleware_chain(
    make_app: MakeApp, example: Body
) -> None:
    app = make_app()
    inner = _counting(app)
    body = orjson.dumps(example)
    with AppClient(app) as client:
        status, _, answer = _post(client, [body], _json(body))
        bad = b'{"user": {"id": "u"}, "candidates": []}'
        refused, _, error = _post(client, [bad], _json(bad))
    assert status == 200
    assert len(orjson.loads(answer)["items"]) == 5
    assert refused == 422
    assert orjson.loads(error)["error"]["field"] == "candidates"
    assert inner.ranks == 0


@pytest.mark.parametrize(
    "variant", ["gzip", "no length", "expect 100-continue", "over the limit", "in two parts"]
)
def test_other_bodies_go_to_the_whole_app(make_app: MakeApp, example: Body, variant: str) -> None:
    app = make_app(max_body_bytes=64 * 1024)
    inner = _counting(app)
    body = orjson.dumps(example)
    headers, parts = _json(body), [body]
    if variant == "gzip":
        parts = [gzip.compress(body)]
        headers = {**_json(parts[0]), "content-encoding": "gzip"}
    elif variant == "no length":
        del headers["content-length"]
        headers["transfer-encoding"] = "chunked"
    elif variant == "expect 100-continue":
        headers["expect"] = "100-continue"
    elif variant == "over the limit":
        big = {**example, "request_id": "r", "context": {"pad": "x" * 70_000}}
        parts = [orjson.dumps(big)]
        headers = _json(parts[0])
    else:
        parts = [body[:100], body[100:]]
    with AppClient(app) as client:
        status, _, answer = _post(client, parts, headers)
    assert inner.ranks == 1
    if variant == "over the limit":
        assert status == 413
    else:
        assert status == 200
        assert len(orjson.loads(answer)["items"]) == 5


def test_a_body_that_never_comes_gets_408_at_the_one_deadline(make_app: MakeApp) -> None:
    """The lane waits for the body under the front door's deadline and hands the front door that
    deadline, so the 408 comes once the body timeout has passed, not twice that."""
    app = make_app(body_timeout_seconds=0.5)
    with AppClient(app) as client:
        started = time.monotonic()
        status, headers, answer = _post(
            client, [], {"content-type": "application/json", "content-length": "100"}
        )
        waited = time.monotonic() - started
    assert status == 408
    assert orjson.loads(answer)["error"]["code"] == "request_timeout"
    assert headers["connection"] == "close"
    assert 0.5 <= waited < 0.95


def test_a_failure_the_lane_does_not_know_is_the_whole_apps_to_answer(
    make_app: MakeApp, example: Body
) -> None:
    app = make_app()
    inner = _counting(app)
    with AppClient(app) as client:
        ranker = app.state.mtrank.ranker

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        ranker.rank = broken
        response = client.post("/rank", json=example)
        counts = _rank_counts(client.get("/metrics").text)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert inner.ranks == 1  # answered (and logged) by the whole app
    assert 'mtrank_requests_total{endpoint="/rank",status="500"} 1.0' in counts  # once


def test_a_drain_that_begins_during_scoring_closes_the_connection(
    make_app: MakeApp, example: Body
) -> None:
    app = make_app()
    lane = _lane(app)
    with AppClient(app) as client:
        ranker = app.state.mtrank.ranker
        rank = ranker.rank

        async def rank_then_drain(*args: Any, **kwargs: Any) -> Any:
            lane.drain.draining = True  # SIGTERM arrives while this request is scored
            return await rank(*args, **kwargs)

        ranker.rank = rank_then_drain
        response = client.post("/rank", json=example)
        lane.drain.draining = False
    assert response.status_code == 200
    assert response.headers["connection"] == "close"
