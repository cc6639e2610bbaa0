"""Server CPU time per /rank request, this tree against another in the same run, and where it goes.

    python benchmarks/rank_cpu.py --work runs/bench-serving --model default \
        [--baseline-src OTHER_TREE] [--sizes 100 500 2000] [--requests 400] [--rounds 5]
    python benchmarks/rank_cpu.py --work runs/bench-serving --model default --profile 500
    python benchmarks/rank_cpu.py --work runs/bench-serving --instructions [--baseline-src TREE]

Measures what a busy shared machine cannot blur much: the CPU time the server process spends per
request (``/proc/PID/task/*/schedstat``, nanoseconds on a CPU, summed over the server's threads),
not wall time. Each tree (this one, and ``--baseline-src`` if given, e.g. a ``git worktree`` of
``main``) is served by ``python -m service serve`` exactly as ``benchmarks/serving_compare.py``
starts mtrank (one worker, scoring inline, one onnxruntime thread), both at once; rounds alternate
between them, and the figures are medians over rounds. The request bodies are the comparison's
(``serving_models.bodies``: a simulator user with full history, N candidates, list form).

Per size it prints the server CPU per request, the part of it spent in the two graphs (the
response's ``explain.timings``: user + candidate graph, wall time inside the server, so on a busy
machine an upper bound) and what is left outside the model; with a baseline, the ratios.

``--instructions``: instructions per request in the server instead, counted by callgrind (valgrind;
the same counts whatever else the machine runs), each tree in turn; then, per size, where they ran
(onnxruntime, the interpreter, mtrank's C extension, libc, the JSON libraries, ...). On a host too
noisy for a few percent of wall time, this says which part a change made cheaper, and by how much.

``--profile N``: cProfile of the app in process (no sockets, no uvicorn) over requests of N
candidates, driven through its ASGI interface; the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from components import LABELS, callgrind_by_component
from serving_models import Prepared, bodies, free_port

ROOT = Path(__file__).resolve().parents[1]
HISTORY = {"default": 30, "large": 50}
ENV = {"MTRANK_INFERENCE_THREADS": "0", "MTRANK_ORT_THREADS": "1", "MTRANK_LOG_LEVEL": "WARNING"}


def prepared(work: Path, name: str) -> Prepared:
    folder = work / name
    return Prepared(
        name, folder / "data", folder / "run", folder / "store", folder / "unsplit.onnx",
        HISTORY[name],
    )  # fmt: skip


class Client:
    """One keep-alive connection; ``rank`` sends a body and returns the answer's body."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def rank(self, body: bytes) -> tuple[int, bytes]:
        head = (
            b"POST /rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        try:
            self.sock.sendall(head + body)
        except OSError:  # the server closed an idle keep-alive connection: open another
            self.sock = socket.create_connection(("127.0.0.1", self.port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(head + body)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buffer += chunk
        head_bytes, _, rest = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head_bytes.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        chunks = [rest]
        got = len(rest)
        while got < length:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return int(head_bytes.split(b" ", 2)[1]), b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


class Server:
    """``python -m service serve`` from ``src`` on a free port."""

    def __init__(self, src: Path, store: Path, probe: bytes, prefix: tuple[str, ...] = ()) -> None:
        self.src = src
        self.port = free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        command = [*prefix, sys.executable, "-m", "service", "serve", "--store", str(store),
                   "--model", "feed", "--port", str(self.port)]  # fmt: skip
        env = {**os.environ, **ENV, "PYTHONPATH": str(src)}
        self.process = subprocess.Popen(
            command, cwd=src, env=env, stdout=self.log, stderr=self.log, start_new_session=True
        )
        wait = 900 if prefix else 180  # under valgrind the start alone takes minutes
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server from {src} exited: {self.log.read().decode()[-2000:]}")
            try:
                client = Client(self.port)
                status, _ = client.rank(probe)
                client.close()
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"server from {src} did not answer within {wait} s")
        self.client = Client(self.port)

    def cpu_ns(self) -> int:
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.log.close()


def measure(server: Server, body: bytes, requests: int) -> dict[str, float]:
    """Server CPU us per request, graphs us (from explain), wall p50 ms, over ``requests``."""
    server.client.close()  # a fresh connection: the last one may have idled past the keep-alive
    server.client = Client(server.port)
    for _ in range(20):  # warm up this size
        server.client.rank(body)
    graphs, walls = [], []
    cpu = server.cpu_ns()
    for _ in range(requests):
        started = time.perf_counter()
        status, answer = server.client.rank(body)
        walls.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"/rank answered {status}: {answer[:300]!r}")
        timings = orjson.loads(answer)["explain"]["timings"]
        graphs.append(timings["user_graph"] + timings["candidate_graph"])
    cpu_us = (server.cpu_ns() - cpu) / requests / 1e3
    graphs_us = statistics.median(graphs) * 1e6
    return {
        "cpu_us": cpu_us,
        "graphs_us": graphs_us,
        "outside_us": cpu_us - graphs_us,
        "wall_p50_ms": statistics.median(walls) * 1e3,
    }


def with_explain(body: bytes) -> bytes:
    data = orjson.loads(body)
    data["explain"] = True
    return orjson.dumps(data)


def compare(args: argparse.Namespace) -> None:
    model = prepared(args.work, args.model)
    sizes = {n: with_explain(bodies(model, n)[args.form]) for n in args.sizes}
    probe = with_explain(bodies(model, 5)["list"])
    trees = {"this": ROOT}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src.resolve()
    servers = {name: Server(src, model.store, probe) for name, src in trees.items()}
    results: dict[str, dict[int, list[dict[str, float]]]] = {
        t: {n: [] for n in sizes} for t in trees
    }
    try:
        for round_ in range(args.rounds):
            for n, body in sizes.items():
                order = list(servers.items())
                if round_ % 2:
                    order.reverse()
                for name, server in order:
                    results[name][n].append(measure(server, body, args.requests))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"model {args.model}, {args.form} bodies, {args.requests} requests x {args.rounds} "
          f"rounds per size, medians over rounds; load average {load}")  # fmt: skip
    print("| N | tree | server CPU us/request | graphs us | outside model us | wall p50 ms |")
    print("|---|---|---|---|---|---|")
    med = {
        t: {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in by.items()}
        for t, by in results.items()
    }
    for n in sizes:
        for t in trees:
            m = med[t][n]
            print(f"| {n} | {t} | {m['cpu_us']:.0f} | {m['graphs_us']:.0f} | "
                  f"{m['outside_us']:.0f} | {m['wall_p50_ms']:.2f} |")  # fmt: skip
    if "baseline" in med:
        print()
        for n in sizes:
            new, old = med["this"][n], med["baseline"][n]
            print(f"N={n}: server CPU baseline/this {old['cpu_us'] / new['cpu_us']:.2f}x, "
                  f"outside the model {old['outside_us'] / new['outside_us']:.2f}x "
                  f"({old['outside_us']:.0f} -> {new['outside_us']:.0f} us)")  # fmt: skip


