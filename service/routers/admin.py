"""Admin API (bearer token): the fleet's model lifecycle.

Every change is validated on the receiving process first (checksums, manifest, fusion, sessions,
warm-up, sanity: a failure is a 409 naming the step, and nothing changes anywhere), then recorded
for the whole fleet (the store's ``current`` pointer and ``fleet.json``, and/or Redis: the answer's
``recorded_in``), applied here, and announced; every other worker and replica follows within a
poll interval (``service.fleet``). Canary, shadow and fusion routes: ``admin_candidates``.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Depends, Request

from service.dependencies import require_admin
from service.fleet import changes
from service.fleet.audit import audited, who
from service.fleet.schemas import ChangeOut, FleetChoiceOut, ModelsOut, ModelVersionOut
from service.routers import admin_candidates
from service.routers.fleet_deps import (
    CHANGE_RESPONSES,
    RESPONSES,
    FleetDep,
    change_out,
    process_out,
    published,
)
from service.schemas import LoadModelRequest

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/models", response_model=ModelsOut, responses=RESPONSES)
async def list_models(fleet: FleetDep) -> ModelsOut:
    read, processes = await fleet.fleet()
    model, store = fleet.registry.model, fleet.registry.store
    active = fleet.registry.active
    return ModelsOut(
        model=model,
        active=None
        if active is None
        else ModelVersionOut(
            name=active.name, version=active.version, loaded_at=active.loaded_at.isoformat()
        ),
        current=None if model is None else store.current(model),
        available=[] if model is None else store.versions(model),
        fleet=None if read is None else FleetChoiceOut.of(read),
        heartbeats=fleet.board.kind,  # type: ignore[arg-type]
        processes=[process_out(p) for p in processes],
    )


@router.post("/models/load", response_model=ChangeOut, responses=CHANGE_RESPONSES)
async def load_model(body: LoadModelRequest, request: Request, fleet: FleetDep) -> ChangeOut:
    async with audited(request, "load", version=body.version) as note:
        version = published(fleet, body.version)
        outcome = await fleet.change("load", who(request), partial(changes.load, version=version))
        note.update(
            version=version, revision=outcome.state.revision, recorded_in=outcome.recorded_in
        )
    return change_out(fleet, outcome)


@router.post(
    "/models/rollback",
    response_model=ChangeOut,
    responses={**CHANGE_RESPONSES, 409: {"description": "no previous version, or it failed"}},
)
async def rollback_model(request: Request, fleet: FleetDep) -> ChangeOut:
    async with audited(request, "rollback") as note:
        outcome = await fleet.change("rollback", who(request), changes.rollback)
        note.update(version=outcome.state.serving, revision=outcome.state.revision,
                    recorded_in=outcome.recorded_in)  # fmt: skip
    return change_out(fleet, outcome)


router.include_router(admin_candidates.router)
