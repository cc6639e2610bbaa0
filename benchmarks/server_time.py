"""Where a /rank request's server time goes, by time rather than by instructions.

    python benchmarks/server_time.py --work runs/bench-serving --model default \
        [--sizes 100 500 2000] [--seconds 10] [--rounds 5] [--out DIR]

``rank_cpu.py --instructions`` counts instructions, which a busy machine cannot blur; but an
instruction of onnxruntime's kernels does more work than one of the interpreter, so counts do not say
where the time goes. This script measures time, in two parts.

1. **The server's CPU time by component.** ``perf record -e cpu-clock`` samples the server process
   (``python -m service serve`` as ``serving_compare.py`` starts mtrank: one worker, scoring inline,
   one onnxruntime thread) while one keep-alive client sends list bodies of N candidates. Samples are
   grouped by the shared object they fall in (onnxruntime, the interpreter, libc, numpy, mtrank's C
   extension, the JSON libraries, uvloop and httptools, the kernel) and turned into microseconds per
   request with the server's CPU time per request (``/proc/PID/task/*/schedstat``, taken in a pass
   of the same length just before, without perf, so that perf's own cost stays out). libc's copies and
   allocations are counted under libc whoever calls them (onnxruntime's copies included), so the top
   libc and kernel symbols are printed too. Needs Linux ``perf`` and leave to sample one's own
   processes (``kernel.perf_event_paranoid`` 2 or less); without them this part is skipped, with the
   reason.

2. **The graphs inside a request against back to back.** In process (the app through its ASGI
   interface, no sockets), the graphs' time of full requests (the answer's ``explain.timings``) and
   of the same sessions run back to back on the same request's arrays, as ``serving_compare.py``'s
   floor runs them, alternated in rounds. The floor is the back-to-back figure; inside a request
   the rest of its work (body, transform, answer, metrics) has evicted the graphs' weights and
   buffers from the core's caches, and the ratio is what that costs.

3. **Each stage warm and inside a stream of requests.** In process, each stage of a request (the
   body parse, the transform, the user graph, the candidate graph, the objectives' checks with the
   fusion and the top k, the answer, the metrics) timed run back to back on the same input (warm:
   its code and data stay in the core's caches), and run once right after a full request of the
   same body (as it runs when requests follow each other: every other stage has run since it last
   did), alternated in rounds. The sums against the whole request say how much of a request is each
   stage's own work, how much the cache misses the other stages cause it, and how much the
   framework between the stages (the ASGI app, the rank lane, the ranker's orchestration).

``--out DIR`` also writes ``table.md`` and ``components.png`` (stacked microseconds per request).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from components import KERNEL, LABELS, LIBC, component
from rank_cpu import HISTORY, ROOT, Server, asgi_rank, in_process_app, prepared, with_explain
from serving_apps import LIMITS
from serving_models import bodies, prepared_arrays


def perf_unavailable() -> str | None:
    """Why ``perf record`` cannot sample here, or None."""
    if shutil.which("perf") is None:
        return "perf is not installed (Debian: apt-get install linux-perf)"
    paranoid = Path("/proc/sys/kernel/perf_event_paranoid")
    if paranoid.exists() and int(paranoid.read_text()) > 2:
        return f"kernel.perf_event_paranoid is {paranoid.read_text().strip()}; 2 or less is needed"
    return None


@dataclass
class Sampled:
    """One size's perf profile: share of samples per component, top symbols, CPU per request."""

    n: int
    cpu_us: float
    requests: int
    shares: dict[str, float]
    symbols: dict[str, list[tuple[str, float]]]


def _report(data: Path, sort: str) -> list[tuple[float, list[str]]]:
    """``perf report`` rows as (percent, fields split on two or more spaces)."""
    done = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio",
         "-g", "none", "--percent-limit", "0"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = []
    for line in done.stdout.splitlines():
        match = re.match(r"^\s*([\d.]+)%\s+(.*\S)\s*$", line)
        if match:
            rows.append((float(match.group(1)), re.split(r"\s{2,}", match.group(2))))
    return rows


def _drive(server: Server, body: bytes, seconds: float) -> tuple[float, int]:
    """Send ``body`` for ``seconds``; the server's CPU microseconds per request, and the count."""
    cpu = server.cpu_ns()
    requests = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, answer = server.client.rank(body)
        if status != 200:
            raise RuntimeError(f"/rank answered {status}: {answer[:300]!r}")
        requests += 1
    return (server.cpu_ns() - cpu) / requests / 1e3, requests


