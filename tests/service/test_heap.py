"""Freezing the warm heap keeps it from the collector; a swap's refreeze stays cheap and correct."""

from __future__ import annotations

import gc
import weakref

from service.heap import freeze_heap, refreeze_heap


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
