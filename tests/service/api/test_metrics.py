"""ServiceMetrics: the exported families, bulk score histograms, model info and request recording."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service import metrics as metrics_module
from service.metrics import LATENCY_BUCKETS, OBJECTIVE_BUCKETS, BulkHistogram, ServiceMetrics

# The dashboard's contract (tests/test_docker_stack.py SERVICE_METRICS): family -> (type, labels).
EXPECTED = {
    "mtrank_requests": ("counter", ("endpoint", "status")),
    "mtrank_request_duration_seconds": ("histogram", ("endpoint", "status", "version")),
    "mtrank_errors": ("counter", ("reason",)),
    "mtrank_stage_duration_seconds": ("histogram", ("stage", "version")),
    "mtrank_scored_requests": ("counter", ("version", "role")),
    "mtrank_candidates_per_request": ("histogram", ()),
    "mtrank_feature_store_requests": ("counter", ("result",)),
    "mtrank_feature_store_errors": ("counter", ("kind",)),
    "mtrank_user_cache_requests": ("counter", ("result",)),
    "mtrank_model_info": ("gauge", ("model", "version", "role", "process")),
    "mtrank_model_swaps": ("counter", ("result",)),
    "mtrank_objective_score": ("histogram", ("objective", "version")),
    "mtrank_fused_score": ("histogram", ("version",)),
}


def _families(registry: CollectorRegistry) -> dict[str, object]:
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _exercise(metrics: ServiceMetrics) -> None:
    metrics.record_request("/rank", 200, 0.004, "v1")
    metrics.record_error("invalid_input")
    metrics.stage_duration.labels(stage="transform", version="v1").observe(0.001)
    metrics.scored.labels(version="v1", role="serving").inc()
    metrics.candidates.observe(10)
    metrics.feature_store_requests.labels(result="hit").inc()
    metrics.feature_store_errors.labels(kind="timeout").inc()
    metrics.user_cache_requests.labels(result="miss").inc()
    metrics.set_models("feed", [("v1", "serving")], "host-1-abc")
    metrics.record_swap(ok=True)
    metrics.record_scores("v1", {"click": np.array([0.1, 0.2])}, np.array([0.3]))


def test_exported_families_match_the_dashboard_contract_exactly() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    _exercise(metrics)
    families = _families(registry)
    assert set(families) == set(EXPECTED)
    for name, (kind, labels) in EXPECTED.items():
        family = families[name]
        assert family.type == kind, name  # type: ignore[attr-defined]
        for sample in family.samples:  # type: ignore[attr-defined]
            assert set(sample.labels) - {"le"} == set(labels), (name, sample)


def test_latency_buckets_span_a_quarter_millisecond_to_one_second() -> None:
    assert LATENCY_BUCKETS[0] == 0.00025
    assert LATENCY_BUCKETS[-1] == 1.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_bulk_histogram_equals_one_observe_per_value() -> None:
    bounds = np.asarray(OBJECTIVE_BUCKETS)  # values on the bucket bounds, in short and long rows
    values = np.concatenate([bounds, np.linspace(-0.5, 1200, 997), bounds, [np.nan, np.inf]])
    bulk_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("h", "h", ["objective"], OBJECTIVE_BUCKETS, bulk_registry)
    reference = Histogram(
        "h", "h", ["objective"], buckets=OBJECTIVE_BUCKETS, registry=reference_registry
    )
    for start, stop in ((0, 3), (3, 150), (150, 500), (500, None)):  # short rows and long ones
        bulk.observe_many(values[start:stop], ("click",))
    for value in values[np.isfinite(values)]:
        reference.labels(objective="click").observe(float(value))

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        family = _families(registry)["h"]
        return {
            (s.name, s.labels.get("le", "")): s.value
            for s in family.samples  # type: ignore[attr-defined]
            if not s.name.endswith("_created")
        }

    got, want = samples(bulk_registry), samples(reference_registry)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == value if key[0] != "h_sum" else abs(got[key] - value) < 1e-6


@pytest.mark.parametrize("length", [5, 400])
def test_bulk_rows_equal_one_observe_many_per_row(length: int) -> None:
    rng = np.random.default_rng(0)
    rows = rng.uniform(-1, 1200, size=(3, length))
    bounds = min(length, len(OBJECTIVE_BUCKETS))
    rows[1, :bounds] = OBJECTIVE_BUCKETS[:bounds]  # values on the bucket bounds
    labels = [("click", "v1"), ("like", "v1"), ("click", "v2")]
    registries = CollectorRegistry(), CollectorRegistry()
    together = BulkHistogram("h", "h", ["objective", "version"], OBJECTIVE_BUCKETS, registries[0])
    apart = BulkHistogram("h", "h", ["objective", "version"], OBJECTIVE_BUCKETS, registries[1])
    for _ in range(2):  # a new series, then one that exists
        together.observe_rows(rows, labels)
        for values, row_labels in zip(rows, labels, strict=True):
            apart.observe_many(values, row_labels)
    rows[2, 3] = np.nan  # not finite: falls back to one row at a time, dropping the NaN
    together.observe_rows(rows, labels)
    for values, row_labels in zip(rows, labels, strict=True):
        apart.observe_many(values, row_labels)
    assert generate_latest(registries[0]) == generate_latest(registries[1])


@pytest.mark.parametrize("counting", ["c", "numpy"])
def test_bulk_columns_equal_one_observe_many_per_column(
    counting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's score columns in one call, as ``record_scores`` passes them: values on the
    bounds, NaN and infinities (dropped), -0.0, a column that is a strided view, and columns of
    other lengths than the rest."""
    if counting == "numpy":
        monkeypatch.setattr(metrics_module, "_speedups", None)
    rng = np.random.default_rng(1)
    block = rng.uniform(-1, 1200, size=(400, 2))
    columns = [
        np.concatenate([np.asarray(OBJECTIVE_BUCKETS), rng.uniform(0, 1, 300)]),
        np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 0.001, 1e300, -1e300]),
        block[:, 1],  # strided
        rng.uniform(0, 1, 3),
    ]
    labels = [("click", "v1"), ("like", "v1"), ("click", "v2"), ("share", "v1")]
    registries = CollectorRegistry(), CollectorRegistry()
    together = BulkHistogram("h", "h", ["objective", "version"], OBJECTIVE_BUCKETS, registries[0])
    apart = BulkHistogram("h", "h", ["objective", "version"], OBJECTIVE_BUCKETS, registries[1])
    for _ in range(2):  # new series, then existing ones
        together.observe_columns(columns, labels)
        for values, column_labels in zip(columns, labels, strict=True):
            apart.observe_many(values, column_labels)
    got, want = _samples(registries[0]), _samples(registries[1])
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert (
            got[key] == value
            if key[0] != "h_sum"
            else abs(got[key] - value) < 1e-6 * max(1.0, abs(value))
        )
    with pytest.raises(ValueError, match="takes labels"):
        together.observe_columns(columns[:1], [("click",)])