def sample(server: Server, body: bytes, n: int, seconds: float, folder: Path) -> Sampled:
    """The server's CPU per request unsampled, then its shares under perf, ``seconds`` each."""
    for _ in range(50):  # warm up this size
        server.client.rank(body)
    cpu_us, requests = _drive(server, body, seconds)  # perf's own cost stays out of this figure
    data = folder / f"perf-{n}.data"
    recorder = subprocess.Popen(
        ["perf", "record", "-e", "cpu-clock", "-F", "1999", "-o", str(data), "-p",
         str(server.process.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(0.5)  # perf attaches
    _drive(server, body, seconds)
    recorder.send_signal(signal.SIGINT)
    _, err = recorder.communicate(timeout=60)
    # perf ends as the signal told it to, after writing its data: -SIGINT is its normal exit here
    if recorder.returncode not in (0, -signal.SIGINT) or not data.exists():
        raise RuntimeError(f"perf record failed ({recorder.returncode}): {err.decode()[-500:]}")
    shares: dict[str, float] = {}
    for percent, fields in _report(data, "dso"):
        label = component(fields[0])
        shares[label] = shares.get(label, 0.0) + percent
    symbols: dict[str, list[tuple[str, float]]] = {}
    for percent, fields in _report(data, "dso,sym"):
        label = component(fields[0])
        if label in (LIBC, KERNEL) and len(fields) > 1:  # whose callers perf cannot name here
            symbols.setdefault(label, []).append((fields[1].split("] ", 1)[-1], percent))
    return Sampled(n, cpu_us, requests, shares, {k: v[:4] for k, v in symbols.items()})


def components(args: argparse.Namespace) -> list[Sampled] | str:
    reason = perf_unavailable()
    if reason is not None:
        return reason
    model = prepared(args.work, args.model)
    probe = bodies(model, 5)["list"]
    server = Server(ROOT, model.store, probe)
    try:
        with tempfile.TemporaryDirectory() as folder:
            results = []
            for n in args.sizes:
                body = bodies(model, n)["list"]
                results.append(sample(server, body, n, args.seconds, Path(folder)))
                print(f"sampled N={n}", file=sys.stderr, flush=True)
            return results
    finally:
        server.stop()


def graphs_in_requests(args: argparse.Namespace) -> dict[int, dict[str, float]]:
    """Per size: median graph time inside full requests and back to back, and their ratio."""
    app = in_process_app(args.work, args.model)
    model = prepared(args.work, args.model)

    async def run() -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        async with app.router.lifespan_context(app):
            loaded = app.state.mtrank.registry.routing.pick("bench")[0]
            sessions = loaded.sessions
            for n in args.sizes:
                raw = bodies(model, n)["list"]
                body = with_explain(raw)
                user, arrays, _ = prepared_arrays(loaded, raw)  # as the floor prepares them
                for _ in range(20):
                    await asgi_rank(app, body)
                inside: list[float] = []
                back_to_back: list[float] = []
                for _ in range(args.rounds):
                    times = []
                    for _ in range(args.requests):
                        timings = orjson.loads(await asgi_rank(app, body))["explain"]["timings"]
                        times.append(timings["user_graph"] + timings["candidate_graph"])
                    inside.append(statistics.median(times))
                    times = []
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        sessions.score(sessions.user_rep(user), arrays, n)
                        times.append(time.perf_counter() - started)
                    back_to_back.append(statistics.median(times))
                ratios = [a / b for a, b in zip(inside, back_to_back, strict=True)]
                out[n] = {
                    "inside_us": statistics.median(inside) * 1e6,
                    "back_to_back_us": statistics.median(back_to_back) * 1e6,
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                }
                print(f"graphs inside requests vs back to back, N={n}: done", file=sys.stderr)
        return out

    return asyncio.run(run())


def _stage_runs(state: Any, body: bytes, output: Any) -> dict[str, Callable[[], object]]:
    """Each stage of a request of ``body`` as a call on fixed inputs (``output``: its ranking)."""
    from service.contracts.fusion import derive_objectives, fuse
    from service.json_body import parse_rank_request
    from service.routers.rank import encode_response
    from service.scoring.assembly import stored_rows
    from service.scoring.ranker import choose_fusion
    from service.scoring.topk import top_k

    loaded = state.registry.routing.pick("bench")[0]
    sessions, assembler = loaded.sessions, loaded.assembler
    parsed = parse_rank_request(body, LIMITS)
    user, arrays, n = prepared_arrays(loaded, body)
    rep = sessions.user_rep(user)
    items = stored_rows(None, n)[1]
    outputs = sessions.score(rep, arrays, n)
    spec = choose_fusion(loaded, parsed.input)[1]

    def transform() -> object:
        assembler.user_arrays(parsed.input.user_features, None)
        return assembler.candidate_arrays(parsed.input, items)

    def scores() -> object:  # what score_request does between the candidate graph and the answer
        tasks = {task.id: outputs[task.output] for task in loaded.manifest.tasks}
        objectives = derive_objectives(tasks, loaded.manifest.derived)
        loaded.check_outputs(objectives)
        return top_k(fuse(spec, objectives), parsed.input.top_k)

    return {
        "body parse": lambda: parse_rank_request(body, LIMITS),
        "transform": transform,
        "user graph": lambda: sessions.user_rep(user),
        "candidate graph": lambda: sessions.score(rep, arrays, n),
        "objectives, fusion, top k": scores,
        "answer": lambda: encode_response(parsed, output),
        "metrics": lambda: state.metrics.record_rank(output),
    }


STAGES = (
    "body parse",
    "transform",
    "user graph",
    "candidate graph",
    "objectives, fusion, top k",
    "answer",
    "metrics",
)


async def _median_seconds(
    calls: int,
    stage: Callable[[], object],
    before: Callable[[], Awaitable[object]] | None = None,
) -> float:
    """Median seconds of ``stage()`` over ``calls`` calls, each right after ``await before()``."""
    times = []
    for _ in range(calls):
        if before is not None:
            await before()
        started = time.perf_counter()
        stage()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def stages_in_requests(args: argparse.Namespace) -> dict[int, dict[str, dict[str, float]]]:
    """Per size and stage: median microseconds run back to back (``warm``) and run once right
    after a full request of the same body (``in_stream``); ``request`` holds the whole request's."""
    from service.json_body import parse_rank_request

    app = in_process_app(args.work, args.model)
    model = prepared(args.work, args.model)

    async def run() -> dict[int, dict[str, dict[str, float]]]:
        out: dict[int, dict[str, dict[str, float]]] = {}
        async with app.router.lifespan_context(app):
            state = app.state.mtrank
            for n in args.sizes:
                body = bodies(model, n)["list"]
                parsed = parse_rank_request(body, LIMITS)
                output = await state.ranker.rank(parsed.input, cache_now=False)
                stages = _stage_runs(state, body, output)

                async def request(body: bytes = body) -> object:
                    return await asgi_rank(app, body)

                for _ in range(20):
                    await asgi_rank(app, body)
                rounds: dict[str, dict[str, list[float]]] = {
                    stage: {"warm": [], "in_stream": []} for stage in [*STAGES, "request"]
                }
                for _ in range(args.rounds):
                    for stage, run_stage in stages.items():
                        warm = await _median_seconds(args.requests, run_stage)
                        after = await _median_seconds(args.requests, run_stage, request)
                        rounds[stage]["warm"].append(warm)
                        rounds[stage]["in_stream"].append(after)
                    times = []
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        await asgi_rank(app, body)
                        times.append(time.perf_counter() - started)
                    rounds["request"]["in_stream"].append(statistics.median(times))
                out[n] = {
                    stage: {kind: statistics.median(v) * 1e6 for kind, v in kinds.items() if v}
                    for stage, kinds in rounds.items()
                }
                print(f"each stage warm and in a stream of requests, N={n}: done", file=sys.stderr)
        return out

    return asyncio.run(run())


def table(
    args: argparse.Namespace,
    sampled: list[Sampled] | str,
    graphs: dict[int, dict[str, float]],
    stages: dict[int, dict[str, dict[str, float]]],
) -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines = [f"model {args.model}, list bodies, one client; load average at the end {load}", ""]
    if isinstance(sampled, str):
        lines += [f"server CPU by component: skipped ({sampled})", ""]
    else:
        labels = LABELS
        lines += [
            f"server CPU per request by component (perf, cpu-clock samples, {args.seconds:g} s "
            "per size; us = share x the server's CPU per request in an unsampled pass)",
            "",
            "| component | " + " | ".join(f"N={s.n}" for s in sampled) + " |",
            "|---" * (len(sampled) + 1) + "|",
        ]
        for label in labels:
            cells = [
                f"{s.cpu_us * s.shares.get(label, 0.0) / 100:.0f} us "
                f"({s.shares.get(label, 0.0):.1f} %)"
                for s in sampled
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("| **server CPU per request** | "
                     + " | ".join(f"**{s.cpu_us:.0f} us** ({s.requests} requests)" for s in sampled)
                     + " |")  # fmt: skip
        lines.append("")
        for s in sampled:
            for label, top in s.symbols.items():
                named = ", ".join(f"{name} {percent:.1f} %" for name, percent in top)
                lines.append(f"- N={s.n}, top {label}: {named}")
        lines.append("")
    lines += [
        "the graphs inside full requests (explain.timings) against the same sessions back to back "
        f"(the floor's way), in process, {args.rounds} alternating rounds of {args.requests}",
        "",
        "| N | inside requests | back to back | inside / back to back (rounds) |",
        "|---|---|---|---|",
    ]
    for n, g in graphs.items():
        lines.append(
            f"| {n} | {g['inside_us']:.0f} us | {g['back_to_back_us']:.0f} us | "
            f"**{g['ratio']:.2f}x** ({g['ratio_min']:.2f}-{g['ratio_max']:.2f}) |"
        )
    lines += [
        "",
        "each stage run back to back (warm) and once right after a full request of the same body "
        f"(in a stream of requests), in process, medians of {args.rounds} rounds of {args.requests}",
        "",
        "| stage | " + " | ".join(f"N={n} warm | N={n} in a stream" for n in stages) + " |",
        "|---" * (2 * len(stages) + 1) + "|",
    ]
    for stage in STAGES:
        cells = [
            f"{s[stage]['warm']:.0f} us | {s[stage]['in_stream']:.0f} us "
            f"(**{s[stage]['in_stream'] / s[stage]['warm']:.2f}x**)"
            for s in stages.values()
        ]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    sums = [
        (sum(s[stage]["warm"] for stage in STAGES), sum(s[stage]["in_stream"] for stage in STAGES))
        for s in stages.values()
    ]
    lines.append(
        "| sum of the stages | "
        + " | ".join(f"{warm:.0f} us | {cold:.0f} us" for warm, cold in sums)
        + " |"
    )
    lines.append(
        "| whole request (in process, no sockets) | "
        + " | ".join(f"| {s['request']['in_stream']:.0f} us" for s in stages.values())
        + " |"
    )
    return "\n".join(lines) + "\n"


def plot(sampled: Sequence[Sampled], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = LABELS
    figure, axis = plt.subplots(figsize=(8, 4.5))
    bottoms = [0.0] * len(sampled)
    positions = range(len(sampled))
    for label in labels:
        heights = [s.cpu_us * s.shares.get(label, 0.0) / 100 / 1e3 for s in sampled]
        axis.bar(positions, heights, bottom=bottoms, label=label)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    axis.set_xticks(list(positions), [f"{s.n} candidates" for s in sampled])
    axis.set_ylabel("server CPU per /rank request (ms)")
    axis.set_title("Where the server's time goes (perf samples)")
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True,
                        help="serving_compare.py's work directory (models and data)")  # fmt: skip
    parser.add_argument("--model", choices=sorted(HISTORY), default="default")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--seconds", type=float, default=10.0, help="perf sampling per size")
    parser.add_argument("--rounds", type=int, default=5, help="graphs inside vs back to back")
    parser.add_argument("--requests", type=int, default=100, help="per round and side")
    parser.add_argument("--out", type=Path, help="also write table.md and components.png here")
    args = parser.parse_args(argv)
    sampled = components(args)
    graphs = graphs_in_requests(args)
    stages = stages_in_requests(args)
    text = table(args, sampled, graphs, stages)
    print(text, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "table.md").write_text(text)
        if not isinstance(sampled, str):
            plot(sampled, args.out / "components.png")
        print(
            f"wrote {args.out}/table.md" + ("" if isinstance(sampled, str) else ", components.png")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
