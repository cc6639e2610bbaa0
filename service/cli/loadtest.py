r"""``python -m service loadtest``: open-loop load against a running service, or a rate sweep.

    python -m service loadtest --rate 50 --duration 30                    # fixed rate, demo tables
    python -m service loadtest --sweep 25,50,100,200,400 --duration 10    # find the saturation point
    python -m service loadtest --sweep 25,50,100 --baseline-url URL       # two services, interleaved
    MTRANK_ADMIN_TOKEN=... python -m service loadtest --rate 50 --duration 30 --swap-at 15

Requests are drawn from user and item tables (default: the committed demo tables in demo/) with a
log-normal spread of candidates and Zipf-skewed users and items; ids only (features from Redis) or
with features in the body. Latency is measured from each request's intended start. Writes JSON and PNG
plots to --out. Only loopback targets unless --allow-remote; duration and request count are bounded.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_DURATION_S = 600.0
MAX_REQUESTS = 1_000_000
ADMIN_TOKEN_ENV = "MTRANK_ADMIN_TOKEN"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "loadtest",
        help="open-loop load test (fixed rate or rate sweep) with latency plots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("target")
    target.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    target.add_argument(
        "--baseline-url", help="sweep: the same steps against this service too, alternating"
    )
    target.add_argument("--label", default="target", help="sweep: name of --url in the results")
    target.add_argument(
        "--baseline-label", default="baseline", help="sweep: name of --baseline-url"
    )
    target.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --url (off by default)"
    )
    load = parser.add_argument_group("load")
    rate = load.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    rate.add_argument("--sweep", help="comma-separated rates, run in order, e.g. 25,50,100,200")
    load.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help=f"seconds per run or step (<= {MAX_DURATION_S:g})",
    )
    load.add_argument(
        "--max-requests", type=int, default=100_000, help=f"per run or step (<= {MAX_REQUESTS:,})"
    )
    load.add_argument("--slo-p99-ms", type=float, help="sweep: a step above this p99 is saturated")
    load.add_argument("--beyond", type=int, default=1, help="sweep: steps to run past saturation")
    load.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    load.add_argument("--max-in-flight", type=int, default=512, help="cap on open requests")
    requests = parser.add_argument_group("requests")
    requests.add_argument("--users", type=Path, default=Path("demo/users.parquet"))
    requests.add_argument("--items", type=Path, default=Path("demo/items.parquet"))
    requests.add_argument("--user-key", default="user_id", help="id column of the user table")
    requests.add_argument("--item-key", default="item_id", help="id column of the item table")
    requests.add_argument(
        "--store", type=Path, default=Path("models_store"), help="model store: the feature spec"
    )
    requests.add_argument("--model", help="model name in --store (default: its only model)")
    requests.add_argument(
        "--mode", choices=("ids", "features"), default="ids",
        help="ids: ids only, features from Redis (default); features: every feature in the body",
    )  # fmt: skip
    requests.add_argument("--candidates", type=int, default=200, help="median candidates (200)")
    requests.add_argument("--spread", type=float, default=0.5, help="log-normal sigma (0: fixed)")
    requests.add_argument("--max-candidates", type=int, default=1000, help="upper clip (1000)")
    requests.add_argument("--zipf", type=float, default=1.0, help="popularity skew (0: uniform)")
    requests.add_argument("--columnar", action="store_true", help="candidates as columns")
    requests.add_argument("--pool", type=int, default=256, help="distinct bodies prepared (256)")
    requests.add_argument("--seed", type=int, default=0)
    swap = parser.add_argument_group("model swap (needs $MTRANK_ADMIN_TOKEN)")
    swap.add_argument("--swap-at", type=float, help="POST /admin/models/load after S seconds")
    swap.add_argument("--swap-version", help="version to load (default: the store's current)")
    parser.add_argument("--out", type=Path, default=Path("loadtest-results"), help="output folder")
    parser.add_argument("--title", help="plot title (default: the target and workload)")
    parser.set_defaults(func=run)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _problem(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot run, or None."""
    for url in filter(None, (args.url, args.baseline_url)):
        if not args.allow_remote and not is_loopback(url):
            return f"{url} is not a loopback address: pass --allow-remote to load it"
    if args.baseline_url and not args.sweep:
        return "--baseline-url applies to --sweep"
    if not 0 < args.duration <= MAX_DURATION_S:
        return f"--duration must lie in (0, {MAX_DURATION_S:g}] seconds"
    if not 0 < args.max_requests <= MAX_REQUESTS:
        return f"--max-requests must lie in [1, {MAX_REQUESTS:,}]"
    if args.rate <= 0 or args.pool < 1 or args.max_in_flight < 1:
        return "--rate, --pool and --max-in-flight must be positive"
    if args.swap_at is not None and not os.environ.get(ADMIN_TOKEN_ENV):
        return f"--swap-at needs the admin token in ${ADMIN_TOKEN_ENV}"
    if args.swap_at is not None and args.sweep:
        return "--swap-at applies to a fixed-rate run, not to --sweep"
    return None


def run(args: argparse.Namespace) -> int:
    from service.loadtest.runner import LoadTestError
    from service.loadtest.session import LoadTestSession
    from service.store.loader import FeatureLoadError

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request
    problem = _problem(args)
    rates: list[float] = []
    if problem is None and args.sweep:
        try:
            rates = [float(r) for r in args.sweep.split(",") if r.strip()]
        except ValueError:
            problem = f"--sweep {args.sweep!r}: give comma-separated numbers, e.g. 25,50,100"
        if not rates or any(r <= 0 for r in rates):
            problem = problem or "--sweep needs positive rates"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        session = LoadTestSession.from_args(args, os.environ.get(ADMIN_TOKEN_ENV))
        if rates:
            labels = (args.label, args.baseline_label)
            result = session.sweep(rates, args.baseline_url, labels)
        else:
            result = session.run()
    except (LoadTestError, FeatureLoadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(str(p) for p in result)}")
    return 0
