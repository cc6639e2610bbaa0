"""``fusion search`` end to end: replay, search on some requests, report on the others, write a
fusion config the admin API can apply (``POST /admin/models/fusion``) and a Pareto plot."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from service.contracts.fusion import (
    FUSION_FILE,
    FusionConfig,
    FusionKind,
    FusionSpec,
    Transform,
    fuse,
)
from training.fusion.replay import Floats, Replay, Split, replay
from training.fusion.report import plot_front
from training.fusion.search import Candidate, Terms, coordinate_ascent, grid, pareto_front
from training.fusion.targets import Evaluator, Metric, parse_metric, target_value

logger = logging.getLogger(__name__)

ADMIN_REQUEST_FILE = "admin_request.json"


@dataclass(frozen=True)
class SearchPlan:
    store: Path
    model: str
    data: Path
    out: Path
    target: list[tuple[Metric, float]]
    version: str | None = None
    split: Split = "validation"
    kinds: tuple[FusionKind, ...] = ("weighted_sum",)
    method: Literal["grid", "coordinate"] = "grid"
    grid_values: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    objectives: dict[str, Transform] = field(default_factory=dict)  # empty: the default preset's
    pareto: tuple[str, str] | None = None  # two metric names; None: the target's first two
    holdout: float = 0.5
    seed: int = 0
    preset_name: str = "searched"
    make_default: bool = False
    progress: bool = False


def contract_scores(spec: FusionSpec, objectives: Mapping[str, Floats], index: Any) -> Floats:
    """Fused scores of every row by the contract's ``fuse``, request by request (as /rank)."""
    out = np.zeros(len(next(iter(objectives.values()))))
    for request in index:
        rows = request[request >= 0]
        out[rows] = fuse(spec, {k: v[rows] for k, v in objectives.items()})
    return out


def _transforms(
    plan: SearchPlan, default: FusionSpec, objectives: Sequence[str]
) -> dict[str, Transform]:
    chosen = plan.objectives or {k: t.transform for k, t in default.terms.items()}
    unknown = sorted(set(chosen) - set(objectives))
    if unknown:
        raise ValueError(f"objectives {unknown} are not served by this model: {list(objectives)}")
    return dict(chosen)


