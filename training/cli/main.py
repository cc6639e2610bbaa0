"""``python -m training``: generate data, train, evaluate, export and publish."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.cli.dispatch import build_parser as _build_parser
from service.cli.dispatch import run

COMMAND_MODULES = (
    "training.cli.generate",  # generate simulator | synthetic | adult | movielens
    "training.cli.train",  # train, evaluate
    "training.cli.publish",  # publish, models list | show | set-current
    "training.cli.fusion",  # fusion search
)


def build_parser() -> argparse.ArgumentParser:
    return _build_parser(
        "python -m training",
        "mtrank training: generate data, train multi-task rankers, evaluate, export and publish.",
        COMMAND_MODULES,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
