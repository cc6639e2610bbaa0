"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from service.dependencies import StateDep
from service.errors import NotReady
from service.schemas import HealthOut, ModelRef

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="The process is alive")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    responses={
        503: {
            "description": "not ready, with the reason: nothing to serve yet, the first load "
            "has not finished or failed, the fleet's chosen version failed to load here, or "
            "shutting down"
        }
    },
    summary="This process serves the fleet's chosen model: traffic may be sent",
)
async def readyz(state: StateDep) -> HealthOut:
    active = state.registry.active
    why = state.fleet.readiness() if state.fleet is not None else None
    if active is None and why is None:
        why = "no model is loaded and warmed yet"
    if why is not None or active is None:
        raise NotReady(why or "no model is loaded")
    return HealthOut(status="ok", model=ModelRef(name=active.name, version=active.version))
