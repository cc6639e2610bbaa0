"""Reproduce the MMoE paper's synthetic experiment (Ma et al., KDD 2018, section 5.1; seed 002).

Two regression tasks from eqs. 2-4 with task correlation rho; input dimension 100; OMoE and MMoE with
8 single-layer experts of 16 units and single-layer towers of 8; Shared-Bottom with one bottom layer
sized for the same parameter budget; Adam; many independent runs (fresh data and initialisation each).
We add CGC and PLE (PLE paper, Tang et al., RecSys 2020) with 8 experts in all per level.

The paper reports (figures 4 and 5): every model does better on more correlated tasks; MMoE's loss
barely changes with correlation while OMoE and Shared-Bottom degrade as it drops; MoE models vary less
across runs than Shared-Bottom.

    python benchmarks/mmoe_synthetic.py --runs 10 --out docs/benchmarks/mmoe_synthetic

Writes results.json, table.md, loss_curves.png, final_loss.png and paired_ratio.png into --out;
``--replot`` redraws the table and plots from an existing results.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from service.contracts.tasks import TaskSpec
from training.data.synthetic import generate_synthetic
from training.models import ArchConfig, GroupLayout, InputLayout, MultiTaskRanker
from training.train.progress import on_terminal

TASKS = [TaskSpec(id="y1", type="regression"), TaskSpec(id="y2", type="regression")]
PAPER_EXPERTS, PAPER_EXPERT_UNITS, PAPER_TOWER_UNITS = 8, 16, 8
ARCHS = ("shared_bottom", "omoe", "mmoe", "cgc", "ple")


@dataclass(frozen=True)
class Setting:
    dim: int
    train_rows: int
    test_rows: int
    epochs: int
    batch_size: int
    lr: float


def arch_config(name: str, dim: int) -> ArchConfig:
    """The paper's shapes; Shared-Bottom's bottom width matches MMoE's parameter count."""
    common = {"name": name, "tower_hidden": (PAPER_TOWER_UNITS,)}
    if name == "shared_bottom":
        width = shared_bottom_width(dim)
        return ArchConfig.model_validate(common | {"expert_hidden": (width,)})
    if name in ("cgc", "ple"):  # 4 shared + 2 per task = 8 experts per extraction level
        return ArchConfig.model_validate(
            common
            | {
                "expert_hidden": (PAPER_EXPERT_UNITS,),
                "n_experts": 4,
                "n_task_experts": 2,
                "n_levels": 1 if name == "cgc" else 2,
            }
        )
    return ArchConfig.model_validate(
        common | {"expert_hidden": (PAPER_EXPERT_UNITS,), "n_experts": PAPER_EXPERTS}
    )


def build(name: str, dim: int) -> MultiTaskRanker:
    layout = InputLayout(item=GroupLayout((), (), dim))
    return MultiTaskRanker(layout, TASKS, arch_config(name, dim))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def shared_bottom_width(dim: int) -> int:
    """Smallest bottom width whose model has at least MMoE's parameter count."""
    target = count_parameters(build("mmoe", dim))
    width = 1
    while True:
        arch = ArchConfig(name="shared_bottom", expert_hidden=(width,), tower_hidden=(8,))
        model = MultiTaskRanker(InputLayout(item=GroupLayout((), (), dim)), TASKS, arch)
        if count_parameters(model) >= target:
            return width
        width += 1


def run_once(
    name: str, rho: float, seed: int, setting: Setting
) -> tuple[list[float], list[float], float]:
    """One independent run: fresh data and initialisation. Returns (train curve, test curve, final)."""
    x, y1, y2 = generate_synthetic(
        rho=rho, rows=setting.train_rows + setting.test_rows, seed=seed, dim=setting.dim
    )
    features = torch.from_numpy(np.asarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.stack([y1, y2], axis=1).astype(np.float32))
    n = setting.train_rows
    torch.manual_seed(seed)
    model = build(name, setting.dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=setting.lr)
    generator = torch.Generator().manual_seed(seed)
    train_curve: list[float] = []
    test_curve: list[float] = []
    for _ in range(setting.epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, setting.batch_size):
            rows = order[start : start + setting.batch_size]
            pred = model({"item_num": features[rows]}).pred  # (B, 2)
            loss = ((pred - labels[rows]) ** 2).mean(dim=0).sum()  # sum of the two tasks' MSE
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss) * len(rows)
        train_curve.append(total / n)
        test_curve.append(evaluate(model, features[n:], labels[n:]))
    return train_curve, test_curve, test_curve[-1]


