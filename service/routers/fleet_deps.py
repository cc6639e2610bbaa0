"""What the admin routes share: the fleet controller dependency, version lookup, change answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from service.dependencies import StateDep
from service.errors import NotFound, NotReady
from service.fleet.controller import ChangeOutcome, FleetController
from service.fleet.heartbeat import ProcessStatus
from service.fleet.schemas import ChangeOut, ProcessOut

RESPONSES: dict[int | str, dict[str, str]] = {
    401: {"description": "missing or wrong bearer token"},
    403: {"description": "admin API disabled (MTRANK_ADMIN_TOKEN unset)"},
    503: {"description": "no model to serve yet (empty store, no MTRANK_MODEL)"},
}
CHANGE_RESPONSES: dict[int | str, dict[str, str]] = {
    **RESPONSES,
    404: {"description": "no such version"},
    409: {
        "description": "the version failed to load here (the step is named; nothing changed), "
        "a third version would be resident, or the choice could not be recorded"
    },
}


async def get_fleet(state: StateDep) -> FleetController:
    if state.fleet is None:  # pragma: no cover - create_app always sets it
        raise NotReady("the model lifecycle is not running")
    return state.fleet


FleetDep = Annotated[FleetController, Depends(get_fleet)]


def process_out(status: ProcessStatus) -> ProcessOut:
    return ProcessOut(**status.model_dump(), heartbeat_age_seconds=status.age_seconds())


def change_out(fleet: FleetController, outcome: ChangeOutcome) -> ChangeOut:
    serving = fleet.registry.active
    if serving is None:  # pragma: no cover - a change validates the version here first
        raise NotReady("this process serves nothing after the change; see GET /admin/models")
    return ChangeOut(
        action=outcome.action,
        name=serving.name,
        version=serving.version,
        loaded_at=serving.loaded_at.isoformat(),
        candidate=outcome.status.candidate,
        revision=outcome.state.revision,
        recorded_in=outcome.recorded_in,
        process=process_out(outcome.status),
    )


def published(fleet: FleetController, version: str | None) -> str:
    """``version`` if the store holds it (404 otherwise); None: the store's current, else newest."""
    model = fleet.registry.model
    if model is None:
        raise NotReady(f"no model to serve: {fleet.unresolved}")
    store = fleet.registry.store
    versions = store.versions(model)
    if version is None:
        version = store.current(model) or (versions[-1] if versions else None)
        if version is None:
            raise NotFound(f"{model} has no published version in {store.root}", field="version")
    if version not in versions:
        raise NotFound(
            f"{model} has no version {version!r}; GET /admin/models lists them", field="version"
        )
    return version
