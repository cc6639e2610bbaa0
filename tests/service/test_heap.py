"""Freezing the warm heap keeps it from the collector; a swap's refreeze stays cheap and correct."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform
import sys
import weakref
from pathlib import Path

import pytest

from service.heap import freeze_heap, refreeze_heap, release_free_memory, serving_collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def test_frozen_objects_are_skipped_by_collections_and_refreeze_adds_new_ones() -> None:
    old = Node()
    alive = weakref.ref(old)
    try:
        assert freeze_heap() > 0
        del old
        gc.collect()
        assert alive() is not None  # frozen: full collections no longer walk it
        young = Node()
        young_alive = weakref.ref(young)
        del young
        before = gc.get_freeze_count()
        refreeze_heap()
        assert young_alive() is None  # garbage made since the last freeze is collected first
        assert gc.get_freeze_count() >= before
    finally:
        gc.unfreeze()


def test_refreeze_does_not_walk_the_frozen_heap_again() -> None:
    old = Node()
    alive = weakref.ref(old)
    try:
        freeze_heap()
        del old
        refreeze_heap()
        assert alive() is not None  # still frozen: the swap did not unfreeze and collect it all
    finally:
        gc.unfreeze()
        gc.collect()


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's",
)
def test_released_memory_goes_back_to_the_system() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 32 * 1024, 1024  # 32 MiB in blocks below the mmap threshold: on the heap
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    touched = _rss_mib()
    for block in blocks[:-1]:  # the last block pins the heap's top: no automatic trim
        libc.free(block)
    freed = _rss_mib()
    assert release_free_memory()
    trimmed = _rss_mib()
    libc.free(blocks[-1])
    assert freed > touched - 8  # free() alone kept most pages
    assert trimmed < freed - 16  # malloc_trim handed them back


def test_serving_collector_raises_the_young_threshold_and_restores_it() -> None:
    before = gc.get_threshold()
    with serving_collector(threshold=12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        young = Node()
        young_alive = weakref.ref(young)
        del young
        gc.collect()
        assert young_alive() is None  # cycles are still collected, only less often
    assert gc.get_threshold() == before
