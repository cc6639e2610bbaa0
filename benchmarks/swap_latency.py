"""What swaps, a canary and a shadow cost live traffic: /rank latency per phase against steady state.

    python benchmarks/swap_latency.py --store models_store --model feed      # two versions needed
    python benchmarks/swap_latency.py --make-store /tmp/swapstore --model feed   # trains two first
    python benchmarks/swap_latency.py --store DIR --model NAME --smoke           # a few seconds

Starts the service (uvicorn, a copy of the store, admin token) and ``--clients`` client threads
sending /rank (``--candidates`` candidates, user ids varied so a canary splits them). Phases are
interleaved, ``--rounds`` times: ``steady`` (nothing happens), ``swap`` (an admin load of the other
version every ``--swap-interval`` seconds), ``steady``, ``canary`` (a second version for
``--canary`` percent of users), ``steady``, ``shadow`` (``--shadow`` percent of requests scored
again after the response). Canary and shadow are started before their phase and removed after it;
requests sent meanwhile are not counted. Prints p50/p90/p99 per phase and the ratios against the
steady phases of the same run, how long each swap took, the server's RSS (one version before any
swap, during swaps, two versions, after everything was undone),
checks every response names a version chosen at that time, and plots latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PERCENTILES = (50, 90, 99)


@dataclass
class Phase:
    """The phase every request is attributed to; ``None`` while switching (not counted)."""

    name: str | None = None
    chosen: set[str] = field(default_factory=set)  # versions a response may name meanwhile


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    versions: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unexpected: list[str] = field(default_factory=list)
    rss: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    swaps: int = 0
    swap_seconds: list[float] = field(default_factory=list)  # each admin load, sent to answered


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_store(root: Path, model: str) -> None:
    """Two versions of the default preset, trained briefly on simulator data (about a minute)."""
    if root.exists() and len(list((root / model).glob("*/manifest.json"))) >= 2:
        return
    work = Path(tempfile.mkdtemp(prefix="swapbench-"))
    run = [sys.executable, "-m", "training"]
    steps = [
        ["generate", "simulator", "--rows", "20000", "--seed", "0", "--out", str(work / "sim")]
    ]
    for seed in (1, 2):
        out = str(work / f"run{seed}")
        steps.append(["train", "--preset", "default", "--data", str(work / "sim"), "--out", out,
                      "--epochs", "1", "--seed", str(seed), "--no-progress"])  # fmt: skip
        steps.append(["publish", out, "--store", str(root), "--model", model, "--rows", "500"])
    for step in steps:
        print("$ python -m training", " ".join(step), flush=True)
        subprocess.run([*run, *step], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(work, ignore_errors=True)


def bodies(store: Path, model: str, version: str, n: int, count: int) -> list[bytes]:
    """``count`` bodies of ``n`` candidates (the warm-up example repeated), one user id each."""
    manifest = json.loads((store / model / version / "manifest.json").read_text())
    example = manifest["warmup"][0]
    rows = example["candidates"]
    candidates = [
        {**rows[i % len(rows)], "id": f"{rows[i % len(rows)]['id']}-{i}"} for i in range(n)
    ]
    out = []
    for k in range(count):
        user = {**example["user"], "id": f"bench-user-{k}"}
        out.append(
            json.dumps({**example, "user": user, "candidates": candidates, "top_k": 50}).encode()
        )
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (uvicorn workers), MiB."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.phase = Phase()
        self.results = Results()
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def client(self, url: str, payloads: list[bytes], offset: int) -> None:
        headers = {"content-type": "application/json"}
        k = offset
        with httpx.Client(base_url=url, timeout=30) as client:
            while not self.stop.is_set():
                body = payloads[k % len(payloads)]
                k += 1
                phase = self.phase
                started = time.perf_counter()
                try:
                    response = client.post("/rank", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.results.statuses[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - started
                version = _version(response.content) if response.status_code == 200 else None
                with self.lock:
                    self.results.statuses[str(response.status_code)] += 1
                    if phase.name is None or phase is not self.phase:
                        continue  # switching phases: not counted
                    self.results.latencies[phase.name].append(elapsed)
                    if version is not None:
                        self.results.versions[phase.name][version] += 1
                        if version not in phase.chosen:
                            self.results.unexpected.append(f"{phase.name}: {version}")

    def sample_rss(self, pid: int) -> None:
        while not self.stop.is_set():
            name = self.phase.name
            if name == "steady" and not self.results.swaps:
                name = "before"  # one version, nothing swapped yet: the baseline footprint
            if name is not None:
                with self.lock:
                    self.results.rss[name].append(rss_mib(pid))
            time.sleep(0.1)


def _version(content: bytes) -> str | None:
    marker = b'"version":"'
    start = content.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return content[start : content.index(b'"', start)].decode()


def admin(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(url + path, json=body, headers=AUTH, timeout=120)
    if response.status_code != 200:
        raise SystemExit(f"POST {path} answered {response.status_code}: {response.text}")
    result: dict[str, Any] = response.json()
    return result


def run_phases(bench: Bench, url: str, versions: list[str], serving: str) -> None:
    args = bench.args
    v1, v2 = versions[0], versions[1]
    other = v2 if serving == v1 else v1
    schedule = ["steady", "swap", "steady", "canary", "steady", "shadow"] * args.rounds
    schedule.append("after")  # steady again, once everything was undone: RSS afterwards
    for name in schedule:
        chosen = {serving}
        if name == "canary":
            admin(url, "/admin/models/canary", {"version": other, "percent": args.canary})
            chosen = {serving, other}
        elif name == "shadow":
            admin(url, "/admin/models/shadow", {"version": other, "percent": args.shadow})
        elif name == "swap":
            chosen = {v1, v2}
        time.sleep(args.settle)
        bench.phase = Phase(name, chosen)
        print(f"  phase {name:<7} {args.seconds:.0f} s", flush=True)
        ends = time.monotonic() + args.seconds
        if name == "swap":
            target = other
            while time.monotonic() < ends:
                sent = time.monotonic()
                admin(url, "/admin/models/load", {"version": target})
                bench.results.swap_seconds.append(time.monotonic() - sent)
                bench.results.swaps += 1
                serving, target = target, serving
                time.sleep(args.swap_interval)
        else:
            time.sleep(max(0.0, ends - time.monotonic()))
        bench.phase = Phase()
        other = v2 if serving == v1 else v1
        if name == "canary":
            admin(url, "/admin/models/canary/abort")
        elif name == "shadow":
            admin(url, "/admin/models/shadow/abort")


def report(results: Results) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    print(f"\nstatuses: {dict(results.statuses)}; swaps: {results.swaps}")
    print(f"{'phase':<8}{'requests':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'p50 x':>8}{'p99 x':>8}")  # fmt: skip
    steady_all = results.latencies["steady"] + results.latencies["after"]
    steady = np.asarray(steady_all) * 1e3
    base = {p: float(np.percentile(steady, p)) for p in PERCENTILES} if len(steady) else {}
    for name in ("steady", "swap", "canary", "shadow", "after"):
        ms = np.asarray(results.latencies.get(name, [])) * 1e3
        if not len(ms):
            continue
        row = {f"p{p}_ms": float(np.percentile(ms, p)) for p in PERCENTILES}
        row["max_ms"] = float(ms.max())
        row["requests"] = float(len(ms))
        summary[name] = row
        ratio50 = row["p50_ms"] / base[50] if base else float("nan")
        ratio99 = row["p99_ms"] / base[99] if base else float("nan")
        print(f"{name:<8}{len(ms):>9}{row['p50_ms']:>9.1f}{row['p90_ms']:>9.1f}{row['p99_ms']:>9.1f}"
              f"{row['max_ms']:>9.1f}{ratio50:>7.2f}x{ratio99:>7.2f}x")  # fmt: skip
    for name in ("swap", "canary", "shadow"):
        if name in summary and base:
            print(f"p99 {name} / steady: {summary[name]['p99_ms'] / base[99]:.2f}x")
    if results.swap_seconds:
        took = np.asarray(results.swap_seconds) * 1e3
        print(f"a swap (admin load answered): median {np.median(took):.0f} ms, "
              f"max {took.max():.0f} ms")  # fmt: skip
    print("\nserver RSS (MiB): " + ", ".join(
        f"{name} {np.median(v):.1f} (max {max(v):.1f})" for name, v in results.rss.items() if v
    ))  # fmt: skip
    before, after = results.rss.get("before"), results.rss.get("after")
    if before and after:
        grew = np.median(after) - np.median(before)
        peak = max(max(v) for v in results.rss.values() if v) - np.median(before)
        print(
            f"RSS after everything was undone - with one version before any swap: {grew:+.1f} MiB"
            f" ({100 * grew / np.median(before):+.1f} %); peak above it: {peak:+.1f} MiB"
        )
    for name, counts in results.versions.items():
        print(f"versions answered in {name}: {dict(counts)}")
    print(f"responses naming a version not chosen at that time: {len(results.unexpected)}")
    for line, count in Counter(results.unexpected).most_common(5):
        print(f"  {count} x {line}")
    return summary


def start_server(args: argparse.Namespace, store: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTRANK_")}
    env.update({
        "MTRANK_MODELS_DIR": str(store), "MTRANK_MODEL": args.model,
        "MTRANK_ADMIN_TOKEN": TOKEN, "MTRANK_LOG_LEVEL": "WARNING",
        "MTRANK_MAX_CANDIDATES": str(max(5000, args.candidates)),
        **dict(item.split("=", 1) for item in args.env),
    })  # fmt: skip
    if args.redis:
        env["MTRANK_REDIS_URL"] = args.redis
        env["MTRANK_REDIS_PREFIX"] = f"swapbench-{os.getpid()}"
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
               "--workers", str(args.workers)]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited with {server.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the service did not become ready within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, help="model store with >= 2 versions of --model")
    parser.add_argument("--make-store", type=Path, help="train two versions into this store first")
    parser.add_argument("--model", default="feed")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    parser.add_argument("--settle", type=float, default=1.0, help="after a phase's setup")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--swap-interval", type=float, default=0.5)
    parser.add_argument("--canary", type=float, default=50.0, help="percent of users")
    parser.add_argument("--shadow", type=float, default=100.0, help="percent of requests")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--redis", help="Redis URL (fleet messages, features, user cache)")
    parser.add_argument("--env", action="append", default=[], help="extra MTRANK_X=value")
    parser.add_argument("--png", default="", help="latency percentile plot")
    parser.add_argument("--json", default="", help="write the figures here")
    parser.add_argument("--smoke", action="store_true", help="2 clients, 0.8 s phases, 1 round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.seconds, args.settle, args.rounds = 2, 0.8, 0.2, 1
        args.candidates, args.swap_interval = 20, 0.3
    source = args.make_store or args.store
    if source is None:
        parser.error("give --store DIR (with two versions) or --make-store DIR")
    if args.make_store:
        make_store(args.make_store, args.model)
    versions = sorted(p.parent.name for p in (source / args.model).glob("*/manifest.json"))
    if len(versions) < 2:
        raise SystemExit(f"{source}/{args.model} needs two published versions, has {versions}")
    work = Path(tempfile.mkdtemp(prefix="swapbench-store-"))
    store = work / "store"
    shutil.copytree(source, store, ignore=shutil.ignore_patterns(".fleet", "fleet.json"))
    load = os.getloadavg()
    print(f"{args.clients} clients, {args.candidates} candidates, {args.workers} worker(s), "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)  # fmt: skip
    server, url = start_server(args, store)
    bench = Bench(args)
    try:
        serving = httpx.get(url + "/readyz").json()["model"]["version"]
        payloads = bodies(store, args.model, serving, args.candidates, 64)
        threads = [
            threading.Thread(target=bench.client, args=(url, payloads, 16 * k), daemon=True)
            for k in range(args.clients)
        ]
        threads.append(threading.Thread(target=bench.sample_rss, args=(server.pid,), daemon=True))
        for thread in threads:
            thread.start()
        run_phases(bench, url, versions[:2], serving)
    finally:
        bench.stop.set()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    summary = report(bench.results)
    if args.png:
        from loadtest import plot  # benchmarks/ is on the path when run as a script

        series = {k: v for k, v in bench.results.latencies.items() if k != "after" and v}
        plot(
            series, Path(args.png), f"/rank: steady, swaps, canary, shadow ({args.clients} clients)"
        )
    if args.json:
        rss = {k: float(np.median(v)) for k, v in bench.results.rss.items() if v}
        swap_ms = [round(s * 1e3, 1) for s in bench.results.swap_seconds]
        figures = {"latency": summary, "rss_mib": rss, "swap_ms": swap_ms}
        Path(args.json).write_text(json.dumps(figures, indent=2))
    failed = sum(n for s, n in bench.results.statuses.items() if s != "200")
    return 1 if failed or bench.results.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
