"""What a load-test run measured, as a JSON-ready summary and as text for the terminal."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from service.loadtest.runner import Outcome

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def _label(p: float) -> str:
    return f"p{p:g}"


def latency_summary(outcome: Outcome) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max/mean in milliseconds of the successful requests (None if there were none)."""
    hist = outcome.latency
    if hist.get_total_count() == 0:
        return {**{_label(p): None for p in PERCENTILES}, "max": None, "mean": None}
    summary: dict[str, float | None] = {
        _label(p): hist.get_value_at_percentile(p) / 1000 for p in PERCENTILES
    }
    summary["max"] = hist.get_max_value() / 1000
    summary["mean"] = hist.get_mean_value() / 1000
    return summary


def timeline(outcome: Outcome) -> list[dict[str, Any]]:
    """One row per interval: when, how many sent / answered / failed, latency percentiles, versions."""
    rows = []
    for index, bucket in enumerate(outcome.intervals):
        row: dict[str, Any] = {
            "t": index * outcome.config.interval,
            "sent": bucket.sent,
            "ok": len(bucket.ok_latencies_us),
            "errors": bucket.errors,
            "versions": dict(bucket.versions),
        }
        if bucket.ok_latencies_us:
            ms = np.asarray(bucket.ok_latencies_us, dtype=np.float64) / 1000
            for p in PERCENTILES:
                row[_label(p)] = float(np.percentile(ms, p))
            row["max"] = float(ms.max())
        rows.append(row)
    return rows


def summarise(outcome: Outcome, workload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a run measured; ``latency_histogram`` is the HdrHistogram in its base64 form."""
    config = outcome.config
    errors = {status: n for status, n in sorted(outcome.statuses.items()) if status != "200"}
    lag = outcome.send_lag
    return {
        "url": config.url,
        "offered_rate": config.rate,
        "duration_s": config.duration,
        "interval_s": config.interval,
        "sent": outcome.sent,
        "ok": outcome.ok,
        "throughput_rps": outcome.ok / outcome.elapsed if outcome.elapsed > 0 else 0.0,
        "error_share": (outcome.sent - outcome.ok) / outcome.sent if outcome.sent else 0.0,
        "errors": errors,
        "latency_ms": latency_summary(outcome),
        "send_lag_ms": {
            "p99": lag.get_value_at_percentile(99) / 1000 if lag.get_total_count() else None,
            "max": lag.get_max_value() / 1000 if lag.get_total_count() else None,
        },
        "swap": None if outcome.swap is None else vars(outcome.swap),
        "workload": workload or {},
        "timeline": timeline(outcome),
        "latency_histogram": base64.b64encode(outcome.latency.encode()).decode()
        if outcome.latency.get_total_count()
        else None,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines: rate, throughput, errors by status, latency percentiles."""
    lat = summary["latency_ms"]
    shown = "  ".join(
        f"{key} {value:.1f}" if value is not None else f"{key} -"
        for key, value in lat.items()
        if key != "mean"
    )
    errors = ", ".join(f"{status}: {n}" for status, n in summary["errors"].items()) or "none"
    lines = [
        f"offered {summary['offered_rate']:g} req/s for {summary['duration_s']:g} s: "
        f"{summary['sent']} sent, {summary['ok']} ok, {summary['throughput_rps']:.1f} req/s answered",
        f"errors by status: {errors}",
        f"latency from intended start (ms): {shown}",
    ]
    lag = summary["send_lag_ms"]
    if lag["p99"] is not None and lag["p99"] > 10:
        lines.append(
            f"warning: sends started up to {lag['max']:.0f} ms late (p99 {lag['p99']:.0f} ms): the "
            "load generator itself was short of CPU; read the latencies as an upper bound"
        )
    swap = summary["swap"]
    if swap is not None:
        lines.append(
            f"model swap at {swap['started_s']:.1f} s answered {swap['status']} after "
            f"{swap['finished_s'] - swap['started_s']:.2f} s"
        )
    return "\n".join(lines)
