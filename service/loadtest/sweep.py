"""A rate sweep: open-loop runs at increasing offered rates until the service saturates.

A step is *sustained* when the service answered at least 95% of the offered rate, at most 1% of the
requests failed and, if a latency objective is given, p99 stayed under it. A target's sweep stops after
its first step that is not sustained (plus ``beyond`` more, to show the collapse); its saturation point
is its highest sustained rate. With two targets (a baseline and the one under test) the steps alternate,
rate by rate, so both see the same machine in the same minutes and their ratio is fair.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
    pause_after_failure_s: float = 10.0  # a saturated service works through its backlog first


@dataclass
class Series:
    """One target's steps as the sweep goes."""

    label: str
    config: RunConfig
    steps: list[dict[str, Any]] = field(default_factory=list)
    saturation: float | None = None
    left_after_failure: int | None = None  # None until a step is not sustained

    @property
    def done(self) -> bool:
        return self.left_after_failure is not None and self.left_after_failure < 0

    def record(self, rate: float, step: dict[str, Any], beyond: int) -> None:
        self.steps.append(step)
        if self.left_after_failure is None:
            if step["sustained"]:
                self.saturation = rate
                return
            self.left_after_failure = beyond
        else:
            self.left_after_failure -= 1
        if self.left_after_failure == 0:
            self.left_after_failure = -1

    def result(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "url": self.config.url,
            "saturation_rps": self.saturation,
            "steps": self.steps,
        }


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
    targets: Sequence[tuple[str, RunConfig]],
    sweep: SweepConfig,
    bodies: list[bytes],
    workload: dict[str, Any],
    on_step: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run each rate for each (label, config) target in turn; every target's steps and saturation."""
    series = [Series(label, config) for label, config in targets]
    for rate in sweep.rates:
        for one in series:
            if one.done:
                continue
            outcome = asyncio.run(run_open_loop(replace(one.config, rate=rate), bodies))
            step = summarise(outcome, workload)
            step["sustained"], step["verdict"] = sustained(step, sweep.slo_p99_ms)
            step.pop("workload")  # once, at the top of the result
            one.record(rate, step, sweep.beyond)
            if on_step is not None:
                on_step(one.label, step)
            time.sleep(sweep.pause_s if step["sustained"] else sweep.pause_after_failure_s)
        if all(one.done for one in series):
            break
    return {
        "step_duration_s": targets[0][1].duration,
        "slo_p99_ms": sweep.slo_p99_ms,
        "workload": workload,
        "series": [one.result() for one in series],
    }
