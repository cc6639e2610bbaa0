"""Where the fleet's choice is recorded, and how every process reads it back.

Two records, each optional:

* the **model store**: ``<model>/current`` (the serving version, replaced atomically, as before)
  and ``<model>/fleet.json`` (the whole :class:`FleetState`), written when the store is writable;
* **Redis**: the key ``{prefix}:fleet:{model}:state`` (the same JSON; on a Redis Cluster the part
  before ``:state`` is a hash tag) and a message on the channel ``{prefix}:fleet:{model}`` that wakes
  every subscribed process.

The rule, the same in every process: read both, take the higher ``revision`` (the store on a tie).
A ``current`` pointer moved outside the service (``python -m training models set-current``, a
publish with ``--set-current``) differs from ``fleet.json`` and counts as one revision newer. A
read-only store (``:ro`` mounts, ``MTRANK_STORE_READ_ONLY``) is never written: the choice then lives
in Redis, and the store's pointer only seeds the fleet until the first admin change. A change that
can be recorded nowhere (read-only store, no Redis) is refused rather than applied to one process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from service.fleet.state import FleetState
from service.model_store import STAGING_PREFIX, ModelStore
from service.store.redis_guard import AsyncRedis

logger = logging.getLogger(__name__)

FLEET_FILE = "fleet.json"
POINTER_MOVED = "the store's current pointer"


class StoreRecord:
    """The choice in the model store: the ``current`` pointer plus ``fleet.json``."""

    def __init__(self, store: ModelStore, model: str, *, read_only: bool = False) -> None:
        self.store = store
        self.model = model
        self.read_only = read_only

    def writable(self) -> bool:
        """False for a store configured read-only or mounted so (``access(2)`` says EROFS/EACCES)."""
        return not self.read_only and os.access(self.store.model_dir(self.model), os.W_OK)

    def read(self) -> FleetState:
        """The stored choice; revision 0 with only the pointer when ``fleet.json`` is absent."""
        pointer = self.store.current(self.model)
        saved = self._read_file()
        if saved is None:
            return FleetState(model=self.model, serving=pointer)
        if pointer is None or pointer == saved.serving:
            return saved
        candidate = saved.candidate
        if candidate is not None and candidate.version == pointer:
            candidate = None
        return saved.model_copy(
            update={
                "serving": pointer,
                "previous": saved.serving,
                "candidate": candidate,
                "revision": saved.revision + 1,
                "changed_by": POINTER_MOVED,
            }
        )

    def write(self, state: FleetState) -> None:
        """Point ``current`` at the serving version (verified), then replace ``fleet.json``."""
        if state.serving is not None and state.serving != self.store.current(self.model):
            self.store.set_current(self.model, state.serving)
        folder = self.store.model_dir(self.model)
        tmp = folder / f"{STAGING_PREFIX}fleet-{uuid.uuid4().hex}"
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                handle.write(state.model_dump_json(indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / FLEET_FILE)
        finally:
            tmp.unlink(missing_ok=True)

    def _read_file(self) -> FleetState | None:
        path = self.store.model_dir(self.model) / FLEET_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return FleetState.model_validate_json(text)
        except ValidationError as exc:
            logger.error("%s is not a valid fleet state (%s); ignoring it", path, exc)
            return None


def fleet_key_base(prefix: str, model: str, cluster: bool) -> str:
    """``{prefix}:fleet:{model}``; on a Redis Cluster a hash tag keeps a model's fleet keys (state,
    heartbeats, their index) in one slot, so they can be read together."""
    base = f"{prefix}:fleet:{model}"
    return "{" + base + "}" if cluster else base


class RedisRecord:
    """The choice in Redis: a key holding the state, a channel announcing every change."""

    def __init__(self, client: AsyncRedis, prefix: str, model: str) -> None:
        self.client = client
        base = fleet_key_base(prefix, model, isinstance(client, aioredis.RedisCluster))
        self.key = f"{base}:state"
        self.channel = f"{prefix}:fleet:{model}"

    async def read(self) -> FleetState | None:
        """The recorded state, None when the key is absent; raises ``RedisError`` when unreachable."""
        raw = await self.client.get(self.key)
        if raw is None:
            return None
        try:
            return FleetState.model_validate_json(raw)
        except ValidationError as exc:
            logger.error("Redis key %s is not a valid fleet state (%s); ignoring it", self.key, exc)
            return None

    async def write(self, state: FleetState) -> None:
        await self.client.set(self.key, state.model_dump_json())

    async def restore(self, state: FleetState) -> bool:
        """Write ``state`` only if the key is gone (a Redis restart without persistence)."""
        return bool(await self.client.set(self.key, state.model_dump_json(), nx=True))

    async def announce(self, state: FleetState) -> int:
        """Publish the change; returns how many subscribers received it."""
        return int(await self.client.publish(self.channel, state.model_dump_json()))


@dataclass(frozen=True)
class ReadResult:
    """The chosen state and what was learned on the way."""

    state: FleetState
    source: str  # "store" or "redis"
    redis_ok: bool  # False when Redis is configured but did not answer
    store_revision: int
    redis_state: FleetState | None = None
    problems: list[str] = field(default_factory=list)


class FleetRecord:
    """Reads the choice from every record and writes it to every writable one."""

    def __init__(self, store: StoreRecord, redis_record: RedisRecord | None) -> None:
        self.store = store
        self.redis = redis_record

    async def read(self) -> ReadResult:
        problems: list[str] = []
        stored = await asyncio.to_thread(self.store.read)
        from_redis: FleetState | None = None
        redis_ok = True
        if self.redis is not None:
            try:
                from_redis = await self.redis.read()
            except (RedisError, OSError) as exc:
                redis_ok = False
                problems.append(f"Redis unreachable ({type(exc).__name__}: {exc})")
        if from_redis is not None and from_redis.revision > stored.revision:
            return ReadResult(from_redis, "redis", redis_ok, stored.revision, from_redis, problems)
        return ReadResult(stored, "store", redis_ok, stored.revision, from_redis, problems)

    async def write(self, state: FleetState) -> list[str]:
        """Record ``state``; returns where (``store``, ``redis``). Raises ``OSError``/``RedisError``
        only when nothing could record it."""
        recorded: list[str] = []
        errors: list[str] = []
        if self.store.writable():
            try:
                await asyncio.to_thread(self.store.write, state)
                recorded.append("store")
            except OSError as exc:
                errors.append(f"store: {exc}")
                logger.warning("could not write the fleet choice to the store: %s", exc)
        if self.redis is not None:
            try:
                await self.redis.write(state)
                recorded.append("redis")
            except (RedisError, OSError) as exc:
                errors.append(f"redis: {exc}")
                logger.warning("could not write the fleet choice to Redis: %s", exc)
        if not recorded:
            where = "; ".join(errors) or (
                "the store is read-only and no Redis is configured (MTRANK_REDIS_URL)"
            )
            raise OSError(f"the fleet choice could not be recorded anywhere: {where}")
        return recorded

    async def announce(self, state: FleetState) -> None:
        """Wake the other processes; a lost message only delays them until their next poll."""
        if self.redis is None:
            return
        try:
            await self.redis.announce(state)
        except (RedisError, OSError) as exc:
            logger.warning("could not announce revision %d on Redis: %s", state.revision, exc)
