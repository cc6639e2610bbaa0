"""Admin API for a second version and for presets: canary, shadow, fusion (under ``/admin``).

Included by ``service.routers.admin`` into its router, so these routes get the same bearer-token
guard. At most the serving version plus one canary or shadow version are resident: starting a
second candidate is a 409 naming what is loaded.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from service.fleet import changes
from service.fleet.audit import audited, who
from service.fleet.schemas import CandidateRequest, ChangeOut, FusionRequest
from service.fleet.state import CandidateMode
from service.routers.fleet_deps import CHANGE_RESPONSES, FleetDep, change_out, published

router = APIRouter()


async def _start(
    mode: CandidateMode, body: CandidateRequest, request: Request, fleet: FleetDep
) -> ChangeOut:
    async with audited(request, mode, version=body.version, percent=body.percent) as note:
        version = published(fleet, body.version)
        compute = partial(changes.start_candidate, mode=mode, version=version, percent=body.percent)
        outcome = await fleet.change(mode, who(request), compute)
        note.update(revision=outcome.state.revision, recorded_in=outcome.recorded_in)
    return change_out(fleet, outcome)


async def _end(
    action: str, request: Request, fleet: FleetDep, compute: changes.Compute
) -> ChangeOut:
    async with audited(request, action) as note:
        outcome = await fleet.change(action, who(request), compute)
        note.update(serving=outcome.state.serving, revision=outcome.state.revision,
                    recorded_in=outcome.recorded_in)  # fmt: skip
    return change_out(fleet, outcome)


@router.post(
    "/models/canary",
    response_model=ChangeOut,
    responses=CHANGE_RESPONSES,
    summary="Route a stable share of users (hash of the user id) to a second version",
)
async def start_canary(body: CandidateRequest, request: Request, fleet: FleetDep) -> ChangeOut:
    return await _start("canary", body, request, fleet)


@router.post(
    "/models/canary/promote",
    response_model=ChangeOut,
    responses=CHANGE_RESPONSES,
    summary="Make the canary the serving version everywhere",
)
async def promote_canary(request: Request, fleet: FleetDep) -> ChangeOut:
    return await _end("canary_promote", request, fleet, changes.promote)


@router.post(
    "/models/canary/abort",
    response_model=ChangeOut,
    responses=CHANGE_RESPONSES,
    summary="Remove the canary everywhere",
)
async def abort_canary(request: Request, fleet: FleetDep) -> ChangeOut:
    return await _end("canary_abort", request, fleet, partial(changes.abort, mode="canary"))


@router.post(
    "/models/shadow",
    response_model=ChangeOut,
    responses=CHANGE_RESPONSES,
    summary="Score a share of requests again with a second version, after responding",
)
async def start_shadow(body: CandidateRequest, request: Request, fleet: FleetDep) -> ChangeOut:
    return await _start("shadow", body, request, fleet)


@router.post(
    "/models/shadow/abort",
    response_model=ChangeOut,
    responses=CHANGE_RESPONSES,
    summary="Remove the shadow everywhere",
)
async def abort_shadow(request: Request, fleet: FleetDep) -> ChangeOut:
    return await _end("shadow_abort", request, fleet, partial(changes.abort, mode="shadow"))


@router.post(
    "/models/fusion",
    response_model=ChangeOut,
    responses={
        **CHANGE_RESPONSES,
        409: {"description": "invalid presets, or version not resident"},
    },
    summary="Replace a resident version's fusion presets everywhere (null restores fusion.yaml)",
)
async def replace_fusion(body: FusionRequest, request: Request, fleet: FleetDep) -> ChangeOut:
    async with audited(request, "fusion", version=body.version) as note:
        serving = fleet.registry.active
        version = body.version or (serving.version if serving is not None else None)
        version = published(fleet, version)
        compute = partial(changes.replace_fusion, version=version, fusion=body.fusion)
        outcome = await fleet.change("fusion", who(request), compute)
        note.update(version=version, restored=body.fusion is None,
                    revision=outcome.state.revision, recorded_in=outcome.recorded_in)  # fmt: skip
    return change_out(fleet, outcome)
