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

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_heap() -> int:
    """Collect once, then freeze every object alive; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("froze %d long-lived objects out of the cyclic garbage collector", frozen)
    return frozen


def refreeze_heap() -> int:
    """After a swap: collect what is not frozen and freeze it (the new version included).

    Reference cycles among frozen objects are not collected: only a full ``gc.unfreeze()`` +
    ``gc.collect()`` would, at the cost described in the module docstring."""
    return freeze_heap()
