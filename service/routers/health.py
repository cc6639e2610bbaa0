"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from service.dependencies import RegistryDep
from service.errors import NotReady
from service.schemas import HealthOut, ModelRef

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="The process is alive")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    responses={503: {"description": "no model loaded and warmed yet"}},
    summary="A model is loaded and warmed: traffic may be sent",
)
async def readyz(registry: RegistryDep) -> HealthOut:
    active = registry.active
    if active is None or not registry.ready:
        raise NotReady("no model is loaded and warmed yet; see the service log for the load error")
    return HealthOut(status="ok", model=ModelRef(name=active.name, version=active.version))
