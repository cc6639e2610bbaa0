"""Prometheus metrics of the ranking service (names in ``/work/shared/CONVENTIONS.md``).

One :class:`ServiceMetrics` per app, on the registry it is given (each test its own). Buckets fit a service
whose requests take 1-50 ms (0.25 ms .. 1 s). Score distributions get one observation per candidate, so
they are recorded in bulk (:class:`BulkHistogram`: one C pass over every score column of a request, or
numpy) rather than one Python call per value.
Labels are low-cardinality only: never a user or item id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_codes
from service.store.ports import CacheResult

try:
    from service import _speedups
except ImportError:  # built without a C compiler: numpy counts the buckets
    _speedups = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from service.scoring.ranker import RankOutput

LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02,
    0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
CANDIDATE_BUCKETS = (1, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
# Probabilities live in [0, 1]; regression objectives (watch time) in natural units; fused scores may
# be negative (zscore terms) or large (weighted sums).
OBJECTIVE_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
)  # fmt: skip
# Negative buckets mean the exposition has no _sum/_count for the fused score (an OpenMetrics rule the
# client library follows); quantiles and heatmaps only need the buckets.
FUSED_BUCKETS = (-10.0, -5.0, -2.0, -1.0, -0.5, 0.0, *OBJECTIVE_BUCKETS)
logger = logging.getLogger(__name__)

VERSION_STATE = "model_version"  # request.state attribute naming the version that scored it
FETCH_FAILURES = frozenset({"timeout", "error", "circuit_open", "corrupt"})


GUIDE_BELOW = 10
"""Powers of two below the smallest positive bound that :func:`bucket_guide` still covers (small
probabilities such as a pCTCVR fall there), so their slot is looked up too, not searched."""


def bucket_guide(upper: npt.NDArray[np.float64]) -> tuple[int, npt.NDArray[np.int64]] | None:
    """``(guide_from, guide)`` for ``service._speedups.bucket_counts`` (see it), or None without
    the C extension or a positive bound. The guide covers the cells from ``GUIDE_BELOW`` powers of
    two under the smallest positive bound to the largest bound's: about 2,000 int64 entries for
    the objective buckets, made once per histogram. ``upper`` ascending, as for the histogram."""
    positive = upper[upper > 0]
    if _speedups is None or positive.size == 0:
        return None
    shift = np.uint64(_speedups.GUIDE_SHIFT)
    keys = positive.view(np.uint64) >> shift
    first = max(int(keys[0]) - GUIDE_BELOW * 2 ** (52 - int(shift)), 1)
    cells = np.arange(first, int(keys[-1]) + 1, dtype=np.uint64)
    starts = (cells << shift).view(np.float64)  # each cell's smallest value
    return first, np.searchsorted(upper, starts, side="left").astype(np.int64)


class BulkHistogram(Collector):
    """A histogram family observed with whole arrays at once (``np.searchsorted`` + ``np.bincount``,
    or ``service._speedups.bucket_counts`` with the bounds' :func:`bucket_guide`)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.upper = np.asarray(buckets, dtype=np.float64)
        self._guide = bucket_guide(self.upper)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], npt.NDArray[np.int64]] = {}
        self._sums: dict[tuple[str, ...], float] = {}
        if not self.labelnames:  # an unlabelled histogram is exported (at zero) from the start
            self._counts[()] = np.zeros(len(self.upper) + 1, dtype=np.int64)
            self._sums[()] = 0.0
        registry.register(self)

    def observe_many(self, values: npt.ArrayLike, labels: Sequence[str] = ()) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        array = np.asarray(values, dtype=np.float64).ravel()
        array = array[np.isfinite(array)]
        # bucket i counts values <= upper[i]; the last slot is +Inf
        slots = np.searchsorted(self.upper, array, side="left")
        counts = np.bincount(slots, minlength=len(self.upper) + 1).astype(np.int64)
        key = tuple(labels)
        with self._lock:
            if key in self._counts:
                self._counts[key] += counts
                self._sums[key] += float(array.sum())
            else:
                self._counts[key] = counts
                self._sums[key] = float(array.sum())

    def observe_rows(self, rows: npt.NDArray[np.float64], labels: Sequence[Sequence[str]]) -> None:
        """``observe_many(rows[k], labels[k])`` for every k, in one pass when all are finite."""
        if len(labels) != rows.shape[0] or rows.ndim != 2 or not np.isfinite(rows).all():
            for values, row_labels in zip(rows, labels, strict=True):
                self.observe_many(values, row_labels)
            return
        if any(len(row_labels) != len(self.labelnames) for row_labels in labels):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels}")
        width = len(self.upper) + 1
        slots = np.searchsorted(self.upper, rows, side="left")  # (k, N)
        slots += np.arange(rows.shape[0])[:, None] * width  # row k counts into its own block
        counts = np.bincount(slots.ravel(), minlength=rows.shape[0] * width).astype(np.int64)
        sums = rows.sum(axis=1).tolist()
        with self._lock:
            for k, row_labels in enumerate(labels):
                key = tuple(row_labels)
                block = counts[k * width : (k + 1) * width]
                if key in self._counts:
                    self._counts[key] += block
                    self._sums[key] += sums[k]
                else:
                    self._counts[key] = block.copy()
                    self._sums[key] = sums[k]

    def observe_columns(
        self, columns: Sequence[npt.NDArray[np.float64]], labels: Sequence[Sequence[str]]
    ) -> None:
        """``observe_many(columns[k], labels[k])`` for every k: one C pass over all of them (about
        5x the numpy passes on a request's score columns), else ``observe_rows``."""
        if any(len(column_labels) != len(self.labelnames) for column_labels in labels):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels}")
        if _speedups is not None and len(labels) == len(columns):
            keys = [tuple(column_labels) for column_labels in labels]
            with self._lock:
                new = {key: np.zeros(len(self.upper) + 1, dtype=np.int64)
                       for key in keys if key not in self._counts}  # fmt: skip
                counts = [new[key] if key in new else self._counts[key] for key in keys]
                guide = () if self._guide is None else self._guide
                sums = _speedups.bucket_counts(self.upper, list(columns), counts, *guide)
                if sums is not None:
                    self._counts.update(new)
                    for key, total in zip(keys, sums, strict=True):
                        self._sums[key] = self._sums.get(key, 0.0) + total
                    return
        shapes = {column.shape for column in columns}
        if columns and len(shapes) == 1 and columns[0].ndim == 1:
            self.observe_rows(np.stack(columns), labels)
        else:
            for values, column_labels in zip(columns, labels, strict=True):
                self.observe_many(values, column_labels)

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(k, c.copy(), self._sums[k]) for k, c in self._counts.items()]
        for key, counts, total in snapshot:
            cumulative = np.cumsum(counts)
            bounds = [*(_le(b) for b in self.upper), "+Inf"]
            family.add_metric(
                list(key), [(b, float(n)) for b, n in zip(bounds, cumulative, strict=True)], total
            )
        return [family]


