"""`python -m service features load`: load user/item feature tables into Redis for serving."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import redis

from service.store.loader import Entity, FeatureLoadError, LoadReport, load_table
from service.store.redis_url import sync_client


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    features = subparsers.add_parser("features", help="manage the online feature store (Redis)")
    commands = features.add_subparsers(dest="features_command", required=True, metavar="COMMAND")
    load = commands.add_parser(
        "load",
        help="load user/item feature tables (Parquet or CSV) into Redis",
        description=(
            "Write one compact value per user and item (keys PREFIX:u:ID and PREFIX:i:ID) in "
            "pipelined batches. List-valued columns (behaviour sequences) are kept; in CSV write "
            "them as JSON arrays."
        ),
    )
    load.add_argument(
        "--redis",
        default=os.environ.get("MTRANK_REDIS_URL"),
        help="Redis URL, e.g. redis://localhost:6379/0, or redis+cluster://NODE:PORT for a "
        "Redis Cluster (default: $MTRANK_REDIS_URL)",
    )
    load.add_argument("--users", type=Path, help="user table (.parquet or .csv)")
    load.add_argument("--items", type=Path, help="item table (.parquet or .csv)")
    load.add_argument("--user-key", default="user_id", help="id column of the user table")
    load.add_argument("--item-key", default="item_id", help="id column of the item table")
    load.add_argument(
        "--prefix",
        default=os.environ.get("MTRANK_REDIS_PREFIX", "mtrank"),
        help="key prefix; must match the service's MTRANK_REDIS_PREFIX (default: mtrank)",
    )
    load.add_argument("--batch", type=int, default=1000, help="rows per pipelined batch")
    load.add_argument("--ttl", type=int, default=None, help="expire keys after S seconds")
    load.set_defaults(func=run_load)


class _Progress:
    """One updating line on stderr: 'users: 3000/20000 rows'."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, done: int, total: int | None) -> None:
        of = f"/{total}" if total is not None else ""
        print(f"\r{self.label}: {done}{of} rows", end="", file=sys.stderr, flush=True)


def run_load(args: argparse.Namespace) -> int:
    if not args.redis:
        print("error: no Redis URL: pass --redis URL or set MTRANK_REDIS_URL", file=sys.stderr)
        return 2
    tables: list[tuple[Entity, Path, str]] = []
    if args.users is not None:
        tables.append(("user", args.users, args.user_key))
    if args.items is not None:
        tables.append(("item", args.items, args.item_key))
    if not tables:
        print("error: nothing to load: pass --users FILE and/or --items FILE", file=sys.stderr)
        return 2
    try:
        client = sync_client(args.redis, socket_timeout=30, connect_timeout=5)
    except ValueError as exc:
        print(f"error: --redis {args.redis}: {exc}", file=sys.stderr)
        return 2
    try:
        client.ping()
        reports: list[LoadReport] = []
        for entity, path, key in tables:
            report = load_table(
                client,
                path,
                entity=entity,
                key_column=key,
                prefix=args.prefix,
                batch_size=args.batch,
                ttl_seconds=args.ttl,
                on_progress=_Progress(f"{entity}s"),
            )
            print(file=sys.stderr)
            reports.append(report)
    except FeatureLoadError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(
            f"\nerror: Redis at {args.redis} failed: {exc}; check the URL and that Redis is up",
            file=sys.stderr,
        )
        return 1
    finally:
        client.close()
    for report in reports:
        print(
            f"loaded {report.rows} {report.entity}s from {report.path} into {args.prefix}:"
            f"{report.entity[0]}:* in {report.seconds:.2f} s"
        )
    return 0
