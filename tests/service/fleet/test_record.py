"""Where the fleet choice is recorded: the store's pointer and fleet.json, a Redis key; who wins."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis

from service.fleet.record import FleetRecord, RedisRecord, StoreRecord
from service.fleet.state import FleetState
from service.model_store import ModelStore
from tests.fixtures.published_model import PublishedModel

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


@pytest.fixture
def store(published_store: PublishedModel, tmp_path: Path) -> ModelStore:
    shutil.copytree(published_store.store_dir, tmp_path / "store")
    return ModelStore(tmp_path / "store")


def test_a_store_without_fleet_file_offers_its_pointer_at_revision_zero(
    store: ModelStore, published_store: PublishedModel
) -> None:
    state = StoreRecord(store, "simtest").read()
    assert state.serving == published_store.versions[0]
    assert state.revision == 0


def test_the_store_record_round_trips_and_moves_the_pointer(
    store: ModelStore, published_store: PublishedModel
) -> None:
    v1, v2 = published_store.versions
    record = StoreRecord(store, "simtest")
    written = FleetState(model="simtest", serving=v2, previous=v1, revision=3)
    record.write(written)
    assert store.current("simtest") == v2
    assert record.read() == written


def test_a_pointer_moved_by_hand_counts_as_a_newer_choice(
    store: ModelStore, published_store: PublishedModel
) -> None:
    v1, v2 = published_store.versions
    record = StoreRecord(store, "simtest")
    record.write(FleetState(model="simtest", serving=v1, revision=4))
    store.set_current("simtest", v2)  # python -m training models set-current
    state = record.read()
    assert (state.serving, state.previous, state.revision) == (v2, v1, 5)


def test_a_read_only_store_is_never_written(store: ModelStore) -> None:
    assert StoreRecord(store, "simtest").writable()
    assert not StoreRecord(store, "simtest", read_only=True).writable()


@pytest.mark.redis
def test_the_higher_revision_wins_and_the_store_wins_ties(
    store: ModelStore, published_store: PublishedModel, redis_server: str, redis_prefix: str
) -> None:
    v1, v2 = published_store.versions

    async def scenario() -> list[tuple[str, str | None]]:
        client = aioredis.Redis.from_url(redis_server)
        try:
            record = FleetRecord(
                StoreRecord(store, "simtest", read_only=True),
                RedisRecord(client, redis_prefix, "simtest"),
            )
            seen = []
            first = await record.read()  # nothing in Redis: the pointer
            seen.append((first.source, first.state.serving))
            recorded = await record.write(FleetState(model="simtest", serving=v2, revision=1))
            assert recorded == ["redis"]  # a read-only store: Redis only
            second = await record.read()
            seen.append((second.source, second.state.serving))
            both = FleetRecord(StoreRecord(store, "simtest"), record.redis)
            assert await both.write(FleetState(model="simtest", serving=v1, revision=2)) == [
                "store",
                "redis",
            ]
            tie = await both.read()
            seen.append((tie.source, tie.state.serving))
            return seen
        finally:
            await client.aclose()

    assert run(scenario()) == [("store", v1), ("redis", v2), ("store", v1)]


def test_an_unreachable_redis_falls_back_to_the_store_and_says_so(
    store: ModelStore, published_store: PublishedModel
) -> None:
    async def scenario() -> tuple[str, bool, list[str]]:
        client = aioredis.Redis.from_url(
            "redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2
        )
        try:
            read = await FleetRecord(
                StoreRecord(store, "simtest"), RedisRecord(client, "x", "simtest")
            ).read()
            return read.source, read.redis_ok, read.problems
        finally:
            await client.aclose()

    source, redis_ok, problems = run(scenario())
    assert (source, redis_ok) == ("store", False)
    assert "Redis unreachable" in problems[0]


def test_a_choice_that_can_be_recorded_nowhere_is_refused(store: ModelStore) -> None:
    record = FleetRecord(StoreRecord(store, "simtest", read_only=True), None)
    with pytest.raises(OSError, match="read-only and no Redis is configured"):
        run(record.write(FleetState(model="simtest", serving="x", revision=1)))
