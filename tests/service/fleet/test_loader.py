"""The loader thread runs model loads at a lower CPU priority than the threads serving requests."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from service.fleet.loader import Loader


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _measure(loader: Loader) -> tuple[int, float]:
    async def inside() -> tuple[int, float]:
        def work() -> tuple[int, float]:
            started = time.perf_counter()
            loader.pause()
            return _own_nice(), time.perf_counter() - started

        return await loader.run(work)

    try:
        return asyncio.run(inside())
    finally:
        loader.shutdown()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="needs os.setpriority (Linux)")
def test_the_loader_thread_is_reniced_and_serving_threads_are_not() -> None:
    base = _own_nice()
    nice, paused = _measure(Loader(nice=10, pause_seconds=0.01))
    assert nice == min(19, base + 10)
    assert _own_nice() == base  # the calling (serving) thread keeps its priority
    assert paused >= 0.01  # pause() yields on the loader thread


def test_sessions_with_their_own_threads_load_at_normal_priority() -> None:
    base = _own_nice()
    nice, _ = _measure(Loader(nice=10, pause_seconds=0.0, ort_threads=2))
    assert nice == base  # their intra-op threads would inherit a lower priority for good


def test_pause_outside_the_loader_thread_does_not_sleep() -> None:
    loader = Loader(nice=0, pause_seconds=5.0)
    try:
        started = time.perf_counter()
        loader.pause()
        assert time.perf_counter() - started < 1.0
    finally:
        loader.shutdown()
