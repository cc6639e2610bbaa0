"""Which process serves what: every process posts its status every few seconds on a shared board.

Boards, by what is available: Redis (``{prefix}:fleet:{model}:process:{id}`` keys that expire after
``ttl``, indexed by the sorted set ``{prefix}:fleet:{model}:processes``), else the model store when it is writable (``<model>/.fleet/<id>.json``, stale files are
skipped and pruned), else only this process. ``GET /admin/models`` lists the board.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, ValidationError

from service.fleet.record import fleet_key_base
from service.fleet.state import CandidateState
from service.model_store import STAGING_PREFIX
from service.store.redis_guard import AsyncRedis

BOARD_DIR = ".fleet"


@dataclass(frozen=True)
class ProcessIdentity:
    """Host, pid and a random suffix: unique even when pids repeat across containers."""

    id: str
    host: str
    pid: int
    started_at: str

    @classmethod
    def create(cls) -> ProcessIdentity:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}-{pid}-{secrets.token_hex(3)}", host, pid, now_iso())


class ProcessStatus(BaseModel):
    """One process as the fleet sees it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    host: str
    pid: int
    started_at: str
    last_heartbeat: str
    model: str | None
    serving: str | None
    candidate: CandidateState | None
    fleet_revision: int | None  # the revision of the fleet choice this process has applied
    ready: bool
    in_sync: bool  # serves exactly what the fleet chose
    problem: str | None  # why not ready or not in sync
    draining: bool = False

    def age_seconds(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return max(0.0, (now - datetime.fromisoformat(self.last_heartbeat)).total_seconds())


class HeartbeatBoard(Protocol):
    kind: str  # "redis", "store" or "local"

    async def beat(self, status: ProcessStatus) -> None: ...

    async def processes(self) -> list[ProcessStatus]: ...

    async def leave(self, process_id: str) -> None: ...


class LocalBoard:
    """Only this process (no Redis, read-only store)."""

    kind = "local"

    def __init__(self) -> None:
        self._last: ProcessStatus | None = None

    async def beat(self, status: ProcessStatus) -> None:
        self._last = status

    async def processes(self) -> list[ProcessStatus]:
        return [] if self._last is None else [self._last]

    async def leave(self, process_id: str) -> None:
        if self._last is not None and self._last.id == process_id:
            self._last = None


class RedisBoard:
    """Heartbeats as expiring Redis keys plus a sorted-set index of them (score: last beat), so
    listing needs no SCAN; a process that stops beating drops out after ``ttl``."""

    kind = "redis"

    def __init__(self, client: AsyncRedis, prefix: str, model: str, *, ttl_seconds: float) -> None:
        self.client = client
        base = fleet_key_base(prefix, model, isinstance(client, aioredis.RedisCluster))
        self.prefix = f"{base}:process:"
        self.index = f"{base}:processes"
        self.ttl = max(1.0, ttl_seconds)

    async def beat(self, status: ProcessStatus) -> None:
        now = time.time()
        await self.client.set(
            self.prefix + status.id, status.model_dump_json(), px=int(self.ttl * 1000)
        )
        await self.client.zadd(self.index, {status.id: now})
        await self.client.zremrangebyscore(self.index, "-inf", now - 10 * self.ttl)

    async def processes(self) -> list[ProcessStatus]:
        ids = await self.client.zrangebyscore(self.index, time.time() - self.ttl, "+inf")
        if not ids:
            return []
        keys = [self.prefix + (i.decode() if isinstance(i, bytes) else str(i)) for i in ids]
        values = await self.client.mget(keys)
        return _parse(v for v in values if v is not None)

    async def leave(self, process_id: str) -> None:
        await self.client.zrem(self.index, process_id)
        await self.client.delete(self.prefix + process_id)


class DirectoryBoard:
    """Heartbeats as small JSON files in the (writable) model store, for fleets without Redis."""

    kind = "store"

    def __init__(self, model_dir: Path, *, ttl_seconds: float) -> None:
        self.folder = model_dir / BOARD_DIR
        self.ttl = ttl_seconds

    async def beat(self, status: ProcessStatus) -> None:
        await asyncio.to_thread(self._write, status)

    async def processes(self) -> list[ProcessStatus]:
        return await asyncio.to_thread(self._read_all)

    async def leave(self, process_id: str) -> None:
        await asyncio.to_thread((self.folder / f"{process_id}.json").unlink, missing_ok=True)

    def _write(self, status: ProcessStatus) -> None:
        self.folder.mkdir(exist_ok=True)
        tmp = self.folder / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        tmp.write_text(status.model_dump_json(), encoding="utf-8")
        os.replace(tmp, self.folder / f"{status.id}.json")

    def _read_all(self) -> list[ProcessStatus]:
        if not self.folder.is_dir():
            return []
        texts: list[str] = []
        now = time.time()
        for path in self.folder.glob("*.json"):
            try:
                age = now - path.stat().st_mtime
                if age > 10 * self.ttl:  # long gone: prune
                    path.unlink(missing_ok=True)
                elif age <= self.ttl:
                    texts.append(path.read_text(encoding="utf-8"))
            except OSError:
                continue  # removed while listing
        return _parse(texts)


def _parse(values: Iterable[str | bytes]) -> list[ProcessStatus]:
    out: list[ProcessStatus] = []
    for value in values:
        try:
            out.append(ProcessStatus.model_validate_json(value))
        except ValidationError:
            continue  # another version's format: skip
    return sorted(out, key=lambda s: (s.host, s.pid, s.id))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
