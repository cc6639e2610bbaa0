"""``fusion search``: choose fusion weights offline by replaying logged requests (seed 004)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

from service.contracts.fusion import Transform
from service.errors import ModelLoadError
from service.model_store import ModelStoreError

DEFAULT_TARGET = "ndcg@10:click,ndcg@10:watch_time"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fusion = subparsers.add_parser("fusion", help="offline fusion search over logged requests")
    actions = fusion.add_subparsers(dest="action", required=True, metavar="ACTION")
    search = actions.add_parser(
        "search",
        help="replay logged requests through a published model and choose fusion weights",
        description="Replays the requests of --data (grouped by its 'group' column) through the "
        "published MODEL, scores fusion candidates on --target, writes fusion.yaml (the version's "
        "presets plus the chosen one), admin_request.json (the body of POST /admin/models/fusion), "
        "report.json and pareto.png into --out.",
    )
    search.add_argument("model", help="model name in the store")
    search.add_argument("--store", type=Path, default=Path("models_store"), help="model store root")
    search.add_argument("--version", help="version to replay (default: current)")
    search.add_argument("--data", type=Path, required=True, help="data directory or view YAML")
    search.add_argument(
        "--split", choices=("validation", "test", "all"), default="validation",
        help="requests to replay: a part of the model's own split (default validation) or all",
    )  # fmt: skip
    search.add_argument(
        "--target", default=DEFAULT_TARGET,
        help="metrics with weights, e.g. 'ndcg@10:click=1,top@10:watch_time=0.5' "
        f"(ndcg@K:LABEL or top@K:LABEL; default {DEFAULT_TARGET})",
    )  # fmt: skip
    search.add_argument(
        "--objectives",
        help="objectives to fuse with transforms, e.g. 'click,ctcvr,watch_time:log1p' "
        "(default: the default preset's terms)",
    )
    search.add_argument(
        "--kind", choices=("weighted_sum", "power_product", "both"), default="weighted_sum"
    )
    search.add_argument("--method", choices=("grid", "coordinate"), default="grid")
    search.add_argument(
        "--grid", default="0,0.25,0.5,1,2,4", help="weights tried per term (the first stays 1)"
    )
    search.add_argument(
        "--pareto", help="two metrics to plot, 'X,Y' (default: the target's first two)"
    )
    search.add_argument(
        "--holdout", type=float, default=0.5, help="share of requests kept to report on (0.5)"
    )
    search.add_argument("--seed", type=int, default=0, help="seed of the search/holdout split")
    search.add_argument("--preset", default="searched", help="name of the new preset")
    search.add_argument(
        "--make-default", action="store_true", help="make the new preset the default"
    )
    search.add_argument("--out", type=Path, default=Path("fusion-search"), help="output folder")
    search.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    search.set_defaults(func=_search)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _objectives(text: str | None) -> dict[str, Transform]:
    if not text:
        return {}
    out: dict[str, Transform] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, transform = part.partition(":")
        transform = transform or "identity"
        if transform not in get_args(Transform):
            raise ValueError(
                f"--objectives {part!r}: transform must be one of {get_args(Transform)}"
            )
        out[name] = transform  # type: ignore[assignment]
    return out


def _search(args: argparse.Namespace) -> int:
    from training.fusion.run import SearchPlan, run_search
    from training.fusion.targets import parse_target

    try:
        pareto = tuple(p.strip() for p in args.pareto.split(",")) if args.pareto else None
        if pareto is not None and len(pareto) != 2:
            return _fail(f"--pareto {args.pareto!r}: give two metrics, X,Y")
        plan = SearchPlan(
            store=args.store,
            model=args.model,
            data=args.data,
            out=args.out,
            target=parse_target(args.target),
            version=args.version,
            split=args.split,
            kinds=("weighted_sum", "power_product") if args.kind == "both" else (args.kind,),
            method=args.method,
            grid_values=tuple(float(v) for v in args.grid.split(",") if v.strip()),
            objectives=_objectives(args.objectives),
            pareto=pareto,  # type: ignore[arg-type]
            holdout=args.holdout,
            seed=args.seed,
            preset_name=args.preset,
            make_default=args.make_default,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
        report = run_search(plan)
    except (ValueError, FileNotFoundError, ModelStoreError, ModelLoadError) as exc:
        return _fail(str(exc))
    _print(report, args.out)
    return 0


def _print(report: dict[str, Any], out: Path) -> None:
    """The report on a terminal; its files are named within ``out``."""
    requests = report["requests"]
    print(f"{report['model']} {report['version']}: {report['candidates']} candidates on "
          f"{requests['search']} requests, reported on {requests['holdout']} held-out requests")  # fmt: skip
    chosen, default = report["chosen"], report["default"]
    terms = ", ".join(f"{k}={v['weight']:g}" for k, v in chosen["spec"]["terms"].items())
    print(f"chosen {chosen['spec']['kind']}: {terms}")
    if chosen["kept_default"]:
        print("no candidate beat the default preset on the search requests: it is kept")
    held = report["holdout"]
    for name in default["search"]:
        line = f"  {name:<24} default {default['search'][name]:.4f}  chosen {chosen['search'][name]:.4f}"
        if held:
            line += f"   held out: {held['default'][name]:.4f} -> {held['chosen'][name]:.4f}"
        print(line)
    if held:
        print(f"target on held-out requests: {held['target']:.4f} (default preset = "
              f"{sum(report['target'].values()):.4f})")  # fmt: skip
    files = [out / name for name in report["files"]]
    print("wrote " + ", ".join(map(str, files)) + f" and {out / 'report.json'}")
    print(f"apply without a redeploy: POST /admin/models/fusion with the body of "
          f"{files[1]}")  # fmt: skip
