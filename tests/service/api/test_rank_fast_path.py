"""POST /rank dispatched by ``RankFastPath`` answers exactly as FastAPI's routing of the same route."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Message

from service.routers.rank import RankFastPath
from service.store.memory import InMemoryUserRepCache
from tests.service.api.conftest import AppClient, MakeApp, rank_cases

Body = dict[str, Any]


def _without_fast_path(app: FastAPI) -> FastAPI:
    """The same app with POST /rank left to the router (FastAPI's route and dependencies)."""
    stack = app.router.middleware_stack
    assert isinstance(stack, RankFastPath)
    app.router.middleware_stack = stack.app  # type: ignore[assignment]  # any ASGI app
    return app


@pytest.mark.parametrize("case", range(7))
def test_fast_path_answers_like_the_routed_path(
    make_app: MakeApp, example: Body, case: int
) -> None:
    body, headers = rank_cases(example)[case]
    answers = []
    for app in (make_app(), _without_fast_path(make_app())):
        with AppClient(app) as client:
            response = client.post("/rank", content=body, headers=headers)
            answers.append(response)
    fast, routed = answers
    assert fast.status_code == routed.status_code
    assert fast.headers["content-type"] == routed.headers["content-type"]
    if fast.status_code == 200:  # stage timings differ between runs
        fast_json, routed_json = fast.json(), routed.json()
        fast_json.pop("explain", None)
        routed_json.pop("explain", None)
        assert fast_json == routed_json
    else:
        assert fast.json() == routed.json()


def test_other_methods_and_paths_still_go_through_the_router(client: AppClient) -> None:
    assert client.get("/rank").status_code == 405
    assert client.get("/rank").headers["allow"] == "POST"
    redirect = client.post("/rank/", content=b"{}", follow_redirects=False)
    assert redirect.status_code == 307
    assert client.post("/ranking", content=b"{}").status_code == 404


def test_fast_path_requests_are_counted_under_the_route(client: AppClient, example: Body) -> None:
    assert client.post("/rank", json=example).status_code == 200
    metrics = client.get("/metrics").text
    assert 'mtrank_requests_total{endpoint="/rank",status="200"} 1.0' in metrics


def test_rank_is_refused_while_no_model_is_loaded(make_app: MakeApp, example: Body) -> None:
    app = make_app(model="not-published-yet")
    with AppClient(app) as client:
        response = client.post("/rank", json=example, headers={"content-type": "text/plain"})
    assert response.status_code == 503  # not ready is answered before the content type


class _NotingCache(InMemoryUserRepCache):
    """The in-memory user cache, noting each write in ``events``."""

    def __init__(self, events: list[str]) -> None:
        super().__init__(ttl_seconds=60)
        self.events = events

    async def put(self, key: str, value: npt.NDArray[np.float32]) -> bool:
        self.events.append("user cached")
        return await super().put(key, value)


def test_the_answer_is_sent_before_the_request_is_recorded_and_the_user_cached(
    make_app: MakeApp, example: Body
) -> None:
    """Metrics and the user cache's write (a Redis round trip) are work the client does not wait
    for: the answer's last byte goes out first, then the request is recorded and the user's
    representation stored, all before the request ends (a scrape after it sees the request, the
    user's next request hits the cache)."""
    events: list[str] = []
    app = make_app(user_cache=_NotingCache(events))
    with AppClient(app) as client:
        metrics = app.state.mtrank.metrics
        record_rank = metrics.record_rank

        def noting_record(output: Any) -> None:
            events.append("recorded")
            record_rank(output)

        metrics.record_rank = noting_record
        body = orjson.dumps({**example, "explain": True})
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/rank", "raw_path": b"/rank", "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
        }  # fmt: skip
        answers: list[bytes] = []

        async def run() -> None:
            received = False

            async def receive() -> Message:
                nonlocal received
                if received:
                    await asyncio.sleep(60)  # the client stays connected
                received = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    events.append(f"status {message['status']}")
                else:
                    answers.append(message["body"])
                    if not message.get("more_body", False):
                        events.append("answer sent")

            await app({**scope, "state": {}}, receive, send)
            events.append("request ended")

        client.portal.call(run)  # on the app's own event loop
        first = events.copy()
        events.clear()
        client.portal.call(run)
    assert first == ["status 200", "answer sent", "recorded", "user cached", "request ended"]
    assert events == ["status 200", "answer sent", "recorded", "request ended"]  # a hit
    caches = [orjson.loads(answer)["explain"]["user_cache"] for answer in answers]
    assert caches == ["miss", "hit"]


class _SlowCache(InMemoryUserRepCache):
    """The in-memory user cache with a write as slow as a far-away Redis."""

    async def put(self, key: str, value: npt.NDArray[np.float32]) -> bool:
        await asyncio.sleep(0.5)
        return await super().put(key, value)


def test_the_request_duration_metric_ends_with_the_answer(make_app: MakeApp, example: Body) -> None:
    """What the client waits for is timed, not the work done after its answer (the user cache's
    write here)."""
    with AppClient(make_app(user_cache=_SlowCache(ttl_seconds=60))) as client:
        assert client.post("/rank", json=example).status_code == 200  # a miss: the cache is written
        metrics = client.get("/metrics").text
    lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("mtrank_request_duration_seconds_sum{") and 'endpoint="/rank"' in line
    ]
    assert len(lines) == 1
    assert float(lines[0].split()[-1]) < 0.5
