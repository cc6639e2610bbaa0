"""The fleet controller of one process: applies the fleet's chosen state and runs admin changes.

Every process runs one (started by the app's lifespan). It keeps three loops:

* **reconcile**: read the recorded choice (``service.fleet.record``) every ``fleet_poll_seconds``,
  or at once when woken by a Redis message, and apply it: build (validate, warm) what is missing
  on the low-priority loader thread, then swap the one routing reference. A version that fails to
  load leaves what is served untouched; the process then reports the problem (log, heartbeat,
  ``mtrank_fleet_in_sync`` 0, ``/readyz`` 503 for a serving or canary version) and retries with
  backoff. Missed messages only delay convergence until the next poll.
* **subscribe**: Redis pub/sub on the fleet channel; every (re)subscription triggers a reconcile.
* **heartbeat**: post this process's status on the board ``GET /admin/models`` lists.

An admin change validates the version on the receiving process first, records the new state
(nothing is recorded if that fails), applies it here, announces it, and returns.

Stopping is bounded: the loops end at their next turn once ``stop`` is called, even when a Redis
call swallowed the cancellation (seen: a heartbeat cancelled mid-command came back as a Redis error,
was logged, and beat on, so the worker never finished shutting down), and ``stop`` waits at most
:data:`STOP_SECONDS` for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import NotReady
from service.fleet import changes
from service.fleet.apply import Applier, Problems
from service.fleet.heartbeat import (
    DirectoryBoard,
    HeartbeatBoard,
    LocalBoard,
    ProcessIdentity,
    ProcessStatus,
    RedisBoard,
    now_iso,
)
from service.fleet.loader import Loader
from service.fleet.metrics import FleetMetrics
from service.fleet.record import FleetRecord, ReadResult, RedisRecord, StoreRecord
from service.fleet.state import CandidateState, FleetState
from service.metrics import ServiceMetrics
from service.scoring.registry import ModelRegistry
from service.scoring.routing import SHARE_SCALE
from service.settings import Settings, resolve_model_name
from service.store.redis_guard import AsyncRedis, ThrottledLog, make_client

logger = logging.getLogger(__name__)

STOP_SECONDS = 5.0
"""How long ``FleetController.stop`` waits for its loops to end once cancelled."""


@dataclass(frozen=True)
class ChangeOutcome:
    action: str
    state: FleetState
    recorded_in: list[str]
    status: ProcessStatus


class FleetController:
    """See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: ServiceMetrics,
        fleet_metrics: FleetMetrics,
        identity: ProcessIdentity,
        loader: Loader,
        *,
        admin_lock: asyncio.Lock,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.fleet_metrics = fleet_metrics
        self.identity = identity
        self.loader = loader
        self.admin_lock = admin_lock
        self.draining = draining
        self.record: FleetRecord | None = None
        self.board: HeartbeatBoard = LocalBoard()
        self.applied: FleetState | None = None
        self.unresolved: str | None = None  # why no model is named yet
        self.problem: str | None = None  # why this process does not serve the fleet's choice
        self.blocking = False  # the problem makes the process not ready
        self._redis: AsyncRedis | None = None
        self.applier = Applier(
            registry,
            loader,
            metrics,
            fleet_metrics,
            process_id=identity.id,
            retry_seconds=settings.fleet_poll_seconds,
        )
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._log = ThrottledLog(logger, interval_seconds=30.0)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Name the model, apply the recorded choice once (bounded by one load), start the loops."""
        if self.settings.redis_url is not None:
            timeout_ms = self.settings.fleet_redis_timeout_seconds * 1000
            self._redis = make_client(self.settings.redis_url, timeout_ms=timeout_ms)
        await self.reconcile()
        self._tasks = [
            asyncio.create_task(self._reconcile_loop(), name="mtrank-fleet-reconcile"),
            asyncio.create_task(self._heartbeat_loop(), name="mtrank-fleet-heartbeat"),
        ]
        if self._redis is not None:
            self._tasks.append(asyncio.create_task(self._subscribe_loop(), name="mtrank-fleet-sub"))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, running = await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
            for task in running:
                logger.warning(
                    "fleet loop %s still running %g s after it was cancelled; shutting down "
                    "without it",
                    task.get_name(),
                    STOP_SECONDS,
                )
        with contextlib.suppress(Exception):
            await self.board.leave(self.identity.id)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        self.loader.shutdown()
        self.registry.close()
        self.applier.staged.clear()

    def wake(self) -> None:
        self._wake.set()

    # -- reading and applying the choice -----------------------------------------------------

    def _bind(self) -> FleetRecord | None:
        """The record of the model to serve, once the store names one (retried every poll)."""
        if self.record is not None:
            return self.record
        try:
            model = self.registry.model or resolve_model_name(self.settings)
        except ValueError as exc:
            if self.unresolved != str(exc):
                logger.error("nothing to serve yet: %s (retrying every %gs)", exc, self._poll)
            self.unresolved = str(exc)
            return None
        self.registry.bind(model)
        self.unresolved = None
        store = StoreRecord(self.registry.store, model, read_only=self.settings.store_read_only)
        prefix = self.settings.redis_prefix
        redis_record = None if self._redis is None else RedisRecord(self._redis, prefix, model)
        self.record = FleetRecord(store, redis_record)
        self.board = self._pick_board(store)
        return self.record

    def _pick_board(self, store: StoreRecord) -> HeartbeatBoard:
        ttl = self.settings.fleet_heartbeat_seconds * 3
        if self._redis is not None:
            return RedisBoard(self._redis, self.settings.redis_prefix, store.model, ttl_seconds=ttl)
        if store.writable():
            return DirectoryBoard(store.store.model_dir(store.model), ttl_seconds=ttl)
        return LocalBoard()

    @property
    def _poll(self) -> float:
        return self.settings.fleet_poll_seconds

    async def reconcile(self) -> None:
        """Read the recorded choice and apply it if it differs from what this process applied."""
        record = self._bind()
        if record is None:
            return
        async with self.admin_lock:  # read under the lock: an admin change may be recording
            read = await record.read()
            for problem in read.problems:
                self._log.warning(f"read:{problem[:40]}", f"fleet choice: {problem}")
            state = await self._not_backwards(read, record)
            if state.same_choice(self.applied) and not self.problem:
                self.applied = state
                return
            await self._apply(state)

    async def _not_backwards(self, read: ReadResult, record: FleetRecord) -> FleetState:
        """Never return to an older revision than the one applied (a record may be unreachable or
        lost, e.g. Redis restarted without persistence: then this process puts its state back)."""
        applied = self.applied
        if applied is None or read.state.revision >= applied.revision:
            return read.state
        if record.redis is not None and read.redis_ok and read.redis_state is None:
            with contextlib.suppress(Exception):
                if await record.redis.restore(applied):
                    logger.warning("Redis had lost the fleet choice: restored revision %d",
                                   applied.revision)  # fmt: skip
        return applied

    async def _apply(self, state: FleetState) -> None:
        self._settle(state, await self.applier.apply(state))

    def _settle(self, state: FleetState, problems: Problems) -> None:
        routing = self.registry.routing
        serving = routing.serving.version if routing.serving else None
        if not problems.items and state.serving is not None and serving != state.serving:
            problems.add(f"serving {serving} instead of the chosen {state.serving}", True)
        if not problems.items and (self.applied is None or state.revision > self.applied.revision):
            logger.info("applied fleet revision %d (%s)", state.revision, changes.describe(state))
        self.applied = state
        self.problem = problems.message
        self.blocking = problems.blocking
        self.fleet_metrics.set_sync(self.problem is None, state.revision)

    # -- admin changes -----------------------------------------------------------------------

    async def change(self, action: str, by: str, compute: changes.Compute) -> ChangeOutcome:
        """Validate here, record, apply here, announce: see the module docstring."""
        record = self._bind()
        if record is None:
            raise NotReady(f"no model to change: {self.unresolved}")
        async with self.admin_lock:
            read = await record.read()
            base = await self._not_backwards(read, record)
            updates = compute(base)
            revisions = [base.revision, read.store_revision]
            revisions += [s.revision for s in (read.redis_state, self.applied) if s is not None]
            new = base.changed(max(revisions) + 1, by, **updates)
            new = new.model_copy(update={"fusion": changes.pruned_fusion(new)})
            await self.applier.prepare(new)
            try:
                recorded = await record.write(new)
            except OSError as exc:
                self.applier.staged.clear()
                raise changes.FleetConflict(str(exc)) from None
            await self._apply(new)
            await record.announce(new)
        await self._beat()
        return ChangeOutcome(action, new, recorded, self.status())

    # -- status --------------------------------------------------------------------------------

    def readiness(self) -> str | None:
        """None when ready; otherwise why not (what /readyz answers)."""
        if self.draining():
            return "shutting down: finishing in-flight requests (SIGTERM received)"
        if self.unresolved is not None:
            return f"nothing to serve: {self.unresolved}"
        if self.registry.active is None:
            why = self.problem or "the first load has not finished"
            return f"no model version is loaded: {why}"
        if self.blocking and self.problem:
            return f"not serving the fleet's choice: {self.problem}"
        return None

    def status(self) -> ProcessStatus:
        routing = self.registry.routing
        candidate = None
        if routing.candidate is not None and routing.mode is not None:
            candidate = CandidateState(
                mode=routing.mode,
                version=routing.candidate.version,
                percent=routing.share * 100 / SHARE_SCALE,
            )
        ident = self.identity
        return ProcessStatus(
            id=ident.id,
            host=ident.host,
            pid=ident.pid,
            started_at=ident.started_at,
            last_heartbeat=now_iso(),
            model=self.registry.model,
            serving=routing.serving.version if routing.serving else None,
            candidate=candidate,
            fleet_revision=None if self.applied is None else self.applied.revision,
            ready=self.readiness() is None,
            in_sync=self.problem is None and self.unresolved is None,
            problem=self.problem or self.unresolved,
            draining=self.draining(),
        )

    async def fleet(self) -> tuple[ReadResult | None, list[ProcessStatus]]:
        """The recorded choice and every process on the board (this one always included)."""
        record = self._bind()
        read = None if record is None else await record.read()
        try:
            processes = await self.board.processes()
        except Exception as exc:  # a board that cannot be read still shows this process
            self._log.warning("board", f"could not list the fleet's heartbeats: {exc}")
            processes = []
        mine = self.status()
        return read, [mine, *(p for p in processes if p.id != mine.id)]

    # -- loops -----------------------------------------------------------------------------------

    async def _beat(self) -> None:
        try:
            await self.board.beat(self.status())
        except Exception as exc:
            self._log.warning("beat", f"heartbeat not posted on the {self.board.kind} board: {exc}")

    async def _reconcile_loop(self) -> None:
        while not self._stopping:  # a swallowed cancellation still ends the loop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                logger.exception("fleet reconcile failed; retrying in %g s", self._poll)

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:  # a swallowed cancellation still ends the loop
            await self._beat()
            await asyncio.sleep(self.settings.fleet_heartbeat_seconds)

    async def _subscribe_loop(self) -> None:
        backoff = 0.5
        while not self._stopping:
            record = self._bind()
            if record is None or record.redis is None or self._redis is None:
                await asyncio.sleep(self._poll)
                continue
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(record.redis.channel)
                backoff = 0.5
                self.wake()  # catch up on whatever was announced while unsubscribed
                while not self._stopping:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.wake()
            except Exception as exc:
                self._log.warning(
                    "subscribe",
                    f"fleet channel unavailable ({type(exc).__name__}: {exc}); "
                    f"watching the recorded choice every {self._poll:g} s meanwhile",
                )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
