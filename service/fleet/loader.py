"""The loader: one dedicated thread that loads model versions at a lower CPU priority than serving.

Loading a version (checksums, onnxruntime session creation, warm-up) competes with /rank for the
same cores. The loader thread lowers its own scheduling priority with ``os.setpriority`` on its
native thread id (Linux: the nice value is per thread), so the kernel gives serving threads the CPU
first, and pauses briefly between load steps so that it never holds the interpreter lock for
long. A swap then takes a little longer and costs serving little (``benchmarks/swap_latency.py``).

Threads inherit the nice value of the thread that creates them and an unprivileged process cannot
raise it again, so with ``MTRANK_ORT_THREADS`` > 1 (sessions that start their own intra-op threads
at creation, threads that later serve requests) the loader keeps the normal priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def lower_thread_priority(by: int) -> int | None:
    """Add ``by`` to the calling thread's nice value (Linux: per thread); returns the new value."""
    if by <= 0 or not hasattr(os, "setpriority"):
        return None
    tid = threading.get_native_id()
    try:  # PRIO_PROCESS with a thread id renices that one thread
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError as exc:
        logger.warning(
            "could not lower the priority of %s: %s", threading.current_thread().name, exc
        )
        return None


class Loader:
    """Runs load work on its own thread; ``pause`` is the yield point between load steps."""

    def __init__(self, *, nice: int, pause_seconds: float, ort_threads: int = 1) -> None:
        if not 0 <= nice <= 19:
            raise ValueError(f"loader nice increment must be in [0, 19], got {nice}")
        self.nice = nice if ort_threads == 1 else 0
        self.pause_seconds = pause_seconds
        self.applied_nice: int | None = None
        self._thread_id: int | None = None
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="mtrank-loader", initializer=self._lower_priority
        )
        if nice and ort_threads != 1:
            logger.info(
                "model loads run at normal priority: MTRANK_ORT_THREADS=%d sessions would "
                "inherit the loader's lower priority",
                ort_threads,
            )

    def _lower_priority(self) -> None:
        self._thread_id = threading.get_ident()
        self.applied_nice = lower_thread_priority(self.nice)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the loader thread and wait for it without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` on the loader thread without waiting (ignored once shut down)."""
        with contextlib.suppress(RuntimeError):
            self._executor.submit(fn, *args)

    def pause(self) -> None:
        """Between load steps: give the interpreter lock and the CPU to serving threads."""
        if self.pause_seconds > 0 and threading.get_ident() == self._thread_id:
            time.sleep(self.pause_seconds)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