@torch.no_grad()
def evaluate(model: MultiTaskRanker, features: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    pred = model({"item_num": features}).pred
    return float(((pred - labels) ** 2).mean(dim=0).sum())


def summarise(finals: list[float]) -> dict[str, float]:
    values: npt.NDArray[np.float64] = np.asarray(finals, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def write_table(results: dict[str, dict[str, dict[str, object]]], rhos: list[float]) -> str:
    header = "| model | params | " + " | ".join(f"rho={r} mean ± std (min)" for r in rhos) + " |"
    lines = [header, "|---|---|" + "---|" * len(rhos)]
    for name, by_rho in results.items():
        cells = []
        for rho in rhos:
            s = by_rho[str(rho)]["summary"]
            assert isinstance(s, dict)
            cells.append(f"{s['mean']:.3f} ± {s['std']:.3f} ({s['min']:.3f})")
        params = by_rho[str(rhos[0])]["params"]
        lines.append(f"| {name} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_ratios(
    results: dict[str, dict[str, dict[str, object]]], rhos: list[float]
) -> dict[str, dict[str, dict[str, float]]]:
    """Paired views of the finals: run ``r`` of every model and rho shares one seed, hence the same
    u1, u2, alpha, beta and x (only w2 moves with rho), so per-run ratios cancel the data's scale.

    ``vs_rho1``: geometric mean over runs of loss(rho) / loss(rho = 1) for each model (the paper's
    "degrades as correlation drops"); ``vs_models``: geometric mean over runs of a model's loss over
    the geometric mean of all models' losses on the same run and rho (< 1: better than the field).
    """
    finals = {
        name: {str(rho): np.asarray(by_rho[str(rho)]["finals"], dtype=np.float64) for rho in rhos}
        for name, by_rho in results.items()
    }
    names = list(finals)
    out: dict[str, dict[str, dict[str, float]]] = {"vs_rho1": {}, "vs_models": {}}
    top = str(max(rhos))
    for name in names:
        out["vs_rho1"][name] = {
            str(rho): float(np.exp(np.log(finals[name][str(rho)] / finals[name][top]).mean()))
            for rho in rhos
        }
    for rho in rhos:
        stacked = np.stack([finals[name][str(rho)] for name in names])  # (models, runs)
        field = np.exp(np.log(stacked).mean(axis=0))
        for k, name in enumerate(names):
            ratio = float(np.exp(np.log(stacked[k] / field).mean()))
            out["vs_models"].setdefault(name, {})[str(rho)] = ratio
    return out


def write_paired_table(paired: dict[str, dict[str, dict[str, float]]], rhos: list[float]) -> str:
    top = max(rhos)
    lines = [
        "| model | "
        + " | ".join(f"loss(rho={r}) / loss(rho={top})" for r in rhos)
        + " | "
        + " | ".join(f"vs field, rho={r}" for r in rhos)
        + " |",
        "|---|" + "---|" * (2 * len(rhos)),
    ]
    for name in paired["vs_rho1"]:
        cells = [f"{paired['vs_rho1'][name][str(r)]:.3f}" for r in rhos]
        cells += [f"{paired['vs_models'][name][str(r)]:.3f}" for r in rhos]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, dict[str, object]]], rhos: list[float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rhos), figsize=(5 * len(rhos), 4), sharey=True)
    for ax, rho in zip(np.atleast_1d(axes), rhos, strict=True):
        for name, by_rho in results.items():
            curves = np.asarray(by_rho[str(rho)]["test_curves"], dtype=np.float64)
            typical = np.exp(np.log(curves).mean(axis=0))  # a few hard seeds swamp the mean
            ax.plot(np.arange(1, curves.shape[1] + 1), typical, label=name)
        ax.set_title(f"task correlation rho = {rho}")
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
    np.atleast_1d(axes)[0].set_ylabel("test loss (MSE y1 + y2), geo. mean of runs")
    np.atleast_1d(axes)[-1].legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(rhos), figsize=(5 * len(rhos), 4), sharey=True)
    for ax, rho in zip(np.atleast_1d(axes), rhos, strict=True):
        names = list(results)
        finals = [results[n][str(rho)]["finals"] for n in names]
        ax.boxplot(finals, tick_labels=names)
        ax.set_title(f"final test loss over runs, rho = {rho}")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(out / "final_loss.png", dpi=120)
    plt.close(fig)

    top = str(max(rhos))
    lower = [rho for rho in rhos if str(rho) != top]
    fig, axes = plt.subplots(1, len(lower), figsize=(5 * len(lower), 4), sharey=True, squeeze=False)
    for ax, rho in zip(axes[0], lower, strict=True):
        names = list(results)
        ratios = [
            np.asarray(results[n][str(rho)]["finals"], dtype=np.float64)
            / np.asarray(results[n][top]["finals"], dtype=np.float64)
            for n in names
        ]
        ax.boxplot(ratios, tick_labels=names)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_title(f"per run: loss(rho={rho}) / loss(rho={top})")
        ax.tick_params(axis="x", rotation=30)
    axes[0][0].set_ylabel("> 1: worse on less correlated tasks")
    fig.tight_layout()
    fig.savefig(out / "paired_ratio.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="independent runs per model and rho")
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.5, 0.9, 1.0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--train-rows", type=int, default=10_000)
    parser.add_argument("--test-rows", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/mmoe_synthetic"))
    parser.add_argument(
        "--replot", action="store_true", help="redraw table and plots from --out/results.json"
    )
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        write_outputs(saved["results"], saved["settings"], saved["settings"]["rhos"], args.out)
        return
    torch.set_num_threads(args.threads)
    setting = Setting(
        args.dim, args.train_rows, args.test_rows, args.epochs, args.batch_size, args.lr
    )
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, object]]] = {}
    jobs = [(name, rho) for name in args.archs for rho in args.rhos]
    started = time.perf_counter()
    with tqdm(
        total=len(jobs) * args.runs, desc="runs", unit="run", disable=not on_terminal()
    ) as bar:
        for name, rho in jobs:
            trains, tests, finals = [], [], []
            for run in range(args.runs):
                train_curve, test_curve, final = run_once(name, rho, 1000 + run, setting)
                trains.append(train_curve)
                tests.append(test_curve)
                finals.append(final)
                bar.set_postfix(model=name, rho=rho, loss=f"{final:.3f}")
                bar.update()
            results.setdefault(name, {})[str(rho)] = {
                "params": count_parameters(build(name, args.dim)),
                "summary": summarise(finals),
                "finals": finals,
                "train_curves": trains,
                "test_curves": tests,
            }
    meta = vars(args) | {"out": str(args.out), "seconds": round(time.perf_counter() - started, 1)}
    write_outputs(results, meta, args.rhos, args.out)


def write_outputs(
    results: dict[str, dict[str, dict[str, object]]],
    meta: dict[str, object],
    rhos: list[float],
    out: Path,
) -> None:
    paired = paired_ratios(results, rhos)
    meta = {**meta, "paired": paired}
    (out / "results.json").write_text(json.dumps({"settings": meta, "results": results}))
    table = write_table(results, rhos) + "\n" + write_paired_table(paired, rhos)
    (out / "table.md").write_text(table)
    plot(results, rhos, out)
    print(table)
    print(f"wrote {out}/results.json, table.md, loss_curves.png, final_loss.png, paired_ratio.png")


if __name__ == "__main__":
    main()
