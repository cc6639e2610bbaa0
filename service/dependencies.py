"""What routes receive: the app's state, typed dependency aliases and the guards.

Collaborators live in one :class:`AppState` on ``app.state.mtrank`` (built by ``create_app``, completed
by the lifespan), never in globals. Guards are dependencies: :func:`require_admin` on the admin router,
:func:`rank_slot` (bounded concurrency, never waits) around scoring in /rank.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.admin_auth import admin_refusal
from service.errors import NotReady, Overloaded
from service.json_body import BodyLimits
from service.metrics import ServiceMetrics
from service.model_store import ModelStore
from service.settings import Settings

if TYPE_CHECKING:
    from service.fleet.controller import FleetController
    from service.scoring.ranker import Ranker
    from service.scoring.registry import ModelRegistry
    from service.scoring.shadow import ShadowScorer


class ConcurrencyLimiter:
    """Counts /rank requests in flight; past ``limit`` a request is refused at once, never queued.

    Only touched from the event loop (acquire and release happen in coroutines), so a plain counter is
    race-free; this is an ``asyncio.Semaphore`` checked without waiting.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {limit}")
        self.limit = limit
        self.in_flight = 0

    def try_acquire(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        if self.in_flight <= 0:
            raise RuntimeError("ConcurrencyLimiter released more often than acquired")
        self.in_flight -= 1


@dataclass
class AppState:
    settings: Settings
    model_store: ModelStore
    registry: ModelRegistry
    metrics: ServiceMetrics
    limiter: ConcurrencyLimiter
    limits: BodyLimits
    ranker: Ranker | None = None  # set by the lifespan once the stores are open
    fleet: FleetController | None = None  # the model lifecycle of this process (create_app)
    shadow: ShadowScorer | None = None  # shadow scoring queue (started by the lifespan)
    admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one model swap at a time


# The accessors are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread
# pool, a thread hop per dependency per request (9 % of a 100-candidate /rank's server time).
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.mtrank
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


async def get_metrics(state: StateDep) -> ServiceMetrics:
    return state.metrics


async def get_registry(state: StateDep) -> ModelRegistry:
    return state.registry


async def get_ranker(state: StateDep) -> Ranker:
    if state.ranker is None or not state.registry.ready:
        raise NotReady(
            "no model is loaded yet: wait for /readyz, or load one via /admin/models/load"
        )
    return state.ranker


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
RegistryDep = Annotated["ModelRegistry", Depends(get_registry)]
RankerDep = Annotated["Ranker", Depends(get_ranker)]

_bearer = HTTPBearer(auto_error=False, description="MTRANK_ADMIN_TOKEN")


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Admin endpoints need ``Authorization: Bearer $MTRANK_ADMIN_TOKEN``; refused if no token is set.

    The front door has already refused such requests before reading their body; this repeats the
    check (same function) and puts the bearer scheme in the OpenAPI document."""
    bearer = credentials.credentials if credentials is not None else None
    refusal = admin_refusal(settings.admin_token, bearer)
    if refusal is not None:
        raise refusal


@contextmanager
def rank_slot(state: AppState) -> Iterator[None]:
    """Hold one of ``max_concurrency`` slots around parsing and scoring a /rank request; 503 +
    Retry-After when none is free. The body is read before (by the front door) and the answer is
    sent after, so a slow client never holds a slot."""
    if not state.limiter.try_acquire():
        raise Overloaded(
            f"{state.limiter.limit} requests in flight (MTRANK_MAX_CONCURRENCY): retry shortly",
            retry_after_seconds=state.settings.retry_after_seconds,
        )
    try:
        yield
    finally:
        state.limiter.release()
