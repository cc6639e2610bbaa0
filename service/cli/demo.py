r"""``python -m service demo``: serve a model, rank real candidates for a real user, print the ranking.

    python -m service demo                                  # the committed demo model and tables
    python -m service demo --store runs/quickstart/store --model quickstart \
        --users runs/quickstart/data/users.parquet --items runs/quickstart/data/items.parquet

Starts the service (uvicorn, loopback, a free port) unless --url names a running one, draws a user and
candidates from the simulator's tables (features in the body, no Redis needed), sends one POST /rank and
prints every candidate with every objective's prediction and the fused score; then stops the service.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 60.0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="serve a model, rank candidates for a simulated user, print the table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", type=Path, default=Path("models_store"), help="model store")
    parser.add_argument("--model", default="demo", help="model name (default demo)")
    parser.add_argument("--users", type=Path, default=Path("demo/users.parquet"))
    parser.add_argument("--items", type=Path, default=Path("demo/items.parquet"))
    parser.add_argument("--candidates", type=int, default=12, help="candidates to rank (12)")
    parser.add_argument("--seed", type=int, default=7, help="which user and items (seeded)")
    parser.add_argument("--url", help="rank against this running service instead of starting one")
    parser.set_defaults(func=run)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def local_service(store: Path, model: str) -> Iterator[str]:
    """A uvicorn process serving ``model`` from ``store`` on a free loopback port; stopped on exit."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTRANK_")}
    env |= {"MTRANK_MODELS_DIR": str(store), "MTRANK_MODEL": model, "MTRANK_LOG_FORMAT": "text"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if _get(f"{url}/readyz") == 200:
                        break
                time.sleep(0.2)
            else:
                log.seek(0)
                output = log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"the service did not become ready:\n{output}")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def rank(url: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """POST /rank; the answer and the round-trip time in milliseconds."""
    request = urllib.request.Request(
        f"{url}/rank",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"/rank answered {exc.code}: {exc.read().decode()[:500]}") from exc
    return answer, (time.perf_counter() - started) * 1000


def run(args: argparse.Namespace) -> int:
    from service.cli.ranking_table import format_ranking
    from service.loadtest.session import model_spec
    from service.loadtest.workload import Tables, Workload, WorkloadConfig
    from service.store.loader import FeatureLoadError

    try:
        tables = Tables.read(args.users, args.items)
        spec = model_spec(args.store, args.model)
        config = WorkloadConfig(mode="features", candidates=args.candidates, seed=args.seed)
        body = Workload(tables, config, spec).body(args.candidates)
        body |= {"top_k": args.candidates, "explain": True}
        with contextlib.ExitStack() as stack:
            url = args.url
            if url is None:
                print(f"starting the service: {args.model} from {args.store} ...", flush=True)
                url = stack.enter_context(local_service(args.store, args.model))
            answer, millis = rank(url, body)
    except (FeatureLoadError, ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_ranking(body, answer, millis))
    return 0
