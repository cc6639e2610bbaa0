"""Does parsing a 1,000-candidate /rank body cost less than scoring it?

    python benchmarks/parse_vs_score.py --store models_store --model feed [--candidates 1000] [--repeat 50]

Measures, on the model's warm-up example repeated to ``--candidates`` candidates (fresh ids):

* ``fastapi_default``: what a ``body: RankRequest`` parameter costs, ``json.loads`` then
  ``RankRequest.model_validate`` on the Python objects;
* ``validate_json``: the pydantic path, ``RankRequest.model_validate_json`` on the raw bytes plus the
  limit checks (``service.json_body.validate_rank_request``);
* ``fast_path``: what /rank does, msgspec typed decoding and a few checks (``service.rank_body``), falling back
  to ``validate_json`` for any body it is not sure of (``service.json_body.parse_rank_request``);
* ``fastapi_route`` / ``raw_route``: the same two ways inside a FastAPI route (``body: RankRequest``
  parameter vs reading ``await request.body()``), called in-process through httpx's ASGI transport,
  so FastAPI's own body handling is included;
* ``score``: ``Ranker.rank`` (feature transform, both ONNX graphs, fusion, top-k), no feature store;

and prints medians and the ratios parse/score. Issue 4 asks parse <= score.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.responses import Response

from service.json_body import BodyLimits, parse_rank_request, validate_rank_request
from service.model_store import ModelStore
from service.schemas import RankRequest
from service.scoring.ranker import Ranker
from service.scoring.registry import ModelRegistry


def request_body(store: ModelStore, model: str, version: str, n: int) -> bytes:
    manifest = store.read_manifest(model, version)
    if not manifest.warmup:
        raise SystemExit(f"{model}/{version} has no warm-up example to build a request from")
    example: dict[str, Any] = manifest.warmup[0].model_dump(mode="json", exclude_none=True)
    rows = example["candidates"]
    example["candidates"] = [
        {**rows[i % len(rows)], "id": f"{rows[i % len(rows)]['id']}-{i}"} for i in range(n)
    ]
    return json.dumps(example).encode()


def median_ms(run: Callable[[], object], repeat: int) -> float:
    run()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def route_apps(limits: BodyLimits) -> tuple[FastAPI, FastAPI]:
    default_app, raw_app = FastAPI(), FastAPI()

    @default_app.post("/rank")
    async def default_route(body: RankRequest) -> Response:  # noqa: ARG001 (parsing is the point)
        return Response(b"{}", media_type="application/json")

    @raw_app.post("/rank")
    async def raw_route(request: Request) -> Response:
        parse_rank_request(await request.body(), limits)
        return Response(b"{}", media_type="application/json")

    return default_app, raw_app


def route_ms(app: FastAPI, body: bytes, repeat: int, loop: asyncio.AbstractEventLoop) -> float:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
    headers = {"content-type": "application/json"}

    def call() -> None:
        response = loop.run_until_complete(client.post("/rank", content=body, headers=headers))
        if response.status_code != 200:
            raise SystemExit(f"benchmark route answered {response.status_code}: {response.text}")

    try:
        return median_ms(call, repeat)
    finally:
        loop.run_until_complete(client.aclose())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", default="models_store")
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", help="default: the store's current version")
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)

    store = ModelStore(Path(args.store))
    registry = ModelRegistry(store, args.model)
    loaded = registry.load(args.version)
    body = request_body(store, args.model, loaded.version, args.candidates)
    limits = BodyLimits(max_candidates=100_000, max_sequence_length=10_000)
    ranker = Ranker(registry)
    rank_input = parse_rank_request(body, limits).input
    loop = asyncio.new_event_loop()

    default_app, raw_app = route_apps(limits)
    results = {
        "fastapi_default": median_ms(
            lambda: RankRequest.model_validate(json.loads(body)), args.repeat
        ),
        "validate_json": median_ms(lambda: validate_rank_request(body, limits), args.repeat),
        "fast_path": median_ms(lambda: parse_rank_request(body, limits), args.repeat),
        "fastapi_route": route_ms(default_app, body, args.repeat, loop),
        "raw_route": route_ms(raw_app, body, args.repeat, loop),
        "score": median_ms(lambda: loop.run_until_complete(ranker.rank(rank_input)), args.repeat),
    }
    loop.close()
    print(
        f"{loaded.name}/{loaded.version}, {args.candidates} candidates, {len(body) / 1024:.0f} KiB body"
    )
    for name, ms in results.items():
        print(f"{name:>16}: {ms:8.2f} ms (median of {args.repeat})")
    print(f"fastapi_default / score = {results['fastapi_default'] / results['score']:.2f}")
    print(f"  validate_json / score = {results['validate_json'] / results['score']:.2f}")
    print(f"      fast_path / score = {results['fast_path'] / results['score']:.2f}")
    print(f"  fastapi_route / score = {results['fastapi_route'] / results['score']:.2f}")
    print(f"      raw_route / score = {results['raw_route'] / results['score']:.2f}")
    print(
        f"fastapi_default / validate_json = {results['fastapi_default'] / results['validate_json']:.2f}"
    )
    print(f"validate_json / fast_path = {results['validate_json'] / results['fast_path']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