def run_search(plan: SearchPlan) -> dict[str, Any]:
    """Search, write ``fusion.yaml``, ``admin_request.json``, ``report.json``, ``pareto.png``."""
    if not 0.0 <= plan.holdout < 1.0:
        raise ValueError(f"holdout {plan.holdout} must lie in [0, 1)")
    metrics = [m for m, _ in plan.target]
    pareto = plan.pareto or ((metrics[0].name, metrics[1].name) if len(metrics) > 1 else None)
    if pareto is None:
        raise ValueError("a Pareto plot needs two metrics: give two target metrics or --pareto X,Y")
    metrics += [parse_metric(name) for name in pareto]
    logged = replay(plan.store, plan.model, plan.data, version=plan.version, split=plan.split,
                    progress=plan.progress)  # fmt: skip
    order = np.random.default_rng(plan.seed).permutation(logged.requests)
    n_hold = round(logged.requests * plan.holdout)
    search, hold = logged.subset(np.sort(order[n_hold:])), logged.subset(np.sort(order[:n_hold]))
    if search.requests < 2:
        raise ValueError(f"only {search.requests} requests to search on; replay more")
    default = logged.fusion.preset()
    transforms = _transforms(plan, default, list(logged.objectives))
    epsilon = default.epsilon
    terms = Terms.build(search.objectives, search.index, transforms)
    judge = Evaluator(search.index, search.labels, metrics)
    reference = judge(contract_scores(default, search.objectives, search.index))
    evaluated: list[tuple[Candidate, dict[str, float], float]] = []

    def score(candidate: Candidate) -> float:
        values = judge(terms.scores(candidate, epsilon))
        value = target_value(values, reference, plan.target)
        evaluated.append((candidate, values, value))
        return value

    if plan.method == "grid":
        for candidate in grid(plan.kinds, len(terms.names), plan.grid_values):
            score(candidate)
    else:
        for kind in plan.kinds:
            start = [default.terms[n].weight if n in default.terms else 1.0 for n in terms.names]
            first = start[0] if start[0] > 0 else 1.0
            coordinate_ascent(score, Candidate(kind, tuple(w / first for w in start)))
    best = max(evaluated, key=lambda e: e[2])
    chosen = best[0].spec(terms, epsilon)
    check = judge(contract_scores(chosen, search.objectives, search.index))
    if any(abs(check[k] - best[1][k]) > 1e-9 for k in check):  # the contract orders the same way
        raise RuntimeError(f"fast scoring disagrees with the fusion contract: {check} vs {best[1]}")
    kept = best[2] <= target_value(reference, reference, plan.target) + 1e-12
    if kept:  # nothing beat the version's default on the search requests: keep it
        chosen, best = (
            default,
            (best[0], reference, target_value(reference, reference, plan.target)),
        )
    holdout = _holdout(hold, metrics, plan.target, default, chosen)
    config = _config(logged, plan, chosen)
    points = np.array([[v[pareto[0]], v[pareto[1]]] for _, v, _ in evaluated])
    front = pareto_front(points)
    plan.out.mkdir(parents=True, exist_ok=True)
    fusion_path = plan.out / FUSION_FILE
    fusion_path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), "utf-8")
    admin = {"version": logged.version, "fusion": config.model_dump(mode="json")}
    (plan.out / ADMIN_REQUEST_FILE).write_text(json.dumps(admin, indent=1) + "\n", "utf-8")
    plot = plot_front(points, front, (reference[pareto[0]], reference[pareto[1]]),
                      (best[1][pareto[0]], best[1][pareto[1]]), pareto, plan.out / "pareto.png")  # fmt: skip
    report = {
        "model": logged.model,
        "version": logged.version,
        "requests": {"search": search.requests, "holdout": hold.requests, "split": plan.split},
        "target": {m.name: w for m, w in plan.target},
        "method": plan.method,
        "candidates": len(evaluated),
        "default_preset": logged.fusion.default,
        "default": {"spec": default.model_dump(mode="json"), "search": reference},
        "chosen": {
            "preset": plan.preset_name,
            "spec": chosen.model_dump(mode="json"),
            "search": best[1],
            "target": best[2],
            "kept_default": kept,
        },
        "holdout": holdout,
        "pareto": {
            "x": pareto[0],
            "y": pareto[1],
            "front": [
                {
                    "spec": evaluated[i][0].spec(terms, epsilon).model_dump(mode="json"),
                    **{m: evaluated[i][1][m] for m in pareto},
                }
                for i in front
            ],
        },
        # names within the report's own folder: no path of the machine that wrote it
        "files": [fusion_path.name, ADMIN_REQUEST_FILE, plot.name],
    }
    (plan.out / "report.json").write_text(json.dumps(report, indent=1) + "\n", "utf-8")
    return report


def _holdout(
    hold: Replay,
    metrics: list[Metric],
    target: list[tuple[Metric, float]],
    default: FusionSpec,
    chosen: FusionSpec,
) -> dict[str, Any]:
    """Default and chosen presets on requests the search never saw (scored by the contract)."""
    if hold.requests == 0:
        return {}
    judge = Evaluator(hold.index, hold.labels, metrics)
    before = judge(contract_scores(default, hold.objectives, hold.index))
    after = judge(contract_scores(chosen, hold.objectives, hold.index))
    return {"default": before, "chosen": after, "target": target_value(after, before, target)}


def _config(logged: Replay, plan: SearchPlan, chosen: FusionSpec) -> FusionConfig:
    presets = {**logged.fusion.presets, plan.preset_name: chosen}
    default = plan.preset_name if plan.make_default else logged.fusion.default
    config = FusionConfig.model_validate({"default": default, "presets": presets})
    config.validate_objectives(list(logged.objectives))
    return config
