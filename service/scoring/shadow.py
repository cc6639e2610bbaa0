"""Shadow scoring: a second version scores a copy of sampled requests after the response is sent.

The /rank route calls :meth:`ShadowScorer.submit_for` once its response has been sent (on the event
loop's thread: the queue is an asyncio one). ``submit`` never waits: the job goes into a bounded
queue, or is dropped and counted when the queue is full. One worker scores queued jobs on its own
lower-priority thread, with the features the live request already fetched (no second Redis call,
no user cache), and records how the shadow agrees with the live ranking:

* ``mtrank_shadow_requests_total{version,result}``: scored, dropped (queue full), failed;
* ``mtrank_shadow_topk_overlap{version}``: |live top-k ∩ shadow top-k| / k, k = min(top_k or 10, N);
* ``mtrank_shadow_rank_correlation{version}``: Spearman correlation of the fused scores over every
  candidate (requests with fewer than two candidates or constant scores are not observed);
* the shadow's score distributions go into ``mtrank_objective_score`` / ``mtrank_fused_score``
  under its own ``version`` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Histogram

from service.scoring.assembly import RankInput
from service.scoring.topk import top_k
from service.store.ports import FeatureFetch

if TYPE_CHECKING:
    from service.metrics import ServiceMetrics
    from service.scoring.ranker import RankOutput
    from service.scoring.registry import LoadedModel

logger = logging.getLogger(__name__)

OVERLAP_K = 10
OVERLAP_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CORRELATION_BUCKETS = (-0.5, 0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0)


@dataclass(frozen=True)
class ShadowJob:
    shadow: LoadedModel
    request: RankInput
    fetch: FeatureFetch | None
    live_fused: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Agreement:
    overlap: float
    correlation: float | None


def spearman(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float | None:
    """Rank correlation of two score vectors (average ranks for ties); None when undefined."""
    if a.shape[0] < 2:
        return None
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.shape[0], dtype=np.float64)
    ranks[order] = np.arange(x.shape[0], dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    averaged: npt.NDArray[np.float64] = (sums / counts)[inverse]
    return averaged


def agreement(live: npt.NDArray[np.float64], shadow: npt.NDArray[np.float64], k: int) -> Agreement:
    k = max(1, min(k, live.shape[0]))
    common = np.intersect1d(top_k(live, k), top_k(shadow, k)).shape[0]
    return Agreement(common / k, spearman(live, shadow))


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mtrank_shadow_requests", "Shadow scoring jobs by result (scored, dropped, failed)",
            ["version", "result"], registry=registry,
        )  # fmt: skip
        self.overlap = Histogram(
            "mtrank_shadow_topk_overlap", "Share of the live top-k the shadow also ranks top-k",
            ["version"], buckets=OVERLAP_BUCKETS, registry=registry,
        )  # fmt: skip
        self.correlation = Histogram(
            "mtrank_shadow_rank_correlation", "Spearman correlation of live and shadow scores",
            ["version"], buckets=CORRELATION_BUCKETS, registry=registry,
        )  # fmt: skip


class ShadowScorer:
    """The bounded queue and its worker; see the module docstring."""

    def __init__(
        self,
        service_metrics: ServiceMetrics,
        registry: CollectorRegistry,
        *,
        queue_size: int,
        nice: int = 0,
    ) -> None:
        self.service_metrics = service_metrics
        self.metrics = ShadowMetrics(registry)
        self.nice = nice
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(1, "mtrank-shadow", initializer=self._lower_priority)
        self._task: asyncio.Task[None] | None = None

    def _lower_priority(self) -> None:
        from service.fleet.loader import lower_thread_priority

        lower_thread_priority(self.nice)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit_for(self, request: RankInput, output: RankOutput) -> bool:
        """Queue a job for ``output``'s sampled shadow, if it has one (False when it has none or the
        queue is full). Call it on the event loop's thread."""
        if output.shadow is None:
            return False
        return self.submit(
            ShadowJob(output.shadow, request, output.feature_fetch, output.fused_scores)
        )

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job`` without waiting; False (dropped and counted) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.requests.labels(job.shadow.version, "dropped").inc()
            return False
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._work(), name="mtrank-shadow")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            try:
                await loop.run_in_executor(self._executor, self.score, job)
            except Exception as exc:  # a shadow never affects live traffic: count and go on
                self.metrics.requests.labels(job.shadow.version, "failed").inc()
                logger.warning("shadow scoring with %s failed: %s", job.shadow.version, exc)
            finally:
                self._queue.task_done()

    def score(self, job: ShadowJob) -> Agreement:
        """Score ``job`` with the shadow version and record the agreement (worker thread)."""
        from service.scoring.ranker import score_request, shadow_fusion

        model, request = job.shadow, job.request
        scored = score_request(model, request, job.fetch, None, shadow_fusion(model, request))
        result = agreement(job.live_fused, scored.fused, request.top_k or OVERLAP_K)
        version = model.version
        self.metrics.requests.labels(version, "scored").inc()
        self.metrics.overlap.labels(version).observe(result.overlap)
        if result.correlation is not None:
            self.metrics.correlation.labels(version).observe(result.correlation)
        self.service_metrics.record_scores(version, scored.objectives, scored.fused)
        return result
