"""/rank against its model and against other ways to serve it, in one run: one table of ratios + a PNG.

    python benchmarks/serving_compare.py --out docs/benchmarks/serving/compare     # ~25 min
    python benchmarks/serving_compare.py --quick --models default --out /tmp/x    # smoke

For the default preset and the large one (50-long history with attention, 8 experts of (256, 128)),
trained on the simulator into ``--work`` (reused when present), at each candidate count:

1. ``floor``: onnxruntime alone on prepared arrays, user graph once + candidate graph;
2. ``mtrank``: /rank end to end over loopback HTTP (JSON in and out), list bodies, then list and
   columnar bodies in turn on the same server (``columnar / list`` compares those two, request by
   request, so the host's drift between two separate passes does not decide it), and the two
   graphs' own time inside requests of the same body (``explain.timings``; on most hosts slower
   than the floor: inside a request the rest of its work evicts the graphs' weights from the caches);
3. ``naive``: FastAPI + the PyTorch model in eager mode, user features copied to every candidate;
4. ``unsplit``: mtrank's request path with the model as one ONNX graph;
5. ``litserve`` / ``litserve_unsplit``: LitServe serving the split pair / the one graph behind
   mtrank's parse and transform (``benchmarks/serving_apps.py`` says why LitServe and how);
6. ``transport``: a uvloop server that answers each request with mtrank's stored answer to it and
   does nothing else (``benchmarks/transport_app.py``): what taking these request bytes in and
   putting these answer bytes out over loopback costs on this host, with this client, whatever
   the server computes. ``(mtrank - transport) / graphs`` is mtrank's ratio without that part.

Latency: one client, keep-alive, p50 over ``--seconds``, in ``--rounds`` rounds (each with its own
floor, the systems in a rotated order; medians over rounds, and each round's e2e / graphs). Throughput at 500 candidates: closed loop at
concurrency 1, 2, 4, 8; "throughput at equal p99" is each system's best throughput whose p99 stays
within the naive service's p99 at its own best throughput (linear between measured points). Plus the
candidate graph's GFLOP/s against single-core sgemm, mtrank on 2 workers against 1 (both served
at once and saturated in alternation, ``--rounds`` times; load generator pinned to core 1, its own
CPU time reported), latency at half of saturation (open loop over the saturating load's 8
connections taken in turn, then over them as one client pool takes them, the last answered first;
``--rounds`` passes of each alternating between the two servers; the pass with the median p99/p50 is reported, every pass's kept: a single pass's p99
is a handful of requests, which one burst of the host decides), the 2-worker server's closed-loop sweep (the
2-core setup against the naive service at equal p99), and worker RSS. The host's own stalls (a
loop spinning on each core, ``benchmarks/host_stalls.py``) are measured at the start and the end and
printed in the table's head: the tail at half saturation is made of them.
Every service gets one process and one onnxruntime/torch thread unless said otherwise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import host_stalls
import numpy as np
import orjson
from rank_cpu import Client, with_explain
from serving_models import (
    Prepared,
    bodies,
    candidate_flops,
    cpu_description,
    floor,
    free_port,
    load,
    prepare,
    sgemm_gflops,
)

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PRESETS = {"default": ("default", 30), "large": ("large", 50)}
SYSTEMS = ("mtrank", "naive", "unsplit", "litserve", "litserve_unsplit", "transport")
COLUMNAR = "mtrank_columnar"  # measured on the mtrank server, in turn with list bodies
TWO_WORKERS = "mtrank_2_workers"
SATURATING = 8
"""Connections of the closed loop that saturates 1 and 2 workers; the half-saturation load opens as
many and takes them in turn, so it divides over the workers as the saturating load did."""
"""mtrank as the README starts it on a 2-core machine (one worker per core). The naive service
answers in a thread pool whose torch calls release the GIL, so it can use the second core too
(on the large preset its throughput rises from concurrency 1 to 2)."""


class Service:
    """A server process on a free port, ready once a small /rank answers 200."""

    def __init__(self, command: list[str], env: dict[str, str], probe: bytes, port: int) -> None:
        self.port = port
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop); a pipe could stall the server
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=self.log,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{command} exited: {self.log.read().decode()[-2000:]}")
            if self._probe(probe):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{command} did not answer within 180 s")

    def _probe(self, body: bytes) -> bool:
        head = f"POST /rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                sock.sendall(head.encode() + body)
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def rss_mib(self) -> float:
        """Resident memory of the process and its children (the workers), MiB."""
        pids = [self.process.pid, *_children(self.process.pid)]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.log.close()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *_children(child)]
    return found


def start(
    system: str, model: Prepared, probe: bytes, workers: int = 1, answers: Path | None = None
) -> Service:
    """``system`` serving ``model`` on a free port; ``transport`` answers from ``answers``."""
    port = free_port()
    if system == "transport":
        if answers is None:
            raise ValueError("the transport floor needs mtrank's answers (store_answers)")
        command = [sys.executable, str(HERE / "transport_app.py"), "--answers", str(answers)]
        return Service([*command, "--port", str(port)], {}, probe, port)
    apps = [sys.executable, str(HERE / "serving_apps.py")]
    if system.startswith("mtrank"):
        command = [sys.executable, "-m", "service", "serve", "--store", str(model.store),
                   "--model", "feed", "--port", str(port), "--workers", str(workers)]  # fmt: skip
        env = {
            "MTRANK_INFERENCE_THREADS": "0",
            "MTRANK_ORT_THREADS": "1",
            "MTRANK_LOG_LEVEL": "WARNING",
        }
        return Service(command, env, probe, port)
    if system == "naive":
        command = [*apps, "naive", "--run", str(model.run), "--store", str(model.store)]
    elif system == "unsplit":
        command = [*apps, "unsplit", "--store", str(model.store), "--unsplit", str(model.unsplit)]
    else:
        command = [*apps, "litserve", "--store", str(model.store)]
        command += ["--unsplit", str(model.unsplit)] if system.endswith("unsplit") else []
    return Service([*command, "--port", str(port)], {}, probe, port)


def load_run(port: int, body: bytes, seconds: float, *, concurrency: int = 1,
             rate: float | None = None, alternate: bytes | None = None,
             reuse: str = "mru") -> dict[str, Any]:  # fmt: skip
    """The load generator in its own process pinned to core 1 (``serving_load.py``); with
    ``alternate``, that body in turn with ``body``, its figures under ``"alternate"``. An open
    loop (``rate``) starts with ``concurrency`` connections and takes idle ones by ``reuse``."""
    folder = Path(os.environ.get("TMPDIR", "/tmp"))
    path, other = (folder / f"mtrank-bench-{kind}-{os.getpid()}.json" for kind in ("body", "alt"))
    path.write_bytes(body)
    command = [sys.executable, str(HERE / "serving_load.py"), "--port", str(port), "--body",
               str(path), "--seconds", str(seconds), "--cpu", str(min(1, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0)]  # fmt: skip
    command += (
        ["--mode", "open", "--rate", str(rate), "--connections", str(concurrency), "--reuse", reuse]
        if rate
        else ["--concurrency", str(concurrency)]
    )
    if alternate is not None:
        other.write_bytes(alternate)
        command += ["--alternate", str(other)]
    result: dict[str, Any] = json.loads(
        subprocess.run(command, check=True, capture_output=True, text=True).stdout
    )
    path.unlink()
    other.unlink(missing_ok=True)
    result.update(_percentiles(result.pop("latencies_ms")))
    if alternate is not None:
        result["alternate"] = _percentiles(result.pop("alternate_latencies_ms"))
    return result


def store_answers(model: Prepared, requests: list[bytes], folder: Path) -> None:
    """mtrank's answer to each request, as ``answer-<request length>.json`` in ``folder`` (what
    ``transport_app.py`` answers with)."""
    service = start("mtrank", model, requests[0])
    client = Client(service.port)
    try:
        for body in requests:
            status, answer = client.rank(body)
            if status != 200:
                raise RuntimeError(f"/rank answered {status}: {answer[:300]!r}")
            (folder / f"answer-{len(body)}.json").write_bytes(answer)
    finally:
        client.close()
        service.stop()


def graphs_inside(port: int, body: bytes, requests: int = 200) -> float:
    """Median milliseconds of the two graphs inside requests of this body on a running mtrank
    (``explain.timings``: user + candidate graph, wall time in the server), one keep-alive client.
    The floor runs the same sessions back to back; inside a request the rest of its work may have
    taken their weights and buffers out of the core's caches, by how much depends on the host
    (``server_time.py`` measures that apart)."""
    explained = with_explain(body)
    client = Client(port)
    graphs = []
    try:
        for _ in range(requests):
            status, answer = client.rank(explained)
            if status != 200:
                raise RuntimeError(f"/rank answered {status}: {answer[:300]!r}")
            timings = orjson.loads(answer)["explain"]["timings"]
            graphs.append(timings["user_graph"] + timings["candidate_graph"])
    finally:
        client.close()
    return float(np.median(graphs[requests // 10 :])) * 1e3  # the first tenth warms up


def _percentiles(latencies_ms: list[float]) -> dict[str, Any]:
    ms = np.asarray(latencies_ms or [float("nan")])
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "n": int(ms.size)}  # fmt: skip


def at_p99(points: list[dict[str, Any]], bound: float) -> float:
    """Best throughput with p99 <= bound, linear between measured points (0 if none)."""
    best = 0.0
    for low, high in itertools.pairwise(points):
        if low["p99"] <= bound:
            best = max(best, low["throughput"])
            if high["p99"] > bound and high["throughput"] > low["throughput"]:
                share = (bound - low["p99"]) / (high["p99"] - low["p99"])
                best = max(
                    best, low["throughput"] + share * (high["throughput"] - low["throughput"])
                )
    if points and points[-1]["p99"] <= bound:
        best = max(best, points[-1]["throughput"])
    return best


def measure_model(model: Prepared, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one model. Latency is measured in ``args.rounds`` rounds, each with its own
    floor and the systems in a rotated order, and reported as medians over rounds (with each
    round's e2e / graphs ratio): on a shared virtual machine the host's speed drifts by 20 % and
    more within minutes, and a single pass would compare systems measured at different speeds."""
    loaded = load(model)
    sizes = {n: bodies(model, n) for n in args.sizes}
    probe = bodies(model, 5)["list"]
    floors: list[dict[int, dict[str, float]]] = []
    measured = [*args.systems, COLUMNAR] if "mtrank" in args.systems else args.systems
    latency: dict[str, dict[int, list[dict[str, Any]]]] = {
        s: {n: [] for n in sizes} for s in measured
    }
    out: dict[str, Any] = {"throughput": {}}
    answers = None
    try:
        if "transport" in args.systems:  # removed below even when asking mtrank fails
            answers = Path(tempfile.mkdtemp(prefix="mtrank-answers-"))
            store_answers(model, [probe, *(b["list"] for b in sizes.values())], answers)
        for round_ in range(args.rounds):
            floors.append({n: floor(loaded, body["list"], args.repeat, model.unsplit)
                           for n, body in sizes.items()})  # fmt: skip
            shift = round_ % len(args.systems)
            for system in [*args.systems[shift:], *args.systems[:shift]]:
                last = round_ == args.rounds - 1
                service = start(system, model, probe, answers=answers)
                try:
                    for n, body in sizes.items():
                        result = load_run(service.port, body["list"], args.seconds)
                        latency[system][n].append(result)
                        print(f"  {model.name} round {round_ + 1}/{args.rounds} {system:>16} n={n:<5} "
                              f"p50 {result['p50']:7.2f} ms", flush=True)  # fmt: skip
                        if system == "mtrank":  # the two forms in turn, on this server
                            result["graphs_inside"] = graphs_inside(service.port, body["list"])
                            paired = load_run(service.port, body["list"], args.seconds,
                                              alternate=body["columnar"])  # fmt: skip
                            columnar = paired["alternate"]
                            columnar["over_list"] = columnar["p50"] / paired["p50"]
                            latency[COLUMNAR][n].append(columnar)
                            print(f"  {model.name} round {round_ + 1}/{args.rounds} {COLUMNAR:>16} "
                                  f"n={n:<5} p50 {columnar['p50']:7.2f} ms, "
                                  f"{columnar['over_list']:.2f}x list in turn", flush=True)  # fmt: skip
                    if last and args.throughput_size in sizes and system != "transport":
                        busy = sizes[args.throughput_size]["list"]
                        points = [load_run(service.port, busy, args.seconds, concurrency=c)
                                  for c in args.concurrency]  # fmt: skip
                        out["throughput"][system] = points
                    if last and system == "mtrank":
                        out["rss_mib"] = service.rss_mib()
                finally:
                    service.stop()
    finally:
        if answers is not None:
            shutil.rmtree(answers)
    out["floor"] = {
        n: {k: float(np.median([f[n][k] for f in floors])) for k in floors[0][n]} for n in sizes
    }
    out["latency"] = {
        system: {n: _over_rounds(runs) for n, runs in by_size.items()}
        for system, by_size in latency.items()
    }
    if "mtrank" in latency:
        out["graphs_ratio_rounds"] = {
            n: [
                r["p50"] / f[n]["graphs"] for r, f in zip(latency["mtrank"][n], floors, strict=True)
            ]
            for n in sizes
        }
    if "mtrank" in latency and "transport" in latency:
        out["beyond_transport_rounds"] = {
            n: [
                (r["p50"] - t["p50"]) / f[n]["graphs"]
                for r, t, f in zip(
                    latency["mtrank"][n], latency["transport"][n], floors, strict=True
                )
            ]
            for n in sizes
        }
    flops = candidate_flops(model.store / "feed" / loaded.version / "candidates.onnx")
    top = max(args.sizes)
    out["gflops"] = flops * top / (out["floor"][top]["candidate_graph"] * 1e-3) / 1e9
    out["flops_per_candidate"] = flops
    if args.two_core and args.throughput_size in sizes:
        out["two_core"] = two_core(model, probe, sizes[args.throughput_size]["list"], args)
        out["throughput"][TWO_WORKERS] = out["two_core"]["2"]["sweep"]
    return out