def _le(bound: float) -> str:
    return repr(float(bound))


class ServiceMetrics:
    """All metric families of one app; ``record_*`` methods are what the HTTP layer calls."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # The text format shows each counter's/histogram's ``_created`` timestamp as an extra gauge
        # family nobody queries; switched off (process-wide, idempotent) to keep the exposition exact.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.requests = Counter(
            "mtrank_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
            registry=registry,
        )  # fmt: skip
        self.request_duration = Histogram(
            "mtrank_request_duration_seconds", "Server-side request latency (version: /rank's)",
            ["endpoint", "status", "version"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.errors = Counter(
            "mtrank_errors", "Error responses by reason (the error code)", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.stage_duration = Histogram(
            "mtrank_stage_duration_seconds", "Time per scoring stage", ["stage", "version"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.scored = Counter(
            "mtrank_scored_requests", "/rank requests by the version that scored them and its role",
            ["version", "role"], registry=registry,
        )  # fmt: skip
        self.candidates = Histogram(
            "mtrank_candidates_per_request", "Candidates in one /rank request",
            buckets=CANDIDATE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.feature_store_requests = Counter(
            "mtrank_feature_store_requests", "Feature-store entity lookups by result (hit, miss)",
            ["result"], registry=registry,
        )  # fmt: skip
        self.feature_store_errors = Counter(
            "mtrank_feature_store_errors", "Feature fetches that failed and were served without",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.user_cache_requests = Counter(
            "mtrank_user_cache_requests", "User-representation cache lookups by result",
            ["result"], registry=registry,
        )  # fmt: skip
        self.model_info = Gauge(
            "mtrank_model_info", "1 for every version this process holds, by role (serving, "
            "canary, shadow) and process id", ["model", "version", "role", "process"],
            registry=registry,
        )  # fmt: skip
        self.model_swaps = Counter(
            "mtrank_model_swaps", "Model loads/rollbacks by result (ok, failed)", ["result"],
            registry=registry,
        )  # fmt: skip
        self.objective_score = BulkHistogram(
            "mtrank_objective_score", "Predicted score per candidate and objective",
            ["objective", "version"], OBJECTIVE_BUCKETS, registry,
        )  # fmt: skip
        self.fused_score = BulkHistogram(
            "mtrank_fused_score", "Fused ranking score per candidate", ["version"],
            FUSED_BUCKETS, registry,
        )  # fmt: skip
        self._held: set[tuple[str, str, str, str]] = set()
        self._request_children: dict[tuple[str, int, str], tuple[Counter, Histogram]] = {}
        self._children: dict[tuple[object, ...], Any] = {}
        self._lock = threading.Lock()
        self._zero_initialise()

    def _zero_initialise(self) -> None:
        """Export every known label value at 0 from the start, so a dashboard panel shows 0, not
        "No data", until the first error, swap or cache miss (and ``rate()`` sees the first one)."""
        for reason in error_codes():
            self.errors.labels(reason=reason)
        for result in ("ok", "failed"):
            self.model_swaps.labels(result=result)
        for result in ("hit", "miss"):
            self.feature_store_requests.labels(result=result)
        for kind in sorted(FETCH_FAILURES):
            self.feature_store_errors.labels(kind=kind)
        for cache_result in get_args(CacheResult):
            if cache_result != "disabled":
                self.user_cache_requests.labels(result=cache_result)

    def record_request(self, endpoint: str, status: int, seconds: float, version: str = "") -> None:
        key = (endpoint, status, version)
        children = self._request_children.get(key)
        if children is None:  # labels() takes a lock and builds the key on every call: once here
            children = (
                self.requests.labels(endpoint=endpoint, status=str(status)),
                self.request_duration.labels(endpoint, str(status), version),
            )
            if len(self._request_children) < 4096:  # label values are few; stay bounded anyway
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def _child(self, family: Counter | Histogram, *labels: str) -> Any:
        """``family.labels(*labels)``, kept: ``labels()`` takes a lock and builds a key per call."""
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = family.labels(*labels)
            if len(self._children) < 4096:  # label values are few (stages, versions); bounded
                self._children[key] = child
        return child

    def record_error(self, reason: str) -> None:
        self.errors.labels(reason=reason).inc()

    def record_rank(self, output: RankOutput) -> None:
        """Everything a successful /rank tells: stages, feature fetch, cache, score distributions."""
        version = output.version
        self._child(self.scored, version, output.role).inc()
        for stage, seconds in output.timings.items():
            self._child(self.stage_duration, stage, version).observe(seconds)
        self.candidates.observe(len(output.fused_scores))
        fetch = output.feature_fetch
        if fetch is not None and fetch.status != "disabled":
            if fetch.hits:
                self.feature_store_requests.labels(result="hit").inc(fetch.hits)
            if fetch.misses:
                self.feature_store_requests.labels(result="miss").inc(fetch.misses)
            if fetch.status in FETCH_FAILURES:
                self.feature_store_errors.labels(kind=fetch.status).inc()
        if output.user_cache != "disabled":
            self.user_cache_requests.labels(result=output.user_cache).inc()
        self.record_scores(version, output.objective_scores, output.fused_scores)

    def record_scores(
        self,
        version: str,
        objective_scores: dict[str, npt.NDArray[np.float64]],
        fused: npt.NDArray[np.float64],
    ) -> None:
        """Score distributions of one scored request (live or shadow), under its version."""
        labels = [(objective, version) for objective in objective_scores]
        self.objective_score.observe_columns(list(objective_scores.values()), labels)
        self.fused_score.observe_columns([fused], [(version,)])

    def set_models(self, model: str, held: list[tuple[str, str]], process: str) -> None:
        """Make ``held`` (version, role) the only ``mtrank_model_info`` series at 1."""
        wanted = {(model, version, role, process) for version, role in held}
        with self._lock:
            for labels in self._held - wanted:
                self.model_info.remove(*labels)
            for labels in wanted:
                self.model_info.labels(*labels).set(1)
            self._held = wanted

    def record_swap(self, ok: bool) -> None:
        self.model_swaps.labels(result="ok" if ok else "failed").inc()


CLIENT_CLOSED_REQUEST = 499
"""Status label of a request whose client went away before it was answered (nginx's 499)."""


class RequestMetricsMiddleware:
    """ASGI middleware: count and time every HTTP request by route template and status.

    A client that disconnects before its answer (``ClientDisconnect`` while its body is read) is
    counted as status 499 and reason ``client_disconnected``, and logged at debug: it is the
    client's doing, not a server error, and must not inflate the 5xx rate or flood the log.

    The duration runs until the answer's last byte is handed to the server, which is what the
    client waits for: work a route does after answering (``/rank``'s metrics and user-cache write)
    is not counted in it.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered: float | None = None  # when the answer's last byte went to the server
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_and_note(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = time.perf_counter()

        try:
            await self.app(scope, receive, send_and_note)
        except ClientDisconnect:
            status = CLIENT_CLOSED_REQUEST
            self.metrics.record_error("client_disconnected")
            logger.debug(
                "client disconnected before %s %s was answered", scope["method"], scope["path"]
            )
        finally:
            route = scope.get("route")
            endpoint = (
                getattr(route, "path", None) or "unmatched"
            )  # templates only: low cardinality
            version = scope.get("state", {}).get(VERSION_STATE, "")  # set by /rank
            ended = time.perf_counter() if answered is None else answered
            self.metrics.record_request(endpoint, status, ended - started, version)
