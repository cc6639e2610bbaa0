"""``python -m service``: serve a published model, load online features."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.cli.dispatch import build_parser as _build_parser
from service.cli.dispatch import run

COMMAND_MODULES = (
    "service.cli.serve",  # serve
    "service.cli.features",  # features load
    "service.cli.loadtest",  # loadtest
    "service.cli.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    return _build_parser(
        "python -m service",
        "mtrank ranking service: serve a published model, load online features, load-test it.",
        COMMAND_MODULES,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
