"""Keeping long-lived objects out of the cyclic garbage collector's way.

A /rank request allocates thousands of short-lived objects (decoded feature rows, response items),
enough to trigger full collections, and a full collection walks every object alive: modules, the
loaded models and their sessions. Freezing the heap once the service is warm moves those objects to
a permanent generation the collector skips: measured 33-44 ms p99 for a 1,000-item feature fetch
with the default collector against 7-9 ms after ``gc.freeze()`` (docs/benchmarks/README.md).
Frozen objects are still freed by reference counting; only reference cycles among them wait for
the next ``refreeze_heap`` (after a model swap), which collects everything once and freezes again.
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
    """Unfreeze, collect what a swapped-out model left in cycles, and freeze the new heap."""
    gc.unfreeze()
    return freeze_heap()
