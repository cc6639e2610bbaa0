"""Freezing the warm heap keeps it from the collector; refreezing after a swap frees old cycles."""

from __future__ import annotations

import gc
import weakref

from service.heap import freeze_heap, refreeze_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def test_frozen_cycles_survive_collections_until_the_next_refreeze() -> None:
    node = Node()
    alive = weakref.ref(node)
    try:
        assert freeze_heap() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: full collections no longer walk it
        refreeze_heap()
        assert alive() is None  # a swap's refreeze collects what the old heap left in cycles
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
