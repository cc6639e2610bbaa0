"""The open-loop runner: a schedule kept whatever the latency, latency from the intended start.

A small asyncio HTTP server stands in for a service that stalls on purpose, so the tests can tell an
open-loop measurement from a closed-loop one; the swap test runs against a real uvicorn process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from service.loadtest.report import summarise
from service.loadtest.runner import LoadTestError, RunConfig, SwapPlan, run_open_loop
from tests.fixtures.published_model import PublishedModel
from tests.fixtures.uvicorn_server import UVICORN_ADMIN_TOKEN, uvicorn_service

__all__ = ["uvicorn_service"]


@dataclass
class StallingServer:
    """Answers /readyz and /rank (200, or ``status_for(n)``); request ``stall_at`` freezes answers
    to every request for ``stall_s`` seconds, as a GC pause or a blocked event loop would."""

    stall_at: int | None = None
    stall_s: float = 0.0
    status_for: Callable[[int], int] = lambda _n: 200
    received: int = 0
    received_while_stalled: int = 0
    paused_until: float = 0.0
    ready_status: int = 200
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                status = self.ready_status
                if head.startswith(b"POST /rank"):
                    self.received += 1
                    if self.received == self.stall_at:
                        self.paused_until = time.monotonic() + self.stall_s
                    if (wait := self.paused_until - time.monotonic()) > 0:
                        self.received_while_stalled += 1
                        await asyncio.sleep(wait)
                    status = self.status_for(self.received)
                body = b'{"model": {"name": "m", "version": "v1"}}'
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (status, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
        except asyncio.CancelledError:  # the test's event loop is closing
            writer.close()


def run_against(server: StallingServer, **config: object) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            settings = {"rate": 100.0, "duration": 1.0, "max_requests": 10_000} | config
            run_config = RunConfig(url=f"http://127.0.0.1:{port}", **settings)  # type: ignore[arg-type]
            outcome = await run_open_loop(run_config, [b"{}"])
        finally:
            for writer in server.writers:
                writer.close()
            listener.close()
        return summarise(outcome)

    return asyncio.run(main())


def test_requests_keep_their_schedule_and_are_all_answered() -> None:
    started = time.monotonic()
    summary = run_against(StallingServer(), rate=50.0, duration=1.0)
    assert summary["sent"] == summary["ok"] == 50
    assert summary["errors"] == {}
    assert 0.9 < time.monotonic() - started < 5.0
    assert sum(row["sent"] for row in summary["timeline"]) == 50


def test_a_stall_shows_in_every_request_scheduled_during_it() -> None:
    # 100 req/s; request 20 (due at 0.19 s) freezes the service for 0.3 s. Open loop keeps sending, so
    # the ~30 requests due during the stall reach the service while it is stalled and all wait for its
    # end; latency counts from their due time, so request i due at t_i counts at least 0.49 - t_i. A
    # closed-loop generator would have stopped sending, and recorded one slow request per worker.
    # (Only lower bounds: a busy machine can make everything slower, never faster.)
    server = StallingServer(stall_at=20, stall_s=0.3)
    summary = run_against(server, rate=100.0, duration=1.0)
    assert summary["ok"] == 100
    assert server.received_while_stalled >= 20
    latency = summary["latency_ms"]
    assert latency["p90"] >= 150  # the ~15 requests due in the stall's first 0.15 s, and more
    assert latency["p99"] >= 250


def test_past_the_in_flight_cap_due_requests_are_counted_not_waited_for() -> None:
    summary = run_against(
        StallingServer(stall_at=1, stall_s=0.8), rate=50.0, duration=0.4, max_in_flight=3
    )
    assert summary["sent"] == 20
    assert summary["ok"] == 3
    assert summary["errors"] == {"client_overflow": 17}


def test_errors_are_counted_by_status() -> None:
    server = StallingServer(status_for=lambda n: 503 if n % 2 else 200)
    summary = run_against(server, rate=40.0, duration=0.5)
    assert summary["errors"] == {"503": 10}
    assert summary["ok"] == 10
    assert summary["error_share"] == pytest.approx(0.5)


def test_a_service_that_is_not_ready_is_refused_before_any_load() -> None:
    server = StallingServer(ready_status=503)
    with pytest.raises(LoadTestError, match="503"):
        run_against(server)
    assert server.received == 0


@pytest.mark.slow
def test_a_swap_mid_run_is_recorded_and_responses_switch_version(
    uvicorn_service: str, published_store: PublishedModel
) -> None:
    v1, v2 = published_store.versions
    body = orjson.dumps(
        {"user": {"id": "u1"}, "candidates": [{"id": "i1"}, {"id": "i2"}], "context": {"hour": 3}}
    )
    swap = SwapPlan(at=1.2, token=UVICORN_ADMIN_TOKEN, version=v2)
    config = RunConfig(uvicorn_service, rate=20.0, duration=4.0, max_requests=100, swap=swap)
    summary = summarise(asyncio.run(run_open_loop(config, [body])))
    assert summary["ok"] == 80
    event = summary["swap"]
    assert event["status"] == "200"
    assert 1.1 < event["started_s"] < event["finished_s"]
    before = [row for row in summary["timeline"] if row["t"] + 1 <= event["started_s"]]
    after = [row for row in summary["timeline"] if row["t"] >= event["finished_s"]]
    assert before
    assert after
    assert {v for row in before for v in row["versions"]} == {v1}
    assert {v for row in after for v in row["versions"]} == {v2}
