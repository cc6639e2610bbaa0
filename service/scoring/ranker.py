"""The scoring engine behind ``POST /rank`` (DUPN serving split, seed 001).

Per request: read the routing once and pick the version that scores it (the serving version, or a
canary for a stable share of users; a sampled request also names a shadow version to score it
again after the response, see ``service.scoring.shadow``); fetch stored features for the user and
every candidate in one store call (concurrently with the user-representation cache lookup); assemble and transform
the arrays; run the user graph once (skipped on a cache hit) and the candidate graph once over all N
candidates; derive objectives (ctcvr = click x convert); fuse; pick the top k. All CPU work (the
transform, both graphs, fusion) runs in the executor, so the event loop never blocks, unless the
service is configured to score inline (``MTRANK_INFERENCE_THREADS=0``: one request at a time per
worker process, no thread hop).
No FastAPI and no metrics here: the output says what happened and the HTTP layer records it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Literal

import numpy as np
import numpy.typing as npt

from service.contracts.fusion import FusionSpec, UnknownObjectiveError, fuse
from service.errors import InvalidInput, NotReady, RankError
from service.scoring.assembly import RankInput, stored_rows
from service.scoring.registry import LoadedModel, ModelRegistry
from service.scoring.routing import Role
from service.scoring.topk import top_k
from service.store.ports import CacheLookup, CacheResult, FeatureFetch, FeatureStore, UserRepCache
from service.store.redis_user_cache import user_rep_cache_key

logger = logging.getLogger(__name__)

__all__ = ["RankInput", "RankOutput", "RankedItem", "Ranker"]

# Candidates per candidate-graph run. Measured (2 shared cores, ort_threads=1, MMoE with 4 experts of
# (64, 32), the simulator-like test spec; mean of 20 runs): N=1000: one run 1.78 ms vs chunks of
# 256/512/1024/2048: 1.97/1.90/2.02/1.84 ms; N=5000: one run 9.71 ms vs 10.14/9.56/9.83/11.55 ms.
# Chunking never wins beyond noise, so a request (<= 5,000 candidates) is scored in one run; the
# chunk only bounds the size of one run for larger batches.
CANDIDATE_CHUNK = 8192


@dataclass(frozen=True, slots=True)
class RankedItem:
    """One ranked candidate; serialized by orjson as is (fields in the response's order)."""

    id: str
    rank: int  # 1-based
    score: float
    objectives: dict[str, float]


@dataclass(frozen=True)
class RankOutput:
    model: str
    version: str
    fusion_name: str
    fusion: FusionSpec
    candidate_ids: list[str]  # as requested
    order: npt.NDArray[np.intp]  # the returned candidates: fused score desc, ties by input order
    timings: dict[
        str, float
    ]  # seconds: feature_fetch, transform, user_graph, candidate_graph, fusion
    feature_fetch: FeatureFetch | None  # None when no store is configured
    user_cache: CacheResult  # "disabled" when no cache (or no user id)
    objective_scores: dict[str, npt.NDArray[np.float64]]  # every candidate, for histograms
    fused_scores: npt.NDArray[np.float64]
    role: Role = "serving"  # which side of a canary scored the request
    shadow: LoadedModel | None = None  # sampled: score again with this version after responding
    # the user representation this request computed (a cache miss) under its cache key, until
    # ``Ranker.cache_user_rep`` stores it
    user_rep_to_cache: tuple[str, npt.NDArray[np.float32]] | None = None

    @cached_property
    def items(self) -> list[RankedItem]:
        """The returned candidates as objects (the HTTP layer encodes the arrays directly)."""
        order = self.order
        names = list(self.objective_scores)
        columns = [self.objective_scores[name][order].tolist() for name in names]
        ids = self.candidate_ids
        return [
            RankedItem(ids[i], rank, score, dict(zip(names, values, strict=True)))
            for rank, (i, score, values) in enumerate(
                zip(
                    order.tolist(),
                    self.fused_scores[order].tolist(),
                    zip(*columns, strict=True),
                    strict=True,
                ),
                start=1,
            )
        ]


@dataclass(frozen=True)
class _Scored:
    objectives: dict[str, npt.NDArray[np.float64]]
    fused: npt.NDArray[np.float64]
    order: npt.NDArray[np.intp]
    user_rep: npt.NDArray[np.float32] | None  # computed here (a cache miss), to store
    timings: dict[str, float]


def choose_fusion(model: LoadedModel, request: RankInput) -> tuple[str, FusionSpec]:
    """The request's override (validated against the model), else its preset, else the default."""
    if request.fusion is not None:
        try:
            request.fusion.validate_objectives(model.objectives)
        except UnknownObjectiveError as exc:
            raise InvalidInput(str(exc), field=f"fusion.terms.{exc.objective}") from None
        return "request", request.fusion
    if request.fusion_preset is not None:
        if request.fusion_preset not in model.fusion.presets:
            raise InvalidInput(
                f"no fusion preset {request.fusion_preset!r} in {model.name}/{model.version}; "
                f"use one of {sorted(model.fusion.presets)}",
                field="fusion_preset",
            )
        return request.fusion_preset, model.fusion.presets[request.fusion_preset]
    return model.fusion.default, model.fusion.presets[model.fusion.default]


def shadow_fusion(model: LoadedModel, request: RankInput) -> FusionSpec:
    """The fusion a shadow version applies: as the live request asked, else its default preset."""
    try:
        return choose_fusion(model, request)[1]
    except InvalidInput:
        return model.fusion.presets[model.fusion.default]


def score_request(
    model: LoadedModel,
    request: RankInput,
    fetch: FeatureFetch | None,
    cached_rep: npt.NDArray[np.float32] | None,
    spec: FusionSpec,
) -> _Scored:
    """The CPU part of a request (runs in the executor)."""
    n = len(request.candidate_ids)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    user_row, item_rows = stored_rows(fetch, n)
    if cached_rep is None:  # a cache hit needs no user arrays
        user = model.assembler.user_arrays(request.user_features, user_row)
    arrays = model.assembler.candidate_arrays(request, item_rows)
    mark = time.perf_counter()
    timings["transform"] = mark - start
    rep = model.sessions.user_rep(user) if cached_rep is None else cached_rep
    timings["user_graph"], mark = time.perf_counter() - mark, time.perf_counter()
    objectives = model.objective_scores(rep, arrays, n, chunk=CANDIDATE_CHUNK)
    timings["candidate_graph"], mark = time.perf_counter() - mark, time.perf_counter()
    try:
        model.check_outputs(objectives)
    except ValueError as exc:
        raise RankError(
            f"model {model.name}/{model.version} produced invalid scores ({exc}): roll back "
            "(POST /admin/models/rollback) and check the export"
        ) from None
    try:
        fused = fuse(spec, objectives)
    except ValueError as exc:  # overflow: the override's (or preset's) weights are too large
        if request.fusion is not None:
            raise InvalidInput(str(exc), field="fusion") from None
        raise RankError(f"fusion preset of {model.name}/{model.version} failed: {exc}") from None
    order = top_k(fused, request.top_k)
    timings["fusion"] = time.perf_counter() - mark
    return _Scored(objectives, fused, order, None if cached_rep is not None else rep, timings)


def _cache_result(lookup: CacheLookup | None, used: object | None) -> CacheResult:
    if lookup is None:
        return "disabled"
    if lookup.result == "hit" and used is None:
        return "miss"  # a stored vector of the wrong width counts as a miss
    return lookup.result


class Ranker:
    """Ranks candidates with the registry's active version; see the module docstring."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        feature_store: FeatureStore | None = None,
        user_cache: UserRepCache | None = None,
        executor: concurrent.futures.Executor | None = None,
        inline: bool = False,
        unknown_features: Literal["reject", "ignore"] = "reject",
    ) -> None:
        self.registry = registry
        self.unknown_features = unknown_features
        self.feature_store = feature_store
        self.user_cache = user_cache
        self.executor = executor
        # inline: score on the event loop's thread instead of the executor. A thread hop costs a
        # wake-up per request (tens of microseconds idle, milliseconds on a busy machine); with one
        # worker process per core the loop has nothing else to run meanwhile.
        self.inline = inline

    async def rank(self, request: RankInput, *, cache_now: bool = True) -> RankOutput:
        """Score and order ``request``'s candidates with the serving (or canary) version.

        A user representation computed here (a cache miss) is stored in the user cache before
        returning, unless ``cache_now`` is False: then the caller stores it with
        :meth:`cache_user_rep` when it suits it (the route does, once the answer is sent)."""
        routing = self.registry.routing  # read once: a concurrent swap never mixes versions
        model, role = routing.pick(request.user_id)
        if model is None:
            raise NotReady("no model version is loaded yet; retry shortly or load one via /admin")
        if not request.candidate_ids:
            raise InvalidInput("candidates must not be empty", field="candidates")
        if request.top_k is not None and request.top_k < 1:
            raise InvalidInput(f"top_k must be >= 1, got {request.top_k}", field="top_k")
        fusion_name, spec = choose_fusion(model, request)
        if self.unknown_features == "reject":
            model.assembler.check_feature_names(request)

        start = time.perf_counter()
        key = self._cache_key(model, request)
        if self.feature_store is None and key is None:  # nothing to wait for: no tasks to start
            fetch, lookup = None, None
        else:
            fetch, lookup = await asyncio.gather(self._fetch(request), self._lookup(key))
        fetch_seconds = time.perf_counter() - start
        cached = self._usable(model, lookup)

        if self.inline:  # one request at a time per process: no thread hop (see __init__)
            scored = score_request(model, request, fetch, cached, spec)
        else:
            loop = asyncio.get_running_loop()
            scored = await loop.run_in_executor(
                self.executor, partial(score_request, model, request, fetch, cached, spec)
            )
        to_cache = None
        if key is not None and self.user_cache is not None and scored.user_rep is not None:
            to_cache = (key, scored.user_rep)
        output = RankOutput(
            model=model.name,
            version=model.version,
            fusion_name=fusion_name,
            fusion=spec,
            candidate_ids=request.candidate_ids,
            order=scored.order,
            timings={"feature_fetch": fetch_seconds, **scored.timings},
            feature_fetch=fetch,
            user_cache=_cache_result(lookup, cached),
            objective_scores=scored.objectives,
            fused_scores=scored.fused,
            role=role,
            shadow=routing.shadow(),
            user_rep_to_cache=to_cache,
        )
        if cache_now:
            await self.cache_user_rep(output)
        return output

    async def cache_user_rep(self, output: RankOutput) -> None:
        """Store the user representation ``output``'s request computed, if it computed one. A
        failed write is the cache's to count and log; the request has its answer either way."""
        if output.user_rep_to_cache is not None and self.user_cache is not None:
            await self.user_cache.put(*output.user_rep_to_cache)

    def _cache_key(self, model: LoadedModel, request: RankInput) -> str | None:
        if self.user_cache is None or request.user_id is None:
            return None
        return user_rep_cache_key(model.name, model.version, request.user_id, request.user_features)

    async def _fetch(self, request: RankInput) -> FeatureFetch | None:
        if self.feature_store is None:
            return None
        return await self.feature_store.fetch(request.user_id, request.candidate_ids)

    async def _lookup(self, key: str | None) -> CacheLookup | None:
        if key is None or self.user_cache is None:
            return None
        return await self.user_cache.get(key)

    @staticmethod
    def _usable(model: LoadedModel, lookup: CacheLookup | None) -> npt.NDArray[np.float32] | None:
        """The cached user_rep reshaped to (1, D), or None (a vector of the wrong width is a miss)."""
        if lookup is None or lookup.value is None:
            return None
        width = model.manifest.graphs.user.outputs[0].shape[-1]
        if isinstance(width, int) and lookup.value.size != width:
            logger.warning(
                "cached user_rep has %d values, expected %d: ignored", lookup.value.size, width
            )
            return None
        return lookup.value.reshape(1, -1).astype(np.float32, copy=False)
