import asyncio
import time

import numpy as np
import pytest
import redis

from service.store.ports import CacheLookup
from service.store.redis_user_cache import RedisUserRepCache, user_rep_cache_key
from tests.fixtures.redis_server import RedisServerProcess

pytestmark = pytest.mark.redis

FEATURES = {"age": 31, "history": [4, 9], "city": "Hangzhou"}


def test_key_ignores_feature_order_but_binds_version_user_and_values() -> None:
    key = user_rep_cache_key("m", "v1", "u1", FEATURES)
    assert key == user_rep_cache_key("m", "v1", "u1", dict(reversed(list(FEATURES.items()))))
    assert key != user_rep_cache_key("m", "v2", "u1", FEATURES)
    assert key != user_rep_cache_key("m", "v1", "u2", FEATURES)
    assert key != user_rep_cache_key("m", "v1", "u1", {**FEATURES, "history": [4, 9, 11]})
    assert key != user_rep_cache_key("other", "v1", "u1", FEATURES)


def run_cache(
    url: str, prefix: str, steps: list[tuple[str, str]], ttl: int = 60
) -> list[CacheLookup | bool]:
    vector = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)

    async def scenario() -> list[CacheLookup | bool]:
        cache = RedisUserRepCache.from_url(  # not a test of time: no tight default timeout
            url, prefix=prefix, ttl_seconds=ttl, timeout_ms=2000
        )
        out: list[CacheLookup | bool] = []
        for action, key in steps:
            out.append(await cache.put(key, vector) if action == "put" else await cache.get(key))
        await cache.close()
        return out

    return asyncio.run(scenario())


def test_cache_misses_then_hits_with_the_stored_vector(
    redis_server: str, redis_prefix: str
) -> None:
    key = user_rep_cache_key("m", "v1", "u1", FEATURES)
    miss, stored, hit = run_cache(
        redis_server, redis_prefix, [("get", key), ("put", key), ("get", key)]
    )
    assert isinstance(miss, CacheLookup)
    assert (miss.result, miss.value) == ("miss", None)
    assert stored is True
    assert isinstance(hit, CacheLookup)
    assert hit.result == "hit"
    assert hit.value is not None
    np.testing.assert_array_equal(hit.value, np.linspace(-1, 1, 8, dtype=np.float32))


def test_cache_entries_carry_the_configured_ttl(redis_server: str, redis_prefix: str) -> None:
    key = user_rep_cache_key("m", "v1", "u1", FEATURES)
    run_cache(redis_server, redis_prefix, [("put", key)], ttl=120)
    client = redis.Redis.from_url(redis_server)
    ttl = client.ttl(f"{redis_prefix}:{key}")
    client.close()
    assert 0 < ttl <= 120


def test_expired_entry_is_a_miss(redis_server: str, redis_prefix: str) -> None:
    key = user_rep_cache_key("m", "v1", "u1", FEATURES)
    run_cache(redis_server, redis_prefix, [("put", key)])
    client = redis.Redis.from_url(redis_server)
    client.pexpire(f"{redis_prefix}:{key}", 1)
    while client.exists(f"{redis_prefix}:{key}"):
        time.sleep(0.002)
    client.close()
    (lookup,) = run_cache(redis_server, redis_prefix, [("get", key)])
    assert isinstance(lookup, CacheLookup)
    assert lookup.result == "miss"


def test_corrupt_cache_value_is_an_error_not_a_crash(redis_server: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_server)
    client.set(f"{redis_prefix}:bad", b"\x01\x02\x03")
    client.close()
    (lookup,) = run_cache(redis_server, redis_prefix, [("get", "bad")])
    assert isinstance(lookup, CacheLookup)
    assert (lookup.result, lookup.value) == ("error", None)


def test_cache_on_stopped_redis_reports_error_and_put_returns_false(
    private_redis: RedisServerProcess,
) -> None:
    private_redis.stop()
    lookup, stored = run_cache(private_redis.url, "p", [("get", "k"), ("put", "k")])
    assert isinstance(lookup, CacheLookup)
    assert lookup.result == "error"
    assert stored is False
