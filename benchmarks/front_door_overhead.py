"""What does the front door (service/front_door.py) cost a /rank request?

    python benchmarks/front_door_overhead.py --store models_store --model feed [--candidates 100]

Builds the app twice from the same settings, once as served and once with the ``FrontDoor`` middleware
left out, and sends both the same /rank body in process (httpx's ASGI transport: no sockets, so the
figure is the layer's own cost, not network noise). Rounds alternate between the two apps; each prints
the median wall time and the CPU time per request, and the last line the ratio with/without.
Before/after figures on the wire: ``benchmarks/loadtest.py --url URL --baseline-url OTHER_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.front_door import FrontDoor
from service.main import create_app
from service.model_store import ModelStore
from service.settings import Settings

HEADERS = {"content-type": "application/json"}


def rank_body(store: Path, model: str, candidates: int) -> bytes:
    """The model's warm-up example with its candidates repeated under fresh ids."""
    models = ModelStore(store)
    version = models.current(model) or models.versions(model)[-1]
    example: dict[str, Any] = (
        models.read_manifest(model, version).warmup[0].model_dump(mode="json", exclude_none=True)
    )
    rows = example["candidates"]
    example["candidates"] = [{**rows[i % len(rows)], "id": f"c{i}"} for i in range(candidates)]
    return json.dumps(example).encode()


def build(settings: Settings, front_door: bool) -> FastAPI:
    app = create_app(settings, metrics_registry=CollectorRegistry())
    if not front_door:
        kept = [m for m in app.user_middleware if getattr(m, "cls", None) is not FrontDoor]
        app.user_middleware = kept
    return app


async def measure(app: FastAPI, body: bytes, requests: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) per request over ``requests`` /rank calls."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        walls = []
        cpu = time.process_time()
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.post("/rank", content=body, headers=HEADERS)
            walls.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"/rank answered {response.status_code}: {response.text[:300]}")
        return statistics.median(walls) * 1e3, (time.process_time() - cpu) / requests * 1e3


async def run(args: argparse.Namespace) -> dict[str, list[float]]:
    settings = Settings(
        models_dir=args.store, model=args.model, log_level="WARNING", inference_threads=1
    )
    body = rank_body(args.store, args.model, args.candidates)
    apps = {"with": build(settings, True), "without": build(settings, False)}
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    async with (
        apps["with"].router.lifespan_context(apps["with"]),
        apps["without"].router.lifespan_context(apps["without"]),
    ):
        for app in apps.values():
            await measure(app, body, max(args.requests // 10, 1))  # warm up both
        for round_ in range(args.rounds):
            order = list(apps.items()) if round_ % 2 == 0 else list(apps.items())[::-1]
            for name, app in order:
                wall, per_request = await measure(app, body, args.requests)
                cpu[name].append(per_request)
                print(
                    f"round {round_ + 1}  {name:>7} front door: p50 {wall:7.3f} ms  "
                    f"cpu {per_request:7.3f} ms/request",
                    flush=True,
                )
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="model store directory")
    parser.add_argument("--model", required=True, help="model name in the store")
    parser.add_argument("--candidates", type=int, default=100, help="candidates per request")
    parser.add_argument("--requests", type=int, default=400, help="requests per round and app")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds")
    args = parser.parse_args(argv)
    cpu = asyncio.run(run(args))
    with_, without = statistics.median(cpu["with"]), statistics.median(cpu["without"])
    print(
        f"median cpu per /rank request: with {with_:.3f} ms, without {without:.3f} ms, "
        f"ratio {with_ / without:.3f} (with / without)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
