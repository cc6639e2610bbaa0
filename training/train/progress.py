"""Progress bars that show on a terminal and stay out of logs that are not one."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def on_terminal() -> bool:
    """True when stderr (where tqdm draws) is an interactive terminal."""
    return sys.stderr.isatty()


def wanted(show: bool | None) -> bool:
    """Whether to draw a bar: ``show`` as given, ``None``: only on a terminal."""
    return on_terminal() if show is None else show


def progress_bar(
    iterable: Iterable[T], *, show: bool | None, desc: str, leave: bool = False
) -> tqdm[T]:
    """A tqdm bar over ``iterable``; ``show=None``: only on a terminal (never in a log file)."""
    return tqdm(iterable, desc=desc, disable=not wanted(show), leave=leave, mininterval=0.5)
