"""PNG plots of load-test results: percentiles over time (with the model swap), latency vs offered rate.

matplotlib comes with the ``loadtest`` extra (``pip install 'mtrank[loadtest]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SERIES = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99.9"), ("max", "max"))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(summary: dict[str, Any], path: Path, title: str) -> None:
    """Latency percentiles per interval over time, answered vs offered rate below, the swap marked."""
    plt = _pyplot()
    rows = summary["timeline"]
    step = summary.get("interval_s", 1.0) or 1.0
    fig, (lat, rate) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(3, 1.3))
    t = [row["t"] + step / 2 for row in rows]  # each point at the middle of its interval
    for key, label in SERIES:
        points = [(row["t"] + step / 2, row[key]) for row in rows if key in row]
        if points:
            xs, ys = zip(*points, strict=True)
            lat.plot(xs, ys, label=label, linewidth=1.2)
    lat.set_yscale("log")
    lat.set_ylabel("latency from intended start (ms)")
    lat.grid(True, which="both", alpha=0.3)
    rate.plot(t, [row["sent"] / step for row in rows], label="offered", color="grey")
    rate.plot(t, [row["ok"] / step for row in rows], label="answered 200", color="tab:green")
    rate.plot(t, [row["errors"] / step for row in rows], label="failed", color="tab:red")
    rate.set_ylabel("req/s")
    rate.set_xlabel("seconds since start")
    rate.grid(True, alpha=0.3)
    swap = summary.get("swap")
    if swap is not None:
        for axis in (lat, rate):
            axis.axvspan(swap["started_s"], max(swap["finished_s"], swap["started_s"] + 0.1),
                         color="tab:purple", alpha=0.2)  # fmt: skip
        lat.annotate(
            f"model swap ({swap['status']})",
            xy=(swap["started_s"], 0.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, 6),
            textcoords="offset points",
            color="tab:purple",
        )
    lat.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    rate.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    lat.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(sweep: dict[str, Any], path: Path, title: str) -> None:
    """Latency percentiles against offered rate; answered rate against offered; saturation marked.

    One target: every percentile. Several (a baseline and a target): p50 and p99 of each, one colour
    per target, so they compare at a glance."""
    plt = _pyplot()
    series = sweep["series"]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(12, 4.4))
    shown = SERIES if len(series) == 1 else (("p50", "p50"), ("p99", "p99"))
    styles = {"p50": "-", "p90": "-", "p99": "--", "p99.9": "-", "max": "-"}
    for index, one in enumerate(series):
        steps = one["steps"]
        offered = [s["offered_rate"] for s in steps]
        colour = None if len(series) == 1 else f"C{index}"
        for key, label in shown:
            ys = [s["latency_ms"][key] for s in steps]
            name = label if len(series) == 1 else f"{one['label']} {label}"
            lat.plot(offered, [float("nan") if y is None else y for y in ys], marker="o",
                     linestyle=styles[key] if colour else "-", color=colour, label=name)  # fmt: skip
        answered = [s["throughput_rps"] for s in steps]
        saturation = one.get("saturation_rps")
        reached = f", saturation ≈ {saturation:g} req/s" if saturation is not None else ""
        thr.plot(offered, answered, "o-", color=f"C{index}", label=f"{one['label']}{reached}")
        if saturation is not None:
            for axis in (lat, thr):
                axis.axvline(saturation, color=f"C{index}", linestyle=":", linewidth=1)
    rates = sorted({s["offered_rate"] for one in series for s in one["steps"]})
    thr.plot(rates, rates, "--", color="grey", label="offered")
    lat.set_yscale("log")
    lat.set_xlabel("offered rate (req/s)")
    lat.set_ylabel("latency from intended start (ms)")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=8)
    thr.set_xlabel("offered rate (req/s)")
    thr.set_ylabel("answered with 200 (req/s)")
    thr.grid(True, alpha=0.3)
    thr.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
