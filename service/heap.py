"""Keeping long-lived objects out of the cyclic garbage collector's way.

A /rank request allocates thousands of short-lived objects (decoded feature rows, response items),
enough to trigger full collections, and a full collection walks every object alive: modules, the
loaded models and their sessions. Freezing the heap once the service is warm moves those objects to
a permanent generation the collector skips: measured 33-44 ms p99 for a 1,000-item feature fetch
with the default collector against 7-9 ms after ``gc.freeze()`` (docs/benchmarks/README.md).
Frozen objects are still freed by reference counting, so a swapped-out model version is released
at once: it holds no reference cycles (``tests/service/scoring/test_registry.py`` checks it with the
collector disabled). After a swap, ``refreeze_heap`` therefore collects only what is not frozen and
freezes it, the new version included; it no longer unfreezes and walks the whole heap, a full
collection that held the interpreter lock for tens of milliseconds (up to 250 ms seen on a busy
machine) and was the largest cost of a swap to live requests (``benchmarks/swap_latency.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


def freeze_heap() -> int:
    """Collect once, then freeze every object alive; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("froze %d long-lived objects out of the cyclic garbage collector", frozen)
    return frozen


def refreeze_heap() -> None:
    """After a swap: collect what is not frozen and freeze it (the new version included).

    Unlike ``freeze_heap`` it does not count the frozen objects: ``gc.get_freeze_count()`` walks
    the whole permanent generation (about 70,000 objects once a model is loaded) with the
    interpreter lock held, 10-20 ms measured on a busy machine, on the event loop after every swap.
    Reference cycles among frozen objects are not collected: only a full ``gc.unfreeze()`` +
    ``gc.collect()`` would, at the cost described in the module docstring."""
    gc.collect()
    gc.freeze()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (musl, macOS...)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Hand the heap pages freed by a released version back to the system (glibc only).

    A released version's onnxruntime arenas and buffers are freed into the C allocator, which
    keeps them; ``malloc_trim(0)`` returns the free pages, so RSS after a swap goes back near one
    version's footprint. The call runs without the interpreter lock (ctypes releases it) and is
    meant for the low-priority loader thread. Returns False where it is not available."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
