"""``python -m service loadtest`` end to end against a real uvicorn process (the CI smoke of the tool)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli.loadtest import is_loopback
from tests.fixtures.published_model import PublishedModel
from tests.fixtures.uvicorn_server import ROOT, UVICORN_ADMIN_TOKEN, uvicorn_service
from tests.service.loadtest.conftest import TablePaths

__all__ = ["uvicorn_service"]

pytestmark = pytest.mark.slow


def loadtest(
    *args: str, tables: TablePaths, store: PublishedModel, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MTRANK_ADMIN_TOKEN"}
    if token is not None:
        env["MTRANK_ADMIN_TOKEN"] = token
    command = [sys.executable, "-m", "service", "loadtest", *args]
    command += ["--users", str(tables.users), "--items", str(tables.items)]
    command += ["--store", str(store.store_dir), "--model", store.model]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_fixed_rate_run_reports_percentiles_and_writes_json_and_plot(
    uvicorn_service: str,
    loadtest_tables: TablePaths,
    published_store: PublishedModel,
    tmp_path: Path,
) -> None:
    done = loadtest(
        "--url", uvicorn_service, "--rate", "20", "--duration", "2", "--candidates", "10",
        "--max-candidates", "40", "--mode", "features", "--out", str(tmp_path),
        tables=loadtest_tables, store=published_store,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert "errors by status: none" in done.stdout
    assert "latency from intended start (ms): p50" in done.stdout
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["sent"] == result["ok"] == 40
    assert set(result["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "mean"}
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
    assert result["workload"]["mode"] == "features"
    assert result["latency_histogram"]  # the HdrHistogram, base64
    assert (tmp_path / "run.png").stat().st_size > 10_000


def test_a_sweep_finds_a_saturation_point_and_plots_latency_against_rate(
    uvicorn_service: str,
    loadtest_tables: TablePaths,
    published_store: PublishedModel,
    tmp_path: Path,
) -> None:
    done = loadtest(
        "--url", uvicorn_service, "--sweep", "10,20", "--duration", "1.5", "--candidates", "5",
        "--max-candidates", "40", "--out", str(tmp_path),
        tables=loadtest_tables, store=published_store,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    (series,) = json.loads((tmp_path / "sweep.json").read_text())["series"]
    assert [step["offered_rate"] for step in series["steps"]] == [10, 20]
    assert series["saturation_rps"] == 20  # two light steps: both sustained
    assert "saturation of target: 20 req/s sustained" in done.stdout
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


def test_a_sweep_against_a_baseline_alternates_the_two_targets_step_by_step(
    uvicorn_service: str,
    loadtest_tables: TablePaths,
    published_store: PublishedModel,
    tmp_path: Path,
) -> None:
    done = loadtest(
        "--url", uvicorn_service, "--baseline-url", uvicorn_service.replace("127.0.0.1", "localhost"),
        "--label", "new", "--baseline-label", "old", "--sweep", "10,20", "--duration", "1",
        "--candidates", "5", "--out", str(tmp_path),
        tables=loadtest_tables, store=published_store,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    order = re.findall(r"^\s+(old|new)\s+(\d+) req/s offered", done.stdout, flags=re.MULTILINE)
    assert order == [("old", "10"), ("new", "10"), ("old", "20"), ("new", "20")]
    assert "saturation ratio new / old: 1.00x" in done.stdout
    result = json.loads((tmp_path / "sweep.json").read_text())
    assert [s["label"] for s in result["series"]] == ["old", "new"]


def test_a_swap_needs_the_admin_token_and_is_marked_in_the_results(
    uvicorn_service: str,
    loadtest_tables: TablePaths,
    published_store: PublishedModel,
    tmp_path: Path,
) -> None:
    args = ["--url", uvicorn_service, "--rate", "10", "--duration", "2", "--swap-at", "0.5"]
    args += ["--swap-version", published_store.versions[0], "--out", str(tmp_path)]
    refused = loadtest(*args, tables=loadtest_tables, store=published_store)
    assert refused.returncode == 2
    assert "MTRANK_ADMIN_TOKEN" in refused.stderr
    done = loadtest(*args, tables=loadtest_tables, store=published_store, token=UVICORN_ADMIN_TOKEN)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "model swap at 0.5 s answered 200" in done.stdout
    assert json.loads((tmp_path / "run.json").read_text())["swap"]["status"] == "200"


def test_remote_targets_and_unbounded_runs_are_refused(
    loadtest_tables: TablePaths, published_store: PublishedModel
) -> None:
    remote = loadtest(
        "--url", "http://10.1.2.3:8000", tables=loadtest_tables, store=published_store
    )
    assert remote.returncode == 2
    assert "--allow-remote" in remote.stderr
    endless = loadtest("--duration", "3600", tables=loadtest_tables, store=published_store)
    assert endless.returncode == 2
    assert "--duration" in endless.stderr


def test_loopback_detection() -> None:
    assert is_loopback("http://127.0.0.1:8000")
    assert is_loopback("http://localhost:8000/")
    assert is_loopback("http://[::1]:8000")
    assert not is_loopback("http://example.com")
    assert not is_loopback("http://192.168.1.5:8000")
