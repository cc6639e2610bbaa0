"""Open-loop load: requests start on a fixed schedule whatever the latency, so queueing shows.

Request i is due at ``start + i / rate``. It is sent at that time even when earlier requests have not
answered, and its latency is measured from that *intended* start, not from when it was actually sent:
a stalled service or a late generator shows up as latency instead of silently lowering the load
(no coordinated omission). How late each send was is reported separately (``send_lag``): if it grows,
the load generator, not the service, was the bottleneck. A bounded number of requests may be in flight;
past it a due request is counted as ``client_overflow`` rather than waited for.

Latencies of successful answers go into an HdrHistogram (1 µs to 60 s, 3 significant digits) and, per
time interval, into a list for the percentiles-over-time plot. An optional model swap
(``POST /admin/models/load``) runs at a chosen second on its own connection.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from hdrh.histogram import HdrHistogram

HIGHEST_US = 60_000_000
_VERSION = re.compile(rb'"version":\s*"([^"]+)"')


class LoadTestError(Exception):
    """The load test cannot run (service not ready, bad target); the message says why."""


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


@dataclass(frozen=True)
class SwapPlan:
    at: float  # seconds after the first request
    token: str
    version: str | None  # None: the store's current version


@dataclass(frozen=True)
class RunConfig:
    url: str
    rate: float  # requests per second
    duration: float  # seconds of sending
    max_requests: int
    timeout: float = 10.0  # per request, seconds
    max_in_flight: int = 512
    interval: float = 1.0  # seconds per timeline bucket
    swap: SwapPlan | None = None

    @property
    def planned(self) -> int:
        return max(1, min(self.max_requests, int(self.rate * self.duration)))


@dataclass
class SwapEvent:
    started_s: float
    finished_s: float
    status: str  # HTTP status or the transport error
    detail: str


@dataclass
class Interval:
    sent: int = 0
    ok_latencies_us: list[int] = field(default_factory=list)
    errors: int = 0
    versions: Counter[str] = field(default_factory=Counter)


@dataclass
class Outcome:
    config: RunConfig
    sent: int = 0
    ok: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latency: HdrHistogram = field(default_factory=new_histogram)  # µs, successful requests
    send_lag: HdrHistogram = field(default_factory=new_histogram)  # µs, actual - intended send
    intervals: list[Interval] = field(default_factory=list)
    elapsed: float = 0.0  # first intended start -> last answer, seconds
    swap: SwapEvent | None = None

    def interval(self, offset: float) -> Interval:
        index = max(0, int(offset / self.config.interval))
        while len(self.intervals) <= index:
            self.intervals.append(Interval())
        return self.intervals[index]


Tick = Callable[["Outcome", float], None]  # (outcome so far, seconds since start), once per second


async def run_open_loop(
    config: RunConfig, bodies: list[bytes], on_tick: Tick | None = None
) -> Outcome:
    """Send ``config.planned`` requests at ``config.rate`` per second, cycling through ``bodies``."""
    if not bodies:
        raise LoadTestError("no request bodies to send")
    outcome = Outcome(config)
    limits = httpx.Limits(
        max_connections=config.max_in_flight, max_keepalive_connections=config.max_in_flight
    )
    async with httpx.AsyncClient(
        base_url=config.url, timeout=config.timeout, limits=limits
    ) as client:
        await _check_ready(client, config.url)
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        in_flight: set[asyncio.Task[None]] = set()
        swap_task = None
        if config.swap is not None:
            swap_task = asyncio.create_task(_swap(config, config.swap, start, outcome))
        ticker = None if on_tick is None else asyncio.create_task(_tick(on_tick, start, outcome))
        for i in range(config.planned):
            intended = start + i / config.rate
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            outcome.sent += 1
            outcome.interval(intended - start).sent += 1
            if len(in_flight) >= config.max_in_flight:
                _failed(outcome, intended - start, "client_overflow")
                continue
            body = bodies[i % len(bodies)]
            task = asyncio.create_task(_one(client, body, intended, start, outcome))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            _done, pending = await asyncio.wait(in_flight, timeout=config.timeout + 1.0)
            for task in pending:
                task.cancel()
                _failed(outcome, config.duration, "unfinished")
        if swap_task is not None:
            await swap_task
        if ticker is not None:
            ticker.cancel()
    return outcome


async def _tick(on_tick: Tick, start: float, outcome: Outcome) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(1.0)
        on_tick(outcome, loop.time() - start)


async def _check_ready(client: httpx.AsyncClient, url: str) -> None:
    try:
        response = await client.get("/readyz")
    except httpx.HTTPError as exc:
        raise LoadTestError(f"{url} is not reachable ({exc!r}): start the service first") from exc
    if response.status_code != 200:
        raise LoadTestError(
            f"{url}/readyz answered {response.status_code} ({response.text[:200]}): the service "
            "has no model loaded yet"
        )


def _failed(outcome: Outcome, offset: float, status: str) -> None:
    outcome.statuses[status] += 1
    outcome.interval(offset).errors += 1


async def _one(
    client: httpx.AsyncClient, body: bytes, intended: float, start: float, outcome: Outcome
) -> None:
    loop = asyncio.get_running_loop()
    outcome.send_lag.record_value(max(1, round((loop.time() - intended) * 1e6)))
    offset = intended - start
    try:
        response = await client.post(
            "/rank", content=body, headers={"content-type": "application/json"}
        )
    except httpx.TimeoutException:
        _failed(outcome, offset, "timeout")
        return
    except httpx.HTTPError as exc:
        _failed(outcome, offset, type(exc).__name__)
        return
    finished = loop.time()
    outcome.elapsed = max(outcome.elapsed, finished - start)
    if response.status_code != 200:
        _failed(outcome, offset, str(response.status_code))
        return
    micros = min(HIGHEST_US, max(1, round((finished - intended) * 1e6)))
    outcome.ok += 1
    outcome.statuses["200"] += 1
    outcome.latency.record_value(micros)
    bucket = outcome.interval(offset)
    bucket.ok_latencies_us.append(micros)
    found = _VERSION.search(response.content[:1024])
    bucket.versions[found.group(1).decode() if found else "?"] += 1


async def _swap(config: RunConfig, plan: SwapPlan, start: float, outcome: Outcome) -> None:
    """At ``plan.at`` seconds, ask the service to load a version; record when and how it answered."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start + plan.at - loop.time()))
    began = loop.time() - start
    body = {} if plan.version is None else {"version": plan.version}
    headers = {"Authorization": f"Bearer {plan.token}"}
    async with httpx.AsyncClient(base_url=config.url, timeout=120.0) as admin:
        try:
            response = await admin.post("/admin/models/load", json=body, headers=headers)
            status, detail = str(response.status_code), response.text[:300]
        except httpx.HTTPError as exc:
            status, detail = type(exc).__name__, str(exc)
    outcome.swap = SwapEvent(began, loop.time() - start, status, detail)
