"""Every benchmark script runs end to end at a tiny size and prints or writes its figures.

The figures themselves are not judged here (speed targets live in the scripts, run on demand);
these tests keep the scripts from rotting: they must start, measure, compare and report.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.published_model import PublishedModel
from tests.fixtures.trained_run import TrainedRun

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, timeout: float = 240) -> str:
    command = [sys.executable, str(ROOT / "benchmarks" / name), *args]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_transform_speed_compares_vectorized_with_per_row(tmp_path: Path) -> None:
    out = run_script("transform_speed.py", "--rows", "200", "--repeats", "1")
    ratios = re.findall(r"(\d+\.\d)x$", out, flags=re.MULTILINE)
    assert ratios, out  # one lists/naive ratio per scenario, printed after arrays matched
    assert all(float(r) > 0 for r in ratios)


@pytest.mark.redis
def test_feature_store_fetch_compares_layouts_and_cleans_up(redis_server: str) -> None:
    import redis

    out = run_script(
        "feature_store_fetch.py", "--redis", redis_server, "--entities", "20", "--iterations", "15"
    )
    assert re.search(r"^\s+20\s+mtrank\s+[\d.]+\s+[\d.]+$", out, flags=re.MULTILINE), out
    assert "(feast-style / mtrank)" in out
    client = redis.Redis.from_url(redis_server)
    try:
        assert list(client.scan_iter(match="bench-*")) == []  # its keys are gone
    finally:
        client.close()


def test_parse_vs_score_reports_both_costs(published_store: PublishedModel) -> None:
    out = run_script(
        "parse_vs_score.py",
        "--store", str(published_store.store_dir), "--model", published_store.model,
        "--candidates", "50", "--repeat", "3",
    )  # fmt: skip
    assert "validate_json" in out
    assert "score" in out


def test_front_door_overhead_compares_the_app_with_and_without_it(
    published_store: PublishedModel,
) -> None:
    out = run_script(
        "front_door_overhead.py",
        "--store", str(published_store.store_dir), "--model", published_store.model,
        "--candidates", "10", "--requests", "5", "--rounds", "2",
    )  # fmt: skip
    assert "without front door" in out
    assert re.search(r"ratio \d+\.\d+ \(with / without\)", out), out


def test_loadtest_smoke_against_a_running_service(
    uvicorn_service: str, published_store: PublishedModel, tmp_path: Path
) -> None:
    png = tmp_path / "latency.png"
    out = run_script(
        "loadtest.py", "--url", uvicorn_service, "--baseline-url", uvicorn_service, "--smoke",
        "--store", str(published_store.store_dir), "--model", published_store.model,
        "--png", str(png),
    )  # fmt: skip
    assert len(re.findall(r"^\s+p99_ms: [\d.]+$", out, flags=re.MULTILINE)) == 2, out
    assert re.search(
        r"^mtrank / baseline: p50_ms [\d.]+x, p99_ms [\d.]+x, throughput_rps", out, re.M
    )
    assert png.stat().st_size > 0


def test_swap_latency_smoke_compares_every_phase_with_steady_state(
    published_store: PublishedModel, tmp_path: Path
) -> None:
    png = tmp_path / "swap.png"
    out = run_script(
        "swap_latency.py", "--store", str(published_store.store_dir),
        "--model", published_store.model, "--smoke", "--png", str(png),
    )  # fmt: skip
    for phase in ("swap", "canary", "shadow"):
        assert re.search(rf"^p99 {phase} / steady: [\d.]+x$", out, re.MULTILINE), out
    assert re.search(r"^server RSS \(MiB\): before [\d.]+ .*, after [\d.]+", out, re.M), out
    assert re.search(r"^RSS after everything was undone .*: [+-][\d.]+ MiB", out, re.M), out
    assert re.search(r"^a swap \(admin load answered\): median \d+ ms", out, re.M), out
    assert "responses naming a version not chosen at that time: 0" in out
    assert png.stat().st_size > 0


def test_mmoe_synthetic_writes_table_results_and_plots(tmp_path: Path) -> None:
    run_script(
        "mmoe_synthetic.py", "--runs", "2", "--epochs", "1", "--train-rows", "200",
        "--test-rows", "50", "--rhos", "0.5", "1.0", "--archs", "shared_bottom", "mmoe",
        "--out", str(tmp_path),
    )  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"shared_bottom", "mmoe"}
    for by_rho in results.values():
        assert set(by_rho) == {"0.5", "1.0"}
        for cell in by_rho.values():
            assert len(cell["finals"]) == 2
            assert all(0 < loss < 100 for loss in cell["finals"])
    for name in ("table.md", "loss_curves.png", "final_loss.png", "paired_ratio.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_split_vs_unsplit_agrees_then_times_both(trained_run: TrainedRun) -> None:
    out = run_script(
        "split_vs_unsplit.py", "--run", str(trained_run.run), "--candidates", "5", "40",
        "--repeat", "2",
    )  # fmt: skip
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+(\S+)$", out, re.MULTILINE)
    assert [int(r[0]) for r in rows] == [5, 40], out
    assert all(float(r[4]) <= 1e-5 for r in rows)  # the two graphs agree before any timing


def test_serving_compare_runs_every_system_and_writes_the_table(
    trained_run: TrainedRun, tmp_path: Path
) -> None:
    work = tmp_path / "work" / "default"
    work.mkdir(parents=True)
    (work / "data").symlink_to(trained_run.data)
    (work / "run").symlink_to(trained_run.run)
    out = tmp_path / "out"
    run_script(
        "serving_compare.py", "--quick", "--models", "default", "--work", str(tmp_path / "work"),
        "--out", str(out), "--systems", "mtrank", "naive", "litserve", "transport", "--no-two-core",
        timeout=400,
    )  # fmt: skip
    table = (out / "table.md").read_text()
    # floor, unsplit / split, p50, / floor, outside, graphs inside requests, / inside, columnar,
    # transport, (mtrank - transport) / floor
    row = (
        r"^\| 50 \| [\d.]+ \| [\d.]+x \| [\d.]+ \| [\d.]+x \| -?[\d.]+ \| [\d.]+ \| [\d.]+x \| "
        r"[\d.]+x \| [\d.]+ \| -?[\d.]+x \|"
    )
    assert re.search(row, table, re.M), table
    assert "mtrank / naive:" in table
    assert "of sgemm" in table
    assert re.search(r"^CPU: .+, \d+ cores, ", table), table  # runs on other hosts told apart
    # the host's own stalls at the start and the end, beside the figures they blur
    assert re.search(
        r"^host stalls .+: at the start, [\d.]+ a second .+; at the end, ", table, re.M
    )
    assert (out / "latency.png").stat().st_size > 0
    written = json.loads((out / "results.json").read_text())
    assert written["cpu"] in table
    assert set(written["host_stalls"]) == {"start", "end"}
    results = written["results"]["default"]
    assert set(results["latency"]) == {
        "mtrank", "mtrank_columnar", "naive", "litserve", "transport"
    }  # fmt: skip
    # the transport floor answered with mtrank's answers: it moved the same bytes, faster
    transport = results["latency"]["transport"]["50"]["p50"]
    assert 0 < transport < results["latency"]["mtrank"]["50"]["p50"]
    assert "transport" not in results["throughput"]  # a floor, not a system to load
    # the columnar form is timed in turn with the list form on the same server: a ratio per round
    columnar = results["latency"]["mtrank_columnar"]["50"]
    assert len(columnar["over_list_rounds"]) == 1
    assert columnar["over_list"] > 0
    assert results["latency"]["mtrank"]["50"]["graphs_inside"] > 0  # from explain.timings

    # the two scripts that say where the server's time goes, on the models prepared above
    work_dir = str(tmp_path / "work")
    cpu = run_script("rank_cpu.py", "--work", work_dir, "--sizes", "20", "--rounds", "1",
                     "--requests", "10")  # fmt: skip
    assert re.search(r"^\| 20 \| this \| \d+ \| \d+ \| -?\d+ \| [\d.]+ \|$", cpu, re.M), cpu
    timed = run_script("server_time.py", "--work", work_dir, "--sizes", "20", "--seconds", "0.5",
                       "--rounds", "1", "--requests", "5", "--out", str(tmp_path / "time"))  # fmt: skip
    assert re.search(r"^\| 20 \| \d+ us \| \d+ us \| \*\*[\d.]+x\*\*", timed, re.M), timed
    # each stage timed warm and right after a full request, against the whole request
    stages = (
        "body parse",
        "transform",
        "user graph",
        "candidate graph",
        "objectives, fusion, top k",
    )
    for stage in (*stages, "answer", "metrics"):
        row = rf"^\| {stage} \| \d+ us \| \d+ us \(\*\*[\d.]+x\*\*\) \|$"
        assert re.search(row, timed, re.M), timed
    assert re.search(r"^\| whole request \(in process, no sockets\) \| \| \d+ us \|$", timed, re.M)
    if "skipped" not in timed:  # perf can sample here: every component named, the plot written
        assert re.search(r"^\| onnxruntime \(graphs\) \| \d+ us \([\d.]+ %\) \|$", timed, re.M)
        assert (tmp_path / "time" / "components.png").stat().st_size > 0


def test_scale_rows_generates_trains_and_reports_auc_against_bayes(tmp_path: Path) -> None:
    out = run_script("scale_rows.py", "--smoke", "--work", str(tmp_path))
    entry = json.loads(out.strip().splitlines()[-1])
    assert entry["rows"] == 2000
    assert 0.5 <= entry["bayes_click_auc"] <= 1.0
    assert entry["bayes_ctcvr_auc"] is not None
    assert entry["peak_rss_mib"] > 0
    assert entry["wall_seconds"] > 0
    assert entry["cpu_seconds"] > 0
    assert entry["split"] == "validation"  # no test rows unless asked (--set test_fraction=...)
    share = (entry["click_auc"] - 0.5) / (entry["bayes_click_auc"] - 0.5)
    assert entry["click_lift_share"] == pytest.approx(share)
    assert 0.5 <= entry["served_bayes_click_auc"] < entry["bayes_click_auc"]  # position unseen
    served = (entry["click_auc"] - 0.5) / (entry["served_bayes_click_auc"] - 0.5)
    assert entry["served_click_lift_share"] == pytest.approx(served)
    assert len(entry["val_click_auc_per_epoch"]) == entry["epochs"] == 1


def test_big_item_table_serves_both_tables_and_reports_ratios(
    tmp_path: Path, trained_run: TrainedRun
) -> None:
    run = ["--base-run", str(trained_run.run), "--work", str(tmp_path)]
    out = run_script("big_item_table.py", "--smoke", *run, timeout=400)
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) == {"base", "big"}
    assert result["big"]["model_files_mb"] > result["base"]["model_files_mb"]  # the bigger table
    assert all(r["load_seconds"] > 0 and r["p50_ms"] > 0 for r in result.values())
    assert "big / base: load" in out