def _tail(run: dict[str, Any]) -> float:
    """p99 / p50 of one load run."""
    return float(run["p99"] / run["p50"])


def median_pass(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The load run with the median p99/p50 (the higher of the two middle ones of an even count)."""
    return sorted(passes, key=_tail)[len(passes) // 2]


def _over_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of one system at one size, with every round's p50 (and, for the
    columnar form, its ratio to the list form sent in turn)."""
    summary: dict[str, Any] = {
        "p50": float(np.median([r["p50"] for r in runs])),
        "p99": float(np.median([r["p99"] for r in runs])),
        "p50_rounds": [r["p50"] for r in runs],
    }
    if runs and "graphs_inside" in runs[0]:
        summary["graphs_inside"] = float(np.median([r["graphs_inside"] for r in runs]))
    if runs and "over_list" in runs[0]:
        summary["over_list"] = float(np.median([r["over_list"] for r in runs]))
        summary["over_list_rounds"] = [r["over_list"] for r in runs]
    return summary


def two_core(
    model: Prepared, probe: bytes, body: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    """mtrank on 1 and 2 workers, both started at once and saturated in alternation for
    ``args.rounds`` rounds (the median round of each is reported, every round's throughput kept),
    then latency at half of its median saturation throughput, in ``args.rounds`` passes alternating
    between the two (the pass with the median p99/p50 is reported, every pass's kept)."""
    services = {workers: start("mtrank", model, probe, workers=workers) for workers in (1, 2)}
    result: dict[str, Any] = {}
    try:
        saturated: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for workers, service in services.items():
                saturated[workers].append(
                    load_run(service.port, body, args.seconds * 2, concurrency=SATURATING)
                )
        middle = {
            workers: sorted(runs, key=lambda run: run["throughput"])[len(runs) // 2]
            for workers, runs in saturated.items()
        }
        # half of saturation over the saturating load's connections taken in turn (so the load
        # divides over the workers as those connections do), then as one client pool takes them
        # (the connection whose answer came last first: most requests on one connection, one worker)
        halves: dict[str, dict[int, list[dict[str, Any]]]] = {
            reuse: {1: [], 2: []} for reuse in ("lru", "mru")
        }
        for _ in range(args.rounds):
            for reuse, runs in halves.items():
                for workers, service in services.items():
                    rate = middle[workers]["throughput"] / 2
                    runs[workers].append(load_run(service.port, body, args.seconds * 2, rate=rate,
                                                  concurrency=SATURATING, reuse=reuse))  # fmt: skip
        for workers, service in services.items():
            passes, pooled = halves["lru"][workers], halves["mru"][workers]
            result[str(workers)] = {
                "saturated": middle[workers],
                "saturated_rounds": [run["throughput"] for run in saturated[workers]],
                "half": median_pass(passes),
                "half_rounds": [_tail(run) for run in passes],
                "half_pool": median_pass(pooled),
                "half_pool_rounds": [_tail(run) for run in pooled],
                "rss_mib": service.rss_mib(),
            }
        # the closed-loop sweep of the other systems, for the 2-core configuration the README documents
        result["2"]["sweep"] = [
            load_run(services[2].port, body, args.seconds, concurrency=c) for c in args.concurrency
        ]
    finally:
        for service in services.values():
            service.stop()
    return result


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 and np.isfinite(a) else "n/a"


def _at_p99_text(best: float, points: list[dict[str, Any]], bound: float) -> str:
    """A system's throughput at p99 <= bound, or that it never got there and how close it came."""
    if best > 0:
        return f"{best:.0f}"
    lowest = min(p["p99"] for p in points)
    return f"never reached p99 <= {bound:.1f} ms (best p99 {lowest:.1f} ms)"


def _p99_ratio(
    best: dict[str, float],
    tp: dict[str, list[dict[str, Any]]],
    other: str,
    bound: float,
    ours: str = "mtrank",
) -> str:
    if best[other] > 0 and best[ours] > 0:
        return _ratio(best[ours], best[other])
    who = other if best[other] <= 0 else ours
    return f"{who} {_at_p99_text(0.0, tp[who], bound)}: no ratio at equal p99"


def _columnar(figures: dict[str, Any]) -> str:
    """Columnar p50 / list p50 with the two sent in turn to one server, median over rounds."""
    return f"{figures['over_list']:.2f}x" if "over_list" in figures else "n/a"


def _spread(rounds: dict[Any, list[float]]) -> str:
    """Every round's ratio, size by size: ``N=500 2.25x, 2.34x; N=2000 ...``."""
    return "; ".join(f"N={n} " + ", ".join(f"{x:.2f}x" for x in v) for n, v in rounds.items())


def table(
    results: dict[str, Any], sgemm: float, load_average: str, cpu: str, stalls: str | None = None
) -> str:
    lines = [f"CPU: {cpu}; load average at start: {load_average}; single-core sgemm (onnxruntime "
             f"MatMul 1024^3): {sgemm:.1f} GFLOP/s", ""]  # fmt: skip
    if stalls is not None:  # runs before 2026-12-04 20:00 did not measure them
        lines[-1:-1] = [f"host stalls (a loop spinning on each core, host_stalls.py): {stalls}"]
    for name, r in results.items():
        lat, fl = r["latency"], r["floor"]
        lines += [f"## {name} model", "",
                  "| N | graphs ms (floor) | unsplit graph / split | mtrank list p50 ms | / graphs | "
                  "outside model ms | graphs inside requests ms | / graphs inside | columnar / list | "
                  "transport ms | (mtrank - transport) / graphs | "
                  "naive / mtrank | unsplit / mtrank | litserve / mtrank | litserve_unsplit / mtrank |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for n in fl:
            g = fl[n]["graphs"]
            ours = lat.get("mtrank", {}).get(n, {})
            m, inside = ours.get("p50", float("nan")), ours.get("graphs_inside", float("nan"))
            moved = lat.get("transport", {}).get(n, {}).get("p50", float("nan"))
            cells = [
                str(n), f"{g:.2f}", _ratio(fl[n]["unsplit_graph"], g), f"{m:.2f}", _ratio(m, g),
                f"{m - g:.2f}", f"{inside:.2f}", _ratio(m, inside),
                _columnar(lat.get(COLUMNAR, {}).get(n, {})),
                f"{moved:.2f}" if np.isfinite(moved) else "n/a", _ratio(m - moved, g),
            ]  # fmt: skip
            for other in ("naive", "unsplit", "litserve", "litserve_unsplit"):
                cells.append(_ratio(lat.get(other, {}).get(n, {}).get("p50", np.nan), m))
            lines.append("| " + " | ".join(cells) + " |")
        rounds = r.get("graphs_ratio_rounds", {})
        if rounds and len(next(iter(rounds.values()))) > 1:
            lines += ["", f"medians over {len(next(iter(rounds.values())))} rounds; mtrank list / "
                      f"graphs in each round: {_spread(rounds)}"]  # fmt: skip
        beyond = r.get("beyond_transport_rounds", {})
        if beyond and len(next(iter(beyond.values()))) > 1:
            lines.append(f"(mtrank list - transport) / graphs in each round: {_spread(beyond)}")
        lines.append("")
        tp = r["throughput"]
        if "naive" in tp and "mtrank" in tp:
            bound = max(tp["naive"], key=lambda p: p["throughput"])["p99"]
            best = {k: at_p99(v, bound) for k, v in tp.items()}
            lines.append(f"throughput at p99 <= {bound:.1f} ms (naive's p99 at its best throughput), "
                         "req/s: " + ", ".join(f"{k} {_at_p99_text(v, tp[k], bound)}"
                                               for k, v in best.items()))  # fmt: skip
            for other in ("naive", "unsplit", "litserve", "litserve_unsplit"):
                if other in best:
                    lines.append(f"- mtrank / {other}: {_p99_ratio(best, tp, other, bound)}")
            if TWO_WORKERS in best:
                ratio = _p99_ratio(best, tp, "naive", bound, ours=TWO_WORKERS)
                lines.append(f"- mtrank on 2 workers (the 2-core setup) / naive: {ratio}")
        lines.append(f"candidate graph: {r['flops_per_candidate'] / 1e3:.0f} kFLOP per candidate, "
                     f"{r['gflops']:.1f} GFLOP/s at N={max(fl)} = {r['gflops'] / sgemm:.0%} of sgemm")  # fmt: skip
        if "rss_mib" in r:
            lines.append(f"RSS of one mtrank worker after the runs: {r['rss_mib']:.0f} MiB")
        if "two_core" in r:
            one, two = r["two_core"]["1"], r["two_core"]["2"]
            half = two["half"]
            gen = two["saturated"]["generator_cpu_seconds"] / two["saturated"]["seconds"]
            lines.append(f"2 workers / 1 worker at saturation: {_ratio(two['saturated']['throughput'], one['saturated']['throughput'])} "
                         f"({one['saturated']['throughput']:.0f} -> {two['saturated']['throughput']:.0f} req/s); "
                         f"at half of saturation ({half['throughput']:.0f} req/s) p50 {half['p50']:.2f} ms, p99 {half['p99']:.2f} ms "
                         f"(p99/p50 {half['p99'] / half['p50']:.2f}{_passes(two)}{_pooled(two)}); load generator used {gen:.0%} of a core; "
                         f"RSS of 2 workers + parent {two['rss_mib']:.0f} MiB")  # fmt: skip
            if len(two.get("saturated_rounds", [])) > 1:
                pairs = zip(two["saturated_rounds"], one["saturated_rounds"], strict=True)
                lines.append("2 workers / 1 worker in each round (alternating): "
                             + ", ".join(f"{b / a:.2f}x" for b, a in pairs))  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def _passes(workers: dict[str, Any], key: str = "half_rounds") -> str:
    """What follows the p99/p50 when the half-saturation load ran in several passes:
    ``, the median of N passes: a, b, c``."""
    tails = workers.get(key, [])
    if len(tails) < 2:
        return ""
    return f", the median of {len(tails)} passes: " + ", ".join(f"{t:.2f}" for t in tails)


def _pooled(workers: dict[str, Any]) -> str:
    """What follows when the half-saturation load also ran as one client pool takes connections
    (runs since 2026-12-04 22:39; before them that was the only way, over as many as needed)."""
    pool = workers.get("half_pool")
    if pool is None:
        return ""
    return (f"; over {SATURATING} connections in turn; as one client pool reuses them, the last answered "
            f"first: p50 {pool['p50']:.2f} ms, p99 {pool['p99']:.2f} ms (p99/p50 "
            f"{pool['p99'] / pool['p50']:.2f}{_passes(workers, 'half_pool_rounds')})")  # fmt: skip


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items(), strict=True):
        sizes = list(r["floor"])
        x = np.arange(len(sizes))
        series = {"floor (onnxruntime)": [r["floor"][n]["graphs"] for n in sizes]}
        inside = [r["latency"].get("mtrank", {}).get(n, {}).get("graphs_inside") for n in sizes]
        if all(value is not None for value in inside):
            series["graphs inside mtrank requests"] = inside
        for system, values in r["latency"].items():
            if system == COLUMNAR:  # its own p50s come from the paired passes: scale mtrank's
                mtrank = r["latency"].get("mtrank", {})
                series["mtrank columnar (x its ratio in turn)"] = [
                    mtrank.get(n, {}).get("p50", np.nan)
                    * values.get(n, {}).get("over_list", np.nan)
                    for n in sizes
                ]
                continue
            series[system] = [values.get(n, {}).get("p50", np.nan) for n in sizes]
        width = 0.8 / len(series)
        for k, (label, values) in enumerate(series.items()):
            ax.bar(x + k * width, values, width, label=label)
        ax.set_xticks(x + 0.4 - width / 2, [str(n) for n in sizes])
        ax.set_yscale("log")
        ax.set_xlabel("candidates per request")
        ax.set_ylabel("p50 latency, concurrency 1 (ms)")
        ax.set_title(f"{name} model")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "runs" / "bench-serving",
        help="data and models (reused)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks" / "serving" / "compare"
    )
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--throughput-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds (medians reported)")
    parser.add_argument("--repeat", type=int, default=200, help="floor: runs per median")
    parser.add_argument("--rows", type=int, default=100_000, help="simulator rows to train on")
    parser.add_argument("--epochs", type=int, help="override the presets' epochs")
    parser.add_argument("--no-two-core", dest="two_core", action="store_false")
    parser.add_argument(
        "--stall-seconds", type=float, default=3.0, help="host_stalls.py at the start and the end"
    )
    parser.add_argument("--quick", action="store_true", help="seconds 0.5, sizes 20 50, for CI")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat, args.concurrency, args.rounds = 0.5, 5, [1, 2], 1
        args.sizes, args.throughput_size, args.stall_seconds = [20, 50], 50, 0.5
    args.out.mkdir(parents=True, exist_ok=True)
    load_average = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    sgemm = sgemm_gflops()
    cpu = cpu_description()
    stalls = {"start": host_stalls.measure(args.stall_seconds)}
    results: dict[str, Any] = {}
    for name in args.models:
        preset, history = PRESETS[name]
        model = prepare(args.work, name, preset, history, args.rows, args.epochs)
        print(f"== {name}: measuring", flush=True)
        results[name] = measure_model(model, args)
    stalls["end"] = host_stalls.measure(args.stall_seconds)
    seen = "; ".join(f"at the {when}, {found.describe()}" for when, found in stalls.items())
    text = table(results, sgemm, load_average, cpu, seen)
    text += f"\nload average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}\n"
    print(text)
    (args.out / "table.md").write_text(text)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "cpu": cpu,
                "sgemm_gflops": sgemm,
                "host_stalls": {when: found.as_json() for when, found in stalls.items()},
                "results": results,
            },
            indent=1,
            default=str,
        )
    )
    plot(results, args.out / "latency.png")
    print(f"wrote {args.out / 'table.md'}, results.json, latency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
