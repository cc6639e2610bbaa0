"""Applying a fleet state in one process: build what is missing, then swap the routing reference.

The :class:`Applier` owns the versions this process builds: it reuses what is resident (a promoted
canary becomes the serving version without a reload), what an admin change staged (validated on
this process before the change was recorded), and otherwise builds on the loader thread. Residency
stays at most serving + one: an unwanted candidate is released before anything new is built. A
failed build leaves the routing as it was, is retried with exponential backoff (a poll interval,
doubling, at most a minute) and is reported as a problem, blocking readiness unless it only
concerns a shadow. A second after a change, the loader thread hands the heap pages the replaced
version freed back to the system (``heap.release_free_memory``), so RSS returns near one version's
footprint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from service.contracts.fusion import FusionConfig
from service.errors import ModelLoadError
from service.fleet.loader import Loader
from service.fleet.metrics import FleetMetrics
from service.fleet.state import CandidateState, FleetState
from service.heap import refreeze_heap, release_free_memory
from service.metrics import ServiceMetrics
from service.scoring.registry import LoadedModel, LoadStepError, ModelRegistry
from service.scoring.routing import SHARE_SCALE, Routing, share_of

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
RELEASE_DELAY_SECONDS = 1.0  # requests still scoring with a replaced version finish well before


@dataclass
class Problems:
    """What kept this process from serving a state: (message, blocks readiness) pairs."""

    items: list[tuple[str, bool]] = field(default_factory=list)

    def add(self, message: str, blocking: bool) -> None:
        self.items.append((message, blocking))

    @property
    def message(self) -> str | None:
        return "; ".join(dict.fromkeys(m for m, _ in self.items)) or None

    @property
    def blocking(self) -> bool:
        return any(b for _, b in self.items)


@dataclass
class _Failure:
    attempts: int
    retry_at: float
    message: str


class Applier:
    """See the module docstring."""

    def __init__(
        self,
        registry: ModelRegistry,
        loader: Loader,
        metrics: ServiceMetrics,
        fleet_metrics: FleetMetrics,
        *,
        process_id: str,
        retry_seconds: float,
    ) -> None:
        self.registry = registry
        self.loader = loader
        self.metrics = metrics
        self.fleet_metrics = fleet_metrics
        self.process_id = process_id
        self.retry_seconds = retry_seconds
        self.staged: dict[str, LoadedModel] = {}
        self._published: dict[str, FusionConfig] = {}  # version -> its fusion.yaml
        self._failures: dict[str, _Failure] = {}

    async def prepare(self, state: FleetState) -> None:
        """Build and validate here whatever ``state`` needs that this process lacks (an admin
        change, before recording it); raises ``ModelLoadError`` and stages nothing on failure."""
        self.staged.clear()
        routing = self.registry.routing
        resident = {m.version: m for m in (routing.serving, routing.candidate) if m is not None}
        needed = [state.serving] + ([state.candidate.version] if state.candidate else [])
        try:
            for version in needed:
                if version is None:
                    continue
                model = resident.get(version) or self.staged.get(version)
                if model is None:
                    model = await self._build(version)
                    self.staged[version] = model
                fusion = state.fusion_for(version)
                if fusion is not None and fusion != model.fusion:
                    self.staged[version] = await self.loader.run(
                        self.registry.with_fusion, model, fusion
                    )
        except ModelLoadError:
            self.staged.clear()
            raise

    async def apply(self, state: FleetState) -> Problems:
        """Make this process serve ``state`` as far as it can (the caller holds the admin lock)."""
        problems = Problems()
        routing = self.registry.routing
        swap = routing.serving is not None  # the first load is not a swap
        changed = False
        wanted = state.candidate
        kept = routing.candidate
        unwanted = wanted is None or kept is None or wanted.version != kept.version
        if kept is not None and kept.version != state.serving and unwanted:
            self._install(Routing(routing.serving))  # release it before building anything
            changed, kept = True, None
        if routing.serving is None or (
            state.serving is not None and routing.serving.version != state.serving
        ):
            model = await self._obtain(state.serving, problems, blocking=True)
            if model is not None:
                keep = kept if wanted is not None and kept is not None else None
                if keep is not None and keep.version == model.version:
                    keep = None  # a promoted canary
                self._install(_routing(model, keep, wanted))
                changed = True
        changed |= await self._apply_candidate(wanted, problems)
        changed |= await self._apply_fusion(state, problems)
        self.staged.clear()
        if changed:
            if swap:
                self.metrics.record_swap(ok=True)
            refreeze_heap()
            asyncio.get_running_loop().call_later(
                RELEASE_DELAY_SECONDS, self.loader.submit, release_free_memory
            )
        return problems

    async def _apply_candidate(self, wanted: CandidateState | None, problems: Problems) -> bool:
        routing = self.registry.routing
        if wanted is None or routing.serving is None:
            return False
        current = routing.candidate
        if current is None or current.version != wanted.version:
            blocking = wanted.mode == "canary"
            model = await self._obtain(wanted.version, problems, blocking=blocking)
            if model is None:
                return False
            self._install(_routing(routing.serving, model, wanted))
            return True
        if routing.mode != wanted.mode or routing.share != share_of(wanted.percent):
            self._install(_routing(routing.serving, current, wanted))
            return True
        return False

    async def _apply_fusion(self, state: FleetState, problems: Problems) -> bool:
        changed = False
        routing = self.registry.routing
        for model in (routing.serving, routing.candidate):
            if model is None:
                continue
            wanted = state.fusion_for(model.version) or self._published.get(model.version)
            if wanted is None or wanted == model.fusion:
                continue
            try:
                replaced = self.staged.get(model.version)
                if replaced is None or replaced.fusion != wanted:
                    replaced = await self.loader.run(self.registry.with_fusion, model, wanted)
            except ModelLoadError as exc:
                problems.add(exc.message, routing.mode != "shadow" or model is routing.serving)
                continue
            current = self.registry.routing
            self._install(
                Routing.with_candidate(
                    replaced if current.serving is model else current.serving,
                    replaced if current.candidate is model else current.candidate,
                    current.mode,
                    current.share * 100 / SHARE_SCALE,
                )
            )
            changed = True
        return changed

    def _install(self, routing: Routing) -> None:
        self.registry.install(routing)
        model = self.registry.model
        if model is not None:
            held = [(m.version, "serving") for m in (routing.serving,) if m is not None]
            if routing.candidate is not None and routing.mode is not None:
                held.append((routing.candidate.version, routing.mode))
            self.metrics.set_models(model, held, self.process_id)
        logger.info(
            "now holding %s",
            " + ".join(routing.versions()) or "nothing",
            extra={"versions": routing.versions(), "mode": routing.mode},
        )

    async def _obtain(
        self, version: str | None, problems: Problems, *, blocking: bool
    ) -> LoadedModel | None:
        """The built version: staged by an admin change, already resident, or built now."""
        if version is not None:
            if version in self.staged:
                return self.staged[version]
            for model in (self.registry.routing.serving, self.registry.routing.candidate):
                if model is not None and model.version == version:
                    return model
        key = version or "current"
        failure = self._failures.get(key)
        if failure is not None and time.monotonic() < failure.retry_at:
            problems.add(failure.message, blocking)
            return None
        try:
            return await self._build(version)
        except ModelLoadError as exc:
            attempts = failure.attempts + 1 if failure else 1
            delay = min(MAX_BACKOFF_SECONDS, self.retry_seconds * 2 ** (attempts - 1))
            self._failures[key] = _Failure(attempts, time.monotonic() + delay, exc.message)
            logger.error("%s (attempt %d; retrying in %.0f s)", exc.message, attempts, delay)
            problems.add(exc.message, blocking)
            return None

    async def _build(self, version: str | None) -> LoadedModel:
        """Build on the loader thread; count failures by step."""
        try:
            model = await self.loader.run(self.registry.build, version)
        except ModelLoadError as exc:
            step = exc.step if isinstance(exc, LoadStepError) else "locate"
            self.fleet_metrics.record_load_failure(version or "current", step)
            self.metrics.record_swap(ok=False)
            raise
        self._failures.pop(version or "current", None)
        self._failures.pop(model.version, None)
        self._published[model.version] = model.fusion
        return model


def _routing(
    serving: LoadedModel, candidate: LoadedModel | None, wanted: CandidateState | None
) -> Routing:
    if candidate is None or wanted is None:
        return Routing(serving)
    return Routing.with_candidate(serving, candidate, wanted.mode, wanted.percent)
