"""Metrics of the model lifecycle, per process (``mtrank_model_info{model,version,role,process}``,
1 for every version a process holds, lives with the service metrics):

* ``mtrank_fleet_in_sync{process}``: 1 when the process serves exactly the fleet's choice.
* ``mtrank_fleet_revision{process}``: the revision of the fleet choice the process applied.
* ``mtrank_model_load_failures_total{version,step}``: loads that failed, by the failing step.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class FleetMetrics:
    def __init__(self, registry: CollectorRegistry, process_id: str) -> None:
        self.process = process_id
        self.in_sync = Gauge(
            "mtrank_fleet_in_sync", "1 when this process serves exactly what the fleet chose",
            ["process"], registry=registry,
        )  # fmt: skip
        self.revision = Gauge(
            "mtrank_fleet_revision", "Revision of the fleet choice this process applied",
            ["process"], registry=registry,
        )  # fmt: skip
        self.load_failures = Counter(
            "mtrank_model_load_failures", "Model loads that failed, by version and failing step",
            ["version", "step"], registry=registry,
        )  # fmt: skip

    def set_sync(self, in_sync: bool, revision: int | None) -> None:
        self.in_sync.labels(self.process).set(1 if in_sync else 0)
        if revision is not None:
            self.revision.labels(self.process).set(revision)

    def record_load_failure(self, version: str, step: str) -> None:
        self.load_failures.labels(version=version, step=step).inc()
