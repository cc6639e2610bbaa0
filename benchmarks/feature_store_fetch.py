"""Fetch latency of mtrank's Redis layout against a Feast-style layout, on the same Redis.

mtrank: one compact value per entity (``service.store.codec``), a request's entities fetched with
one MGET and decoded in one pass (the real ``RedisFeatureStore.fetch`` path).
Feast-style: one Redis hash per entity with one field per feature plus an event-timestamp field,
one HGETALL per entity sent in one pipeline, each field decoded on its own (as Feast's Redis
online store does with its per-field protobuf values; here orjson, which is faster, so the
comparison flatters the Feast-style layout). Feast publishes a p99 of 125 ms for 100 entities.

    python benchmarks/feature_store_fetch.py --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
import uuid
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from service.store.codec import encode_row
from service.store.redis_feature_store import RedisFeatureStore, item_key

FEAST_PUBLISHED_P99_MS_100 = 125.0


def make_rows(count: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``count`` item rows of 10 features: ids, categories, prices, counts and a short list."""
    rng = random.Random(seed)
    rows = {}
    for index in range(count):
        rows[f"item{index}"] = {
            "item_id": f"item{index}",
            "category": f"cat{rng.randrange(50)}",
            "brand": f"brand{rng.randrange(500)}",
            "shop": rng.randrange(10_000),
            "price": round(rng.uniform(1, 500), 2),
            "ctr_7d": rng.random(),
            "sales_30d": rng.randrange(100_000),
            "rating": round(rng.uniform(1, 5), 1),
            "age_days": rng.randrange(1000),
            "tags": [rng.randrange(200) for _ in range(3)],
        }
    return rows


def load(client: redis.Redis, prefix: str, rows: dict[str, dict[str, Any]]) -> None:
    pipe = client.pipeline(transaction=False)
    for entity_id, row in rows.items():
        pipe.set(item_key(prefix, entity_id), encode_row(row))
        fields = {name: orjson.dumps(value) for name, value in row.items()}
        fields["_ts"] = orjson.dumps(int(time.time()))
        pipe.hset(f"{prefix}:h:{entity_id}", mapping=fields)  # type: ignore[arg-type]
    pipe.execute()


async def feast_style_fetch(
    client: aioredis.Redis, prefix: str, ids: list[str]
) -> list[dict[str, Any] | None]:
    pipe = client.pipeline(transaction=False)
    for entity_id in ids:
        pipe.hgetall(f"{prefix}:h:{entity_id}")
    replies = await pipe.execute()
    rows: list[dict[str, Any] | None] = []
    for reply in replies:
        if not reply:
            rows.append(None)
            continue
        rows.append({field.decode(): orjson.loads(value) for field, value in reply.items()})
    return rows


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


async def measure(url: str, prefix: str, ids: list[str], iterations: int) -> dict[str, list[float]]:
    store = RedisFeatureStore.from_url(url, prefix=prefix, timeout_ms=5000, budget_ms=10_000)
    client = aioredis.Redis.from_url(url)
    times: dict[str, list[float]] = {"mtrank": [], "feast-style": []}
    try:
        for index in range(iterations + 10):  # first 10 rounds warm the connections
            started = time.perf_counter()
            fetched = await store.fetch(None, ids)
            ours = time.perf_counter() - started
            if fetched.status != "ok" or fetched.misses:
                raise RuntimeError(
                    f"mtrank fetch failed: {fetched.status}, {fetched.misses} misses"
                )
            started = time.perf_counter()
            feast_rows = await feast_style_fetch(client, prefix, ids)
            feast = time.perf_counter() - started
            if any(row is None for row in feast_rows):
                raise RuntimeError("feast-style fetch missed entities")
            if index >= 10:
                times["mtrank"].append(ours)
                times["feast-style"].append(feast)
    finally:
        await store.close()
        await client.aclose()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--entities", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument(
        "--gc", choices=("freeze", "default"), default="freeze",
        help="freeze: gc.freeze() after set-up, as the service does after start-up (default)",
    )  # fmt: skip
    args = parser.parse_args()

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(args.redis)
    rows = make_rows(max(args.entities))
    try:
        load(client, prefix, rows)
        ours_bytes = sum(client.memory_usage(item_key(prefix, i)) or 0 for i in list(rows)[:100])
        feast_bytes = sum(client.memory_usage(f"{prefix}:h:{i}") or 0 for i in list(rows)[:100])
        print(
            f"Redis memory per entity: mtrank {ours_bytes / 100:.0f} B, feast-style {feast_bytes / 100:.0f} B"
        )
        if args.gc == "freeze":
            gc.collect()
            gc.freeze()
        print(f"garbage collector: {args.gc}")
        print(f"{'entities':>8} {'layout':>12} {'p50 ms':>8} {'p99 ms':>8}")
        for count in args.entities:
            ids = list(rows)[:count]
            times = asyncio.run(measure(args.redis, prefix, ids, args.iterations))
            summary = {layout: percentiles(samples) for layout, samples in times.items()}
            for layout, (p50, p99) in summary.items():
                print(f"{count:>8} {layout:>12} {p50:>8.2f} {p99:>8.2f}")
            (o50, o99), (f50, f99) = summary["mtrank"], summary["feast-style"]
            print(
                f"{count:>8} {'ratio':>12} {f50 / o50:>7.1f}x {f99 / o99:>7.1f}x  (feast-style / mtrank)"
            )
            if count == 100:
                print(
                    f"{'':>8} Feast's published p99 for 100 entities: {FEAST_PUBLISHED_P99_MS_100:g} ms"
                    f" = {FEAST_PUBLISHED_P99_MS_100 / o99:.0f}x mtrank's p99 here"
                )
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
