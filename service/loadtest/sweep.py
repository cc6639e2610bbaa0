"""A rate sweep: open-loop runs at increasing offered rates until the service saturates.

A step is *sustained* when the service answered at least 95% of the offered rate, at most 1% of the
requests failed and, if a latency objective is given, p99 stayed under it. The sweep stops after the
first step that is not sustained (plus, if asked, a few more to show the collapse); the saturation
point is the highest sustained rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from service.loadtest.report import summarise
from service.loadtest.runner import RunConfig, run_open_loop

MIN_ANSWERED_SHARE = 0.95
MAX_ERROR_SHARE = 0.01


@dataclass(frozen=True)
class SweepConfig:
    rates: Sequence[float]
    slo_p99_ms: float | None = None
    beyond: int = 0  # steps to run past the first unsustained one
    pause_s: float = 1.0  # between steps, so one step's queue does not leak into the next


def sustained(step: dict[str, Any], slo_p99_ms: float | None) -> tuple[bool, str]:
    """Whether one step's summary meets the criteria above, and if not, why."""
    offered, answered = step["offered_rate"], step["throughput_rps"]
    if answered < MIN_ANSWERED_SHARE * offered:
        return False, f"answered {answered:.1f} of {offered:g} req/s offered"
    if step["error_share"] > MAX_ERROR_SHARE:
        return False, f"{step['error_share']:.1%} of requests failed"
    p99 = step["latency_ms"]["p99"]
    if slo_p99_ms is not None and (p99 is None or p99 > slo_p99_ms):
        return False, f"p99 {p99} ms over the {slo_p99_ms:g} ms objective"
    return True, "sustained"


def run_sweep(
    base: RunConfig,
    sweep: SweepConfig,
    bodies: list[bytes],
    workload: dict[str, Any],
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run each rate of ``sweep.rates`` for ``base.duration`` seconds; the steps and the saturation point."""
    steps: list[dict[str, Any]] = []
    saturation: float | None = None
    remaining_after_failure: int | None = None
    for rate in sweep.rates:
        config = replace(base, rate=rate)
        summary = summarise(asyncio.run(run_open_loop(config, bodies)), workload)
        ok, reason = sustained(summary, sweep.slo_p99_ms)
        summary["sustained"], summary["verdict"] = ok, reason
        steps.append(summary)
        if on_step is not None:
            on_step(summary)
        if ok and remaining_after_failure is None:
            saturation = rate
        elif remaining_after_failure is None:
            remaining_after_failure = sweep.beyond
        if remaining_after_failure is not None:
            if remaining_after_failure == 0:
                break
            remaining_after_failure -= 1
        time.sleep(sweep.pause_s)
    return {
        "url": base.url,
        "step_duration_s": base.duration,
        "slo_p99_ms": sweep.slo_p99_ms,
        "saturation_rps": saturation,
        "workload": workload,
        "steps": steps,
    }
