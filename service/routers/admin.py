"""Admin API (bearer token): hot-swap the served model version, roll back, list versions.

A load validates, warms up and then switches atomically; if any step fails the answer is 409 naming the
step and the previous version keeps serving (Triton's "a failed reload leaves the loaded model unchanged").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from service.dependencies import AppState, MetricsDep, RegistryDep, StateDep, require_admin
from service.errors import ModelLoadError, NotFound
from service.heap import refreeze_heap
from service.metrics import ServiceMetrics
from service.schemas import LoadModelRequest, ModelsOut, ModelVersionOut
from service.scoring.registry import LoadedModel

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
RESPONSES: dict[int | str, dict[str, str]] = {
    401: {"description": "missing or wrong bearer token"},
    403: {"description": "admin API disabled (MTRANK_ADMIN_TOKEN unset)"},
}


def _version_out(model: LoadedModel) -> ModelVersionOut:
    return ModelVersionOut(
        name=model.name, version=model.version, loaded_at=model.loaded_at.isoformat()
    )


async def _swap(
    state: AppState, metrics: ServiceMetrics, change: Callable[[], LoadedModel]
) -> LoadedModel:
    """Run one registry change (load or rollback) off the event loop, one at a time; count it,
    point the model-info metric at the result and refreeze the heap around the new model."""
    async with state.admin_lock:
        try:
            loaded = await run_in_threadpool(change)
        except ModelLoadError:
            metrics.record_swap(ok=False)
            raise
    metrics.record_swap(ok=True)
    metrics.set_model(loaded.name, loaded.version)
    refreeze_heap()
    return loaded


@router.get("/models", response_model=ModelsOut, responses=RESPONSES)
async def list_models(state: StateDep, registry: RegistryDep) -> ModelsOut:
    active = registry.active
    return ModelsOut(
        active=None if active is None else _version_out(active),
        current=state.model_store.current(state.model_name),
        available=state.model_store.versions(state.model_name),
    )


@router.post(
    "/models/load",
    response_model=ModelVersionOut,
    responses={
        **RESPONSES,
        404: {"description": "no such version"},
        409: {"description": "load failed; the previous version keeps serving"},
    },
)
async def load_model(
    body: LoadModelRequest, state: StateDep, registry: RegistryDep, metrics: MetricsDep
) -> ModelVersionOut:
    if body.version is not None and body.version not in state.model_store.versions(
        state.model_name
    ):
        raise NotFound(
            f"{state.model_name} has no version {body.version!r}; GET /admin/models lists them",
            field="version",
        )
    loaded = await _swap(state, metrics, partial(registry.load, body.version))
    logger.info("now serving %s/%s", loaded.name, loaded.version)
    return _version_out(loaded)


@router.post(
    "/models/rollback",
    response_model=ModelVersionOut,
    responses={**RESPONSES, 409: {"description": "no previous version, or it failed to load"}},
)
async def rollback_model(
    state: StateDep, registry: RegistryDep, metrics: MetricsDep
) -> ModelVersionOut:
    loaded = await _swap(state, metrics, registry.rollback)
    logger.info("rolled back to %s/%s", loaded.name, loaded.version)
    return _version_out(loaded)
