import asyncio

import numpy as np

from service.store.memory import InMemoryFeatureStore, InMemoryUserRepCache


def test_memory_store_returns_rows_aligned_with_ids_and_counts_misses() -> None:
    store = InMemoryFeatureStore({"u1": {"age": 3}}, {"a": {"price": 1.0}, "b": {"price": 2.0}})
    fetch = asyncio.run(store.fetch("u1", ["b", "zz", "a"]))
    assert fetch.user == {"age": 3}
    assert fetch.items == [{"price": 2.0}, None, {"price": 1.0}]
    assert (fetch.status, fetch.hits, fetch.misses) == ("ok", 3, 1)


def test_memory_store_rows_cannot_be_altered_by_the_caller() -> None:
    store = InMemoryFeatureStore({}, {"a": {"tags": [1]}})
    first = asyncio.run(store.fetch(None, ["a"]))
    assert first.items[0] is not None
    first.items[0]["tags"].append(2)
    assert asyncio.run(store.fetch(None, ["a"])).items == [{"tags": [1]}]


def test_memory_cache_hits_until_ttl_then_misses() -> None:
    now = [0.0]
    cache = InMemoryUserRepCache(10, clock=lambda: now[0])

    async def scenario() -> list[str]:
        results: list[str] = [(await cache.get("k")).result]
        assert await cache.put("k", np.arange(4, dtype=np.float32).reshape(1, 4))
        hit = await cache.get("k")
        assert hit.value is not None
        np.testing.assert_array_equal(hit.value, np.arange(4, dtype=np.float32))
        results.append(hit.result)
        now[0] = 10.0
        results.append((await cache.get("k")).result)
        return results

    assert asyncio.run(scenario()) == ["miss", "hit", "miss"]