def _samples(registry: CollectorRegistry) -> dict[tuple[str, ...], float]:
    family = _families(registry)["h"]
    return {
        (s.name, *sorted(s.labels.items())): s.value  # type: ignore[misc]
        for s in family.samples  # type: ignore[attr-defined]
    }


def test_model_info_keeps_one_series_per_held_version_and_role() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    metrics.set_models("feed", [("v1", "serving")], "p1")
    metrics.set_models("feed", [("v2", "serving"), ("v3", "canary")], "p1")
    info = _families(registry)["mtrank_model_info"]
    series = {
        (s.labels["version"], s.labels["role"], s.labels["process"]): s.value
        for s in info.samples  # type: ignore[attr-defined]
    }
    assert series == {("v2", "serving", "p1"): 1.0, ("v3", "canary", "p1"): 1.0}


def test_request_recording_counts_by_endpoint_and_status() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    metrics.record_request("/rank", 200, 0.002)
    metrics.record_request("/rank", 200, 0.003)
    metrics.record_request("/rank", 422, 0.001)
    assert (
        registry.get_sample_value("mtrank_requests_total", {"endpoint": "/rank", "status": "200"})
        == 2
    )
    assert (
        registry.get_sample_value(
            "mtrank_request_duration_seconds_count",
            {"endpoint": "/rank", "status": "422", "version": ""},
        )
        == 1
    )


def test_a_fresh_service_exports_every_known_label_at_zero() -> None:
    # a dashboard panel over these series shows 0 on a fresh stack instead of "No data"
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    for name, label, values in (
        ("mtrank_model_swaps_total", "result", ("ok", "failed")),
        ("mtrank_feature_store_requests_total", "result", ("hit", "miss")),
        (
            "mtrank_feature_store_errors_total",
            "kind",
            ("timeout", "error", "circuit_open", "corrupt"),
        ),
        ("mtrank_user_cache_requests_total", "result", ("hit", "miss", "error")),
        ("mtrank_errors_total", "reason", ("invalid_input", "overloaded", "not_ready", "internal")),
    ):
        for value in values:
            assert samples[(name, ((label, value),))] == 0.0, (name, value)
