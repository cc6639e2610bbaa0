"""One load-test invocation: prepare the bodies, run (or sweep), print, write JSON and PNG files."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from service.contracts.feature_spec import FeatureSpec
from service.loadtest.plots import plot_run, plot_sweep
from service.loadtest.report import format_summary, summarise
from service.loadtest.runner import Outcome, RunConfig, SwapPlan, run_open_loop
from service.loadtest.sweep import SweepConfig, run_sweep
from service.loadtest.workload import Tables, Workload, WorkloadConfig
from service.model_store import ModelStore


def model_spec(store: Path, model: str | None) -> FeatureSpec | None:
    """The feature spec of ``model``'s current version in ``store`` (None if the store has no model)."""
    models = ModelStore(store).models()
    if model is None:
        if len(models) != 1:
            if models:
                raise ValueError(
                    f"{store} holds several models ({', '.join(models)}): pass --model"
                )
            return None
        model = models[0]
    versions = ModelStore(store).versions(model)
    version = ModelStore(store).current(model) or (versions[-1] if versions else None)
    if version is None:
        raise ValueError(f"model {model!r} has no version in {store}")
    return ModelStore(store).read_manifest(model, version).feature_spec


@dataclass
class LoadTestSession:
    base: RunConfig
    bodies: list[bytes]
    workload: dict[str, Any]
    out: Path
    title: str
    slo_p99_ms: float | None = None
    beyond: int = 1
    stream: TextIO = sys.stdout

    @classmethod
    def from_args(cls, args: argparse.Namespace, admin_token: str | None) -> LoadTestSession:
        tables = Tables.read(args.users, args.items, args.user_key, args.item_key)
        config = WorkloadConfig(
            mode=args.mode,
            candidates=args.candidates,
            spread=args.spread,
            max_candidates=args.max_candidates,
            zipf=args.zipf,
            columnar=args.columnar,
            seed=args.seed,
        )
        workload = Workload(tables, config, model_spec(args.store, args.model))
        bodies = workload.encoded(args.pool)
        swap = None
        if args.swap_at is not None and admin_token:
            swap = SwapPlan(at=args.swap_at, token=admin_token, version=args.swap_version)
        base = RunConfig(
            url=args.url.rstrip("/"),
            rate=args.rate,
            duration=args.duration,
            max_requests=args.max_requests,
            timeout=args.timeout,
            max_in_flight=args.max_in_flight,
            swap=swap,
        )
        description = workload.describe()
        cands = description["candidates"]
        title = args.title or (
            f"{base.url} /rank, {args.mode}, candidates p50 {cands['p50']:g} (p90 {cands['p90']:g})"
        )
        return cls(base, bodies, description, args.out, title, args.slo_p99_ms, args.beyond)

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _tick(self, outcome: Outcome, elapsed: float) -> None:
        if not self.stream.isatty():
            return
        done = outcome.ok + sum(n for s, n in outcome.statuses.items() if s != "200")
        self.stream.write(
            f"\r  {elapsed:5.1f} s  sent {outcome.sent}  answered {done}  ok {outcome.ok}   "
        )
        self.stream.flush()

    def run(self) -> list[Path]:
        """One fixed-rate run: print the summary, write run.json and run.png."""
        self._say(f"{self.base.url}: {self.base.rate:g} req/s for {self.base.duration:g} s ...")
        outcome = asyncio.run(run_open_loop(self.base, self.bodies, self._tick))
        if self.stream.isatty():
            self.stream.write("\n")
        summary = summarise(outcome, self.workload)
        self._say(format_summary(summary))
        return self._write("run", summary, lambda path: plot_run(summary, path, self.title))

    def sweep(
        self, rates: Sequence[float], baseline_url: str | None = None, labels: Sequence[str] = ()
    ) -> list[Path]:
        """A rate sweep (against ``baseline_url`` too, alternating step by step): one line per step,
        the saturation points, sweep.json and sweep.png."""
        base = replace(self.base, swap=None)
        targets = [(labels[0] if labels else "target", base)]
        if baseline_url is not None:
            label = labels[1] if len(labels) > 1 else "baseline"
            targets.insert(0, (label, replace(base, url=baseline_url.rstrip("/"))))
        shown = ", ".join(f"{label} {config.url}" for label, config in targets)
        self._say(f"sweep over {', '.join(f'{r:g}' for r in rates)} req/s: {shown}")
        width = max(len(label) for label, _ in targets)

        def step(label: str, summary: dict[str, Any]) -> None:
            lat = summary["latency_ms"]
            p99 = "-" if lat["p99"] is None else f"{lat['p99']:.1f}"
            p50 = "-" if lat["p50"] is None else f"{lat['p50']:.1f}"
            self._say(
                f"  {label:<{width}}  {summary['offered_rate']:>6g} req/s offered "
                f"{summary['throughput_rps']:7.1f} answered  p50 {p50:>7} ms  p99 {p99:>7} ms  "
                f"errors {summary['errors'] or '-'}  {summary['verdict']}"
            )

        sweep_config = SweepConfig(rates, self.slo_p99_ms, self.beyond)
        result = run_sweep(targets, sweep_config, self.bodies, self.workload, on_step=step)
        saturations = {s["label"]: s["saturation_rps"] for s in result["series"]}
        for label, rate in saturations.items():
            self._say(
                f"saturation of {label}: "
                + (f"{rate:g} req/s sustained" if rate is not None else "not even the first rate")
            )
        if baseline_url is not None and None not in saturations.values():
            baseline, target = (saturations[label] for label, _ in targets)
            self._say(
                f"saturation ratio {targets[1][0]} / {targets[0][0]}: {target / baseline:.2f}x"
            )
        return self._write("sweep", result, lambda path: plot_sweep(result, path, self.title))

    def _write(self, stem: str, data: dict[str, Any], plot: Any) -> list[Path]:
        self.out.mkdir(parents=True, exist_ok=True)
        json_path, png_path = self.out / f"{stem}.json", self.out / f"{stem}.png"
        json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        plot(png_path)
        return [json_path, png_path]
