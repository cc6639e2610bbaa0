"""The argparse plumbing both entry points share (``python -m service`` and ``python -m training``).

Each command module exposes ``register(subparsers)``, which adds its sub-commands and sets
``func(args) -> int`` as their handler.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence


def build_parser(prog: str, description: str, modules: Sequence[str]) -> argparse.ArgumentParser:
    """A parser with ``-v`` and one sub-command group per module in ``modules``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, set up logging and call the chosen command's handler; its exit code."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result
