"""Closed-loop load generator for a running mtrank service: concurrency, duration, candidates per request.

Each worker waits for its answer before sending again, so this measures throughput at a fixed
concurrency. For latency at a given arrival rate (open loop, no coordinated omission) and rate sweeps,
use ``python -m service loadtest``.

    python benchmarks/loadtest.py --url http://127.0.0.1:8000 --concurrency 16 --duration 30 \
        --candidates 500 --store models_store --model feed --png loadtest.png
    python benchmarks/loadtest.py --url http://127.0.0.1:8000 --smoke      # a few seconds, for CI
    python benchmarks/loadtest.py --url URL --baseline-url OTHER_URL ...   # same load on both, ratios

Bodies are built from the model's warm-up example (manifest ``warmup[0]``, read with ``--store/--model``)
with its candidates repeated under fresh ids up to ``--candidates``, or from ``--body FILE``, or else
candidates with ids only (spec defaults for every feature). Prints progress every second, then
p50/p90/p99/max latency, throughput and status counts; saves a latency-percentile plot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

PERCENTILES = (50, 90, 99)


def base_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.body:
        body: dict[str, Any] = json.loads(Path(args.body).read_text())
        return body
    if args.store and args.model:
        from service.model_store import ModelStore

        store = ModelStore(Path(args.store))
        version = store.current(args.model) or store.versions(args.model)[-1]
        manifest = store.read_manifest(args.model, version)
        if manifest.warmup:
            return manifest.warmup[0].model_dump(mode="json", exclude_none=True)
    return {"user": {"id": "loadtest-user"}, "candidates": [{"id": "c0"}]}


def make_body(template: dict[str, Any], n_candidates: int) -> bytes:
    """``template`` with its candidate rows cycled under unique ids up to ``n_candidates``."""
    rows = template["candidates"]
    if isinstance(rows, dict):  # columnar: keep as is
        return json.dumps(template).encode()
    candidates = [
        {**rows[i % len(rows)], "id": f"{rows[i % len(rows)]['id']}-{i}"}
        for i in range(n_candidates)
    ]
    return json.dumps({**template, "candidates": candidates}).encode()


async def worker(
    client: httpx.AsyncClient,
    body: bytes,
    stop_at: float,
    latencies: list[float],
    statuses: Counter[str],
) -> None:
    headers = {"content-type": "application/json"}
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            response = await client.post("/rank", content=body, headers=headers)
            statuses[str(response.status_code)] += 1
        except httpx.HTTPError as exc:
            statuses[type(exc).__name__] += 1
            continue
        if response.status_code == 200:
            latencies.append(time.perf_counter() - started)


async def progress(stop_at: float, latencies: list[float], statuses: Counter[str]) -> None:
    started = time.perf_counter()
    while time.perf_counter() < stop_at:
        await asyncio.sleep(1.0)
        recent = np.asarray(latencies[-200:]) * 1e3
        p50 = float(np.percentile(recent, 50)) if len(recent) else float("nan")
        print(
            f"[{time.perf_counter() - started:5.1f} s] ok={len(latencies)} "
            f"statuses={dict(statuses)} recent p50={p50:.1f} ms",
            flush=True,
        )


async def run(
    args: argparse.Namespace, body: bytes, url: str
) -> tuple[list[float], Counter[str], float]:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        ready = await client.get("/readyz")
        if ready.status_code != 200:
            raise SystemExit(f"{url}/readyz answered {ready.status_code}: {ready.text}")
        started = time.perf_counter()
        stop_at = started + args.duration
        tasks = [
            worker(client, body, stop_at, latencies, statuses) for _ in range(args.concurrency)
        ]
        await asyncio.gather(progress(stop_at, latencies, statuses), *tasks)
        elapsed = time.perf_counter() - started
    return latencies, statuses, elapsed


def report(latencies: list[float], statuses: Counter[str], elapsed: float) -> dict[str, float]:
    ms = np.asarray(latencies) * 1e3
    summary = {"requests_ok": float(len(ms)), "throughput_rps": len(ms) / elapsed}
    if len(ms):
        for p in PERCENTILES:
            summary[f"p{p}_ms"] = float(np.percentile(ms, p))
        summary["max_ms"] = float(ms.max())
    print(f"statuses: {dict(statuses)}")
    for key, value in summary.items():
        print(f"{key:>15}: {value:.2f}")
    return summary


def plot(series: dict[str, list[float]], path: Path, title: str) -> None:
    """Latency by percentile, one line per run (label -> latencies in seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = np.linspace(0, 100, 201)
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, latencies in series.items():
        ax.plot(qs, np.percentile(np.asarray(latencies) * 1e3, qs), label=label)
    if len(series) > 1:
        ax.legend()
    for p in PERCENTILES:
        ax.axvline(p, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--baseline-url",
        help="run the same load against this service first and print --url's figures as ratios",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--body", help="JSON request used as the template")
    parser.add_argument("--store", help="model store: use the model's warm-up example")
    parser.add_argument("--model", help="model name in --store")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--png", default="loadtest_latency.png", help="percentile plot ('' = none)")
    parser.add_argument("--smoke", action="store_true", help="2 workers, 2 s, 20 candidates")
    args = parser.parse_args(argv)
    if args.smoke:
        args.concurrency, args.duration, args.candidates = 2, 2.0, 20
    body = make_body(base_body(args), args.candidates)
    print(
        f"{args.url}: {args.concurrency} workers, {args.duration:.0f} s, "
        f"{args.candidates} candidates ({len(body) / 1024:.0f} KiB per body)"
    )
    series: dict[str, list[float]] = {}
    summaries: dict[str, dict[str, float]] = {}
    for label, url in (("baseline", args.baseline_url), ("mtrank", args.url)):
        if url is None:
            continue
        print(f"== {label}: {url}")
        latencies, statuses, elapsed = asyncio.run(run(args, body, url))
        summaries[label] = report(latencies, statuses, elapsed)
        if not latencies:
            print("no successful request: see the statuses above")
            return 1
        series[f"{label} ({url})"] = latencies
    if "baseline" in summaries:
        ours, base = summaries["mtrank"], summaries["baseline"]
        print(
            "mtrank / baseline: "
            + ", ".join(
                f"{k} {ours[k] / base[k]:.2f}x" for k in ("p50_ms", "p99_ms", "throughput_rps")
            )
        )
    if args.png:
        title = f"/rank, {args.candidates} candidates, concurrency {args.concurrency}"
        plot(series, Path(args.png), title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
