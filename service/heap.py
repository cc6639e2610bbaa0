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

The youngest generation is also collected less often while serving (:func:`serving_collector`): at
the default threshold (700 allocations) a 500-candidate /rank ran 1.8 collections and a
2,000-candidate one 7.4, each walking the objects of the request still alive (its parsed body),
which are all freed by reference counting a moment later anyway. At 20,000 a collection runs every
~10 requests of 500 candidates: measured 1.01-1.09x less CPU per request at 500 and 1.10-1.17x at
2,000 (in process, same app, thresholds alternated).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


SERVING_THRESHOLD = 20_000
"""Allocations (minus deallocations) of container objects between two youngest-generation
collections while the app serves; Python's default is 700."""


@contextmanager
def serving_collector(threshold: int = SERVING_THRESHOLD) -> Iterator[None]:
    """The youngest generation's threshold at ``threshold`` while the app serves, restored after."""
    previous = gc.get_threshold()
    gc.set_threshold(threshold, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


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
