"""A 10M-row hashed item-id table served: load time, RSS and /rank latency against the default table.

    python benchmarks/big_item_table.py --buckets 10000000 --work /tmp/mtrank-big
    python benchmarks/big_item_table.py --smoke --work DIR            # seconds, for CI

The default preset is trained for one epoch on simulator rows (or ``--base-run`` is taken as it
is) and published as ``base``; ``big`` is the same run with its hashed item_id table widened to
``--buckets`` rows (the trained rows kept, the new ones drawn like a fresh table's), published the
same way. A hashed embedding table costs rows x dim x 4 bytes: 10M x 16 x 4 = 640 MB, in the
candidate graph and again in the user graph, whose history looks items up in the same table.
Training a 10M-row table on a few thousand rows would only change its values, not its size, its
load time or its lookups, which is what is measured here. Each is served by its own ``python -m service serve`` process; the script measures
the time from process start to ``/readyz`` 200, the process RSS after warm-up and after the load,
and the latency of ``/rank`` with ``--candidates`` candidates whose item ids are drawn across the
whole id space (so lookups miss the CPU caches as a real catalogue does), one request at a time,
alternating between the two services. Ratios are big / base of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from service.model_store import ModelStore


def _run(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def widen_item_table(base: Path, out: Path, buckets: int) -> None:
    """A copy of run ``base`` whose hashed item_id table has ``buckets`` rows."""
    from training.train.checkpoint import build_model, load_run, save_checkpoint

    run = load_run(base)
    spec = run.spec.model_dump(mode="json")
    for feature in spec["features"]:
        if feature["name"] == "item_id":
            feature["buckets"] = buckets
    wide_spec = type(run.spec).model_validate(spec)
    model = build_model(wide_spec, run.tasks, run.config, run.options)
    trained = run.model.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            old = trained[name]
            if value.shape == old.shape:
                value.copy_(old)
            else:  # the item table: trained rows first, fresh rows after
                value[: old.shape[0]].copy_(old)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out)
    save_checkpoint(out, model, run.config, wide_spec, run.derived, run.sources, run.options)
    wide_spec.dump(out / "feature_spec.yaml")


def prepare(args: argparse.Namespace) -> Path:
    """A trained base run, its widened copy, one store holding ``base`` and ``big``."""
    work, python = Path(args.work), sys.executable
    store = work / "store"
    base = Path(args.base_run) if args.base_run else work / "run-base"
    if not args.base_run:
        data = work / "sim"
        if not (data / "dataset.yaml").is_file():
            command = [python, "-m", "training", "generate", "simulator", "--rows", str(args.rows)]
            _run([*command, "--out", str(data), "--no-progress"], work / "generate.log")
        train = [python, "-m", "training", "train", "--data", str(data), "--out", str(base)]
        seconds = _run([*train, "--epochs", "1", "--no-progress"], work / "train-base.log")
        print(f"base: trained in {seconds:.0f} s")
    widen_item_table(base, work / "run-big", args.buckets)
    shutil.rmtree(store, ignore_errors=True)
    for name, run in (("base", base), ("big", work / "run-big")):
        publish = [python, "-m", "training", "publish", str(run), "--store", str(store)]
        seconds = _run([*publish, "--model", name], work / f"publish-{name}.log")
        print(f"{name}: exported, verified and published in {seconds:.0f} s")
    return store


class Service:
    """One ``python -m service serve`` process."""

    def __init__(self, store: Path, model: str, log: Path) -> None:
        self.model, self.port = model, _free_port()
        env = {**os.environ, "MTRANK_LOG_LEVEL": "WARNING"}
        command = [sys.executable, "-m", "service", "serve", "--store", str(store)]
        command += ["--model", model, "--port", str(self.port)]
        self.started = time.perf_counter()
        self.out = log.open("w")
        self.process = subprocess.Popen(command, stdout=self.out, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.model} service exited; see {self.out.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"{self.model} service not ready after {timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.out.close()


def bodies(store: Path, model: str, n: int, candidates: int, id_space: int) -> list[bytes]:
    """``n`` /rank bodies: the model's warm-up request with ``candidates`` candidates whose item
    ids are spread over ``id_space`` ids (the same ids for both models)."""
    ms = ModelStore(store)
    manifest = ms.read_manifest(model, ms.current(model) or ms.versions(model)[-1])
    template = manifest.warmup[0].model_dump(mode="json", exclude_none=True)
    rows = template["candidates"]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        ids = rng.integers(1, id_space, candidates)
        chosen = [
            {"id": f"c{k}", "features": {**rows[k % len(rows)]["features"], "item_id": int(i)}}
            for k, i in enumerate(ids)
        ]
        out.append(json.dumps({**template, "candidates": chosen}).encode())
    return out


def measure(args: argparse.Namespace, store: Path) -> dict[str, dict[str, Any]]:
    work = Path(args.work)
    services = {name: Service(store, name, work / f"serve-{name}.log") for name in ("base", "big")}
    try:
        load = {name: s.wait_ready(args.ready_timeout) for name, s in services.items()}
        rss_ready = {name: _rss_mib(s.process.pid) for name, s in services.items()}
        payload = bodies(store, "base", args.requests, args.candidates, args.buckets)
        latencies: dict[str, list[float]] = {name: [] for name in services}
        with httpx.Client(timeout=30) as client:
            for body in payload[: args.warmup]:  # warm both, untimed
                for s in services.values():
                    client.post(f"{s.url}/rank", content=body)
            for body in payload:
                for name, s in services.items():  # interleaved: the same load on both
                    started = time.perf_counter()
                    response = client.post(
                        f"{s.url}/rank", content=body, headers={"content-type": "application/json"}
                    )
                    latencies[name].append(time.perf_counter() - started)
                    if response.status_code != 200:
                        raise SystemExit(
                            f"{name}: /rank {response.status_code} {response.text[:300]}"
                        )
        result = {}
        for name, s in services.items():
            ms = np.array(latencies[name]) * 1000
            folder = ModelStore(store).version_dir(name, ModelStore(store).current(name) or "")
            result[name] = {
                "model_files_mb": round(
                    sum(p.stat().st_size for p in folder.glob("*.onnx*")) / 1e6, 1
                ),
                "load_seconds": round(load[name], 2),
                "rss_ready_mib": round(rss_ready[name], 1),
                "rss_after_load_mib": round(_rss_mib(s.process.pid), 1),
                "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p90_ms": round(float(np.percentile(ms, 90)), 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2),
            }
        return result
    finally:
        for s in services.values():
            s.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buckets", type=int, default=10_000_000, help="item_id hash buckets")
    parser.add_argument("--rows", type=int, default=20_000, help="simulator rows to train on")
    parser.add_argument("--base-run", help="a trained run to use as base instead of training one")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per service")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--ready-timeout", type=float, default=600)
    parser.add_argument("--work", default="/tmp/mtrank-big")
    parser.add_argument("--out", type=Path, help="also write the figures to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.buckets, args.rows, args.candidates, args.requests, args.warmup = (
            50_000,
            1500,
            50,
            5,
            1,
        )
    Path(args.work).mkdir(parents=True, exist_ok=True)
    store = prepare(args)
    result = measure(args, store)
    lines = [
        f"item_id table: base = the simulator's, big = {args.buckets:,} hashed rows "
        f"({args.candidates} candidates, {args.requests} requests each, one at a time)",
        f"{'':>6} {'files MB':>9} {'load s':>7} {'RSS ready':>10} {'RSS load':>9} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}",
    ]
    for name, r in result.items():
        lines.append(
            f"{name:>6} {r['model_files_mb']:>9} {r['load_seconds']:>7} {r['rss_ready_mib']:>10} "
            f"{r['rss_after_load_mib']:>9} {r['p50_ms']:>7} {r['p90_ms']:>7} {r['p99_ms']:>7}"
        )
    base, big = result["base"], result["big"]
    lines.append(
        f"big / base: load {big['load_seconds'] / base['load_seconds']:.2f}x, RSS "
        f"{big['rss_after_load_mib'] / base['rss_after_load_mib']:.2f}x, p50 "
        f"{big['p50_ms'] / base['p50_ms']:.2f}x, p90 {big['p90_ms'] / base['p90_ms']:.2f}x"
    )
    lines.append(f"load average {os.getloadavg()[0]:.1f}")
    text = "\n".join(lines)
    print(text)
    print(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
