"""The app factory: wires settings, model registry, stores, metrics, routers and the error handler.

Run with ``uvicorn --factory service.main:create_app`` (settings from ``MTRANK_*`` environment variables)
or ``python -m service serve``. Tests pass their own collaborators (in-memory stores, a registry, a
metrics registry) instead of touching the environment.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.dependencies import AppState, ConcurrencyLimiter
from service.errors import install_error_handlers
from service.fleet.controller import FleetController
from service.fleet.drain import Drain, DrainMiddleware
from service.fleet.heartbeat import ProcessIdentity
from service.fleet.loader import Loader
from service.fleet.metrics import FleetMetrics
from service.fleet.supervisor import exit_with_supervisor
from service.front_door import FrontDoor
from service.heap import freeze_heap, serving_collector
from service.json_body import BodyLimits
from service.logging_config import configure_logging
from service.metrics import RequestMetricsMiddleware, ServiceMetrics
from service.model_store import ModelStore
from service.openapi import document_error_responses
from service.rank_lane import RankLane
from service.request_schema import install_rank_schema
from service.routers import admin, health, metrics, rank
from service.schemas import RankRequest
from service.scoring.ranker import Ranker
from service.scoring.registry import ModelRegistry
from service.scoring.shadow import ShadowScorer
from service.settings import Settings
from service.store.ports import FeatureStore, UserRepCache

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Online multi-task ranking: one user, a context and candidates in; candidates ordered by a fused "
    "multi-objective score out, with every objective's prediction. Errors are "
    '`{"error": {"code", "message", "field"}}` with `field` naming the bad input.'
)


def create_app(
    settings: Settings | None = None,
    *,
    feature_store: FeatureStore | None = None,
    user_cache: UserRepCache | None = None,
    registry: ModelRegistry | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_format, settings.log_level)
    loader = Loader(
        nice=settings.background_nice,
        pause_seconds=settings.loader_pause_ms / 1000,
        ort_threads=settings.ort_threads,
    )
    if registry is None:  # the model is named later when the store holds none yet
        registry = ModelRegistry(
            ModelStore(settings.models_dir), settings.model, ort_threads=settings.ort_threads
        )
    registry.pause = loader.pause
    collector = metrics_registry or CollectorRegistry()
    service_metrics = ServiceMetrics(collector)
    identity = ProcessIdentity.create()
    drain = Drain(settings.drain_seconds, settings.shutdown_grace_seconds)
    state = AppState(
        settings=settings,
        model_store=registry.store,
        registry=registry,
        metrics=service_metrics,
        limiter=ConcurrencyLimiter(settings.max_concurrency),
        limits=BodyLimits(
            max_candidates=settings.max_candidates,
            max_sequence_length=settings.max_sequence_length,
        ),
    )
    fleet = FleetController(
        settings,
        registry,
        service_metrics,
        FleetMetrics(collector, identity.id),
        identity,
        loader,
        admin_lock=state.admin_lock,
        draining=drain.is_draining,
    )
    state.fleet = fleet
    state.shadow = ShadowScorer(
        service_metrics,
        collector,
        queue_size=settings.shadow_queue_size,
        nice=settings.background_nice,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        exit_with_supervisor()  # a --workers worker: stop if the supervisor is killed
        async with AsyncExitStack() as stack:
            store, cache = feature_store, user_cache
            if settings.redis_url is not None:
                store, cache = await _open_redis(settings, stack, store, cache)
            executor = None
            if settings.inference_threads > 0:
                executor = ThreadPoolExecutor(settings.inference_threads, "mtrank-onnx")
                stack.callback(executor.shutdown, wait=False, cancel_futures=True)
            state.ranker = Ranker(
                state.registry,
                feature_store=store,
                user_cache=cache,
                executor=executor,
                inline=executor is None,
                unknown_features=settings.unknown_features,
            )
            if state.shadow is not None:
                state.shadow.start()
                stack.push_async_callback(state.shadow.stop)
            await fleet.start()  # the first load, then the sync loops; never raises for a model
            stack.push_async_callback(fleet.stop)
            if drain.install():
                stack.callback(drain.uninstall)
            freeze_heap()
            stack.enter_context(serving_collector())
            yield
            logger.info("shutting down: closing Redis and releasing model sessions")

    app = FastAPI(
        title="mtrank",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # metrics are Prometheus' (/metrics); FastAPI's OpenTelemetry hooks would only cost a
        # check of the global providers on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.mtrank = state
    on_rank_error = install_error_handlers(app, observe=service_metrics.record_error)
    observe = service_metrics.record_error
    app.add_middleware(FrontDoor, settings=settings, routes=app.router.routes, observe=observe)
    app.add_middleware(RequestMetricsMiddleware, metrics=service_metrics)  # sees all requests
    app.add_middleware(DrainMiddleware, drain=drain)  # after SIGTERM: Connection: close on all
    for router in (rank.router, health.router, metrics.router, admin.router):
        app.include_router(router)
    # POST /rank skips route matching and dependency solving (service/routers/rank.py)
    app.router.middleware_stack = rank.RankFastPath(
        app.router.middleware_stack, rank.rank_route(app.router.routes)
    )
    # an ordinary POST /rank is answered in front of the middleware chain (service/rank_lane.py)
    app.middleware_stack = RankLane(
        app.build_middleware_stack(), state=state, drain=drain, on_rank_error=on_rank_error
    )
    install_rank_schema(app, settings, lambda: registry.active, RankRequest)
    document_error_responses(app)
    return app


async def _open_redis(
    settings: Settings,
    stack: AsyncExitStack,
    store: FeatureStore | None,
    cache: UserRepCache | None,
) -> tuple[FeatureStore | None, UserRepCache | None]:
    """Open the Redis store and cache that were not injected; they are closed when the app stops."""
    from service.store.redis_feature_store import RedisFeatureStore
    from service.store.redis_user_cache import RedisUserRepCache

    url = settings.redis_url
    if url is None:
        return store, cache
    if store is None:
        opened_store = RedisFeatureStore.from_url(
            url,
            prefix=settings.redis_prefix,
            timeout_ms=settings.redis_timeout_ms,
            budget_ms=settings.feature_budget_ms,
        )
        stack.push_async_callback(opened_store.close)
        await opened_store.connect()
        store = opened_store
    if cache is None and settings.user_cache_ttl_seconds > 0:
        opened_cache = RedisUserRepCache.from_url(
            url,
            prefix=settings.redis_prefix,
            ttl_seconds=settings.user_cache_ttl_seconds,
            timeout_ms=settings.redis_timeout_ms,
        )
        stack.push_async_callback(opened_cache.close)
        await opened_cache.connect()
        cache = opened_cache
    logger.info("online features and user cache from Redis (prefix %r)", settings.redis_prefix)
    return store, cache