def instructions(args: argparse.Namespace) -> None:
    """Instructions per request in the server, counted by callgrind: repeatable on a busy machine."""
    model = prepared(args.work, args.model)
    sizes = {n: bodies(model, n)[args.form] for n in args.sizes}
    probe = bodies(model, 5)["list"]
    trees = {"this": ROOT}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src.resolve()
    counts: dict[str, dict[int, float]] = {}
    parts: dict[str, dict[int, dict[str, float]]] = {}  # tree -> N -> component -> per request
    with tempfile.TemporaryDirectory() as out:
        for name, src in trees.items():
            prefix = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/{name}.%p")
            print(f"starting {name} under callgrind (minutes)", file=sys.stderr, flush=True)
            server = Server(src, model.store, probe, prefix)
            counts[name], parts[name] = {}, {}
            try:
                for n, body in sizes.items():
                    for _ in range(5):  # warm up this size
                        server.client.rank(body)
                    control = ["callgrind_control", str(server.process.pid)]
                    subprocess.run([*control[:1], "-z", *control[1:]], check=True,
                                   capture_output=True)  # fmt: skip
                    for _ in range(args.instruction_requests):
                        server.client.rank(body)
                    before = set(Path(out).glob(f"{name}.*"))
                    subprocess.run([*control[:1], "-d", *control[1:]], check=True,
                                   capture_output=True)  # fmt: skip
                    dump = max(set(Path(out).glob(f"{name}.*")) - before, key=os.path.getmtime)
                    totals = next(
                        line for line in dump.read_text().splitlines()
                        if line.startswith(("totals:", "summary:"))
                    )  # fmt: skip
                    counts[name][n] = int(totals.split()[1]) / args.instruction_requests
                    parts[name][n] = {
                        label: count / args.instruction_requests
                        for label, count in callgrind_by_component(dump).items()
                    }
                    print(f"{name} N={n}: {counts[name][n] / 1e6:.2f} M instructions per request",
                          file=sys.stderr, flush=True)  # fmt: skip
            finally:
                server.stop()
    print(f"model {args.model}, {args.form} bodies, instructions per /rank in the server "
          f"(callgrind, {args.instruction_requests} requests per size after 5 warm-up)")  # fmt: skip
    print("| N | " + " | ".join(trees) + (" | baseline / this |" if len(trees) > 1 else " |"))
    print("|---" * (len(trees) + 1 + (len(trees) > 1)) + "|")
    for n in sizes:
        row = [f"{counts[t][n] / 1e6:.2f} M" for t in trees]
        if len(trees) > 1:
            row.append(f"{counts['baseline'][n] / counts['this'][n]:.2f}x")
        print(f"| {n} | " + " | ".join(row) + " |")
    for n in sizes:
        print(f"\nN={n}, M instructions per request by component (where they ran)")
        print_components({tree: parts[tree][n] for tree in trees})


