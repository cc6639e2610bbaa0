import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis

from service.store.circuit_breaker import CircuitBreaker
from service.store.codec import encode_row
from service.store.ports import FeatureFetch
from service.store.redis_feature_store import RedisFeatureStore, item_key, user_key
from tests.fixtures.redis_server import RedisServerProcess

pytestmark = pytest.mark.redis


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sync_client(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server)
    yield client
    client.close()


def write_rows(client: redis.Redis, prefix: str) -> None:
    client.set(user_key(prefix, "u1"), encode_row({"user_id": "u1", "age": 31, "history": [4, 9]}))
    for index in range(3):
        client.set(
            item_key(prefix, f"i{index}"), encode_row({"item_id": f"i{index}", "price": index})
        )


# What a fetch may take in the tests that are not about time: each helper call opens a new
# connection inside the fetch, and a busy CI machine was seen to need more than the 30 ms default.
UNHURRIED = {"timeout_ms": 2000.0, "budget_ms": 2000.0}


def fetch(url: str, user_id: str | None, item_ids: list[str], **kwargs: object) -> FeatureFetch:
    """One fetch by a new store; its timeouts ``UNHURRIED`` unless given."""
    kwargs = {**UNHURRIED, **kwargs}

    async def scenario() -> FeatureFetch:
        store = RedisFeatureStore.from_url(url, **kwargs)  # type: ignore[arg-type]
        try:
            return await store.fetch(user_id, item_ids)
        finally:
            await store.close()

    return asyncio.run(scenario())


def test_fetch_returns_stored_user_and_items_aligned_with_ids(
    redis_server: str, redis_prefix: str, sync_client: redis.Redis
) -> None:
    write_rows(sync_client, redis_prefix)
    result = fetch(redis_server, "u1", ["i2", "missing", "i0"], prefix=redis_prefix)
    assert result.status == "ok"
    assert result.user == {"user_id": "u1", "age": 31, "history": [4, 9]}
    assert result.items == [{"item_id": "i2", "price": 2}, None, {"item_id": "i0", "price": 0}]
    assert (result.hits, result.misses) == (3, 1)


def test_unknown_user_and_no_user_are_not_errors(
    redis_server: str, redis_prefix: str, sync_client: redis.Redis
) -> None:
    write_rows(sync_client, redis_prefix)
    unknown = fetch(redis_server, "nobody", ["i1"], prefix=redis_prefix)
    assert (unknown.status, unknown.user, unknown.hits, unknown.misses) == ("ok", None, 1, 1)
    anonymous = fetch(redis_server, None, ["i1"], prefix=redis_prefix)
    assert (anonymous.status, anonymous.hits, anonymous.misses) == ("ok", 1, 0)
    empty = fetch(redis_server, None, [], prefix=redis_prefix)
    assert (empty.status, empty.items, empty.hits, empty.misses) == ("ok", [], 0, 0)


def test_fetch_of_user_and_many_items_is_one_command(private_redis: RedisServerProcess) -> None:
    admin = redis.Redis.from_url(private_redis.url)
    write_rows(admin, "p")
    item_ids = [f"i{index}" for index in range(500)]

    async def scenario() -> FeatureFetch:
        store = RedisFeatureStore.from_url(
            private_redis.url, prefix="p", timeout_ms=2000, budget_ms=2000
        )
        try:
            await store.fetch("u1", ["i0"])  # connect first: the handshake is not the request
            admin.config_resetstat()
            return await store.fetch("u1", item_ids)
        finally:
            await store.close()

    result = asyncio.run(scenario())
    stats = admin.info("commandstats")
    admin.close()
    assert result.hits == 4
    assert stats["cmdstat_mget"]["calls"] == 1
    assert {name for name in stats if name.startswith("cmdstat_")} == {
        "cmdstat_mget",
        "cmdstat_config|resetstat",
    }


def test_corrupt_value_reports_corrupt_and_serves_the_other_entities(
    redis_server: str, redis_prefix: str, sync_client: redis.Redis
) -> None:
    write_rows(sync_client, redis_prefix)
    sync_client.set(item_key(redis_prefix, "i1"), b"\x80garbage{")
    result = fetch(redis_server, "u1", ["i0", "i1", "i2"], prefix=redis_prefix)
    assert result.status == "corrupt"
    assert result.items == [{"item_id": "i0", "price": 0}, None, {"item_id": "i2", "price": 2}]
    assert result.user is not None
    assert (result.hits, result.misses) == (3, 1)


def test_fetch_while_redis_is_stopped_returns_error_status_without_raising(
    private_redis: RedisServerProcess,
) -> None:
    private_redis.stop()
    result = fetch(private_redis.url, "u1", ["a", "b"], timeout_ms=20, budget_ms=50)
    assert result.status in {"error", "timeout"}
    assert (result.user, result.items, result.hits, result.misses) == (None, [None, None], 0, 3)


def test_fetch_from_a_stalled_redis_times_out_within_budget(
    private_redis: RedisServerProcess,
) -> None:
    admin = redis.Redis.from_url(private_redis.url)
    try:
        admin.client_pause(400, all=True)
        result = fetch(private_redis.url, "u1", ["a"], timeout_ms=20, budget_ms=30)
    finally:
        admin.client_unpause()
        admin.close()
    assert result.status == "timeout"
    assert result.misses == 2


def test_breaker_opens_on_outage_and_closes_after_redis_restarts(
    private_redis: RedisServerProcess,
) -> None:
    admin = redis.Redis.from_url(private_redis.url)
    admin.set(item_key("p", "a"), encode_row({"price": 1}))
    admin.close()
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=clock)

    async def scenario() -> list[str]:
        store = RedisFeatureStore.from_url(private_redis.url, prefix="p", breaker=breaker)
        statuses: list[str] = [(await store.fetch(None, ["a"])).status]
        private_redis.stop()
        for _ in range(3):
            statuses.append((await store.fetch(None, ["a"])).status)
        private_redis.start()
        statuses.append((await store.fetch(None, ["a"])).status)  # still in cool-down
        clock.now += 10
        recovered = await store.fetch(None, ["a"])  # half-open probe reconnects
        statuses.append(recovered.status)
        assert recovered.items == [None]  # the restarted server has no data (no persistence)
        await store.close()
        return statuses

    statuses = asyncio.run(scenario())
    assert statuses[0] == "ok"
    assert set(statuses[1:3]) <= {"error", "timeout"}
    assert statuses[3:] == ["circuit_open", "circuit_open", "ok"]
    assert breaker.state == "closed"


def test_outage_is_logged_once_per_interval_with_what_to_do(
    private_redis: RedisServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    private_redis.stop()

    async def scenario() -> None:
        store = RedisFeatureStore.from_url(
            private_redis.url, breaker=CircuitBreaker(failure_threshold=100)
        )
        for _ in range(5):
            await store.fetch("u", ["a"])
        await store.close()

    with caplog.at_level(logging.WARNING, logger="service.store.redis_feature_store"):
        asyncio.run(scenario())
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1
    assert "Redis feature store" in lines[0]
    assert "MTRANK_REDIS_URL" in lines[0] or "MTRANK_FEATURE_BUDGET_MS" in lines[0]