def print_components(parts: dict[str, dict[str, float]]) -> None:
    """One row per component with instructions in any tree, in ``LABELS`` order; with two trees,
    baseline / this."""
    trees = list(parts)
    both = len(trees) > 1
    print("| component | " + " | ".join(trees) + (" | baseline / this |" if both else " |"))
    print("|---" * (len(trees) + 1 + both) + "|")
    for label in LABELS:
        counts = [parts[tree].get(label, 0.0) for tree in trees]
        if not any(counts):
            continue
        row = [f"{count / 1e6:.2f}" for count in counts]
        if both:
            this, baseline = counts[0], counts[1]
            row.append(f"{baseline / this:.2f}x" if this else "-")
        print(f"| {label} | " + " | ".join(row) + " |")


class _OneRequest:
    """The ASGI receive and send of one in-process request with a fixed body."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent = False
        self.statuses: list[int] = []
        self.answer = b""

    async def receive(self) -> dict[str, Any]:
        if self.sent:
            await asyncio.sleep(3600)
        self.sent = True
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])
        elif message["type"] == "http.response.body":
            self.answer += message.get("body", b"")


async def asgi_rank(app: Any, body: bytes) -> bytes:
    """One ``POST /rank`` through the app's ASGI interface, in process; returns the answer's body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/rank", "raw_path": b"/rank", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        "headers": [(b"host", b"x"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    one = _OneRequest(body)
    await app(scope, one.receive, one.send)
    if one.statuses != [200]:
        raise RuntimeError(f"/rank answered {one.statuses}: {one.answer[:300]!r}")
    return one.answer


async def _asgi_requests(app: Any, body: bytes, requests: int) -> None:
    for _ in range(requests):
        await asgi_rank(app, body)


def in_process_app(work: Path, model_name: str) -> Any:
    """The app as ``serving_compare.py`` serves it (one worker, scoring inline, one onnxruntime
    thread), built in process with its own metrics registry; run it inside its lifespan."""
    from prometheus_client import CollectorRegistry

    from service.main import create_app
    from service.settings import Settings

    settings = Settings(
        models_dir=prepared(work, model_name).store, model="feed", inference_threads=0,
        ort_threads=1, log_level="WARNING",
    )  # fmt: skip
    return create_app(settings, metrics_registry=CollectorRegistry())


def profile(args: argparse.Namespace) -> None:
    body = bodies(prepared(args.work, args.model), args.profile)[args.form]
    app = in_process_app(args.work, args.model)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await _asgi_requests(app, body, 50)
            cpu = time.process_time()
            await _asgi_requests(app, body, args.requests)
            plain = (time.process_time() - cpu) / args.requests * 1e6
            profiler = cProfile.Profile()
            profiler.enable()
            await _asgi_requests(app, body, args.requests)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
            print(f"app in process (no sockets, no uvicorn), N={args.profile}: "
                  f"{plain:.0f} us CPU per request without the profiler")  # fmt: skip
            print(out.getvalue())

    asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-serving",
                        help="serving_compare.py's work directory (models and data)")  # fmt: skip
    parser.add_argument("--model", choices=sorted(HISTORY), default="default")
    parser.add_argument("--form", choices=("list", "columnar"), default="list")
    parser.add_argument("--baseline-src", type=Path, help="another source tree to compare with")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--requests", type=int, default=400, help="per size and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, metavar="N", help="cProfile the app in process")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per request with callgrind instead (valgrind)")  # fmt: skip
    parser.add_argument("--instruction-requests", type=int, default=20)
    args = parser.parse_args(argv)
    if args.profile is not None:
        profile(args)
    elif args.instructions:
        instructions(args)
    else:
        compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
