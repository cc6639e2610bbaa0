"""Smoke of issue 13's benchmark paths: ``mtl_compare.py`` with preset variants on a task view and
single-task baselines that need their sample-space task, then ``seesaw.py`` over its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.zoo import Zoo

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def script(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_variants_single_task_baselines_and_the_seesaw_plot(zoo: Zoo, tmp_path: Path) -> None:
    out = tmp_path / "esm2"
    script("mtl_compare.py", "--data", str(zoo.data / "esm2.yaml"), "--name", "esm2 smoke",
           "--archs", "esm2,esmm:esm2+esm2=false,single_task", "--seeds", "2", "--smoke",
           "--reference", "esmm", "--out", str(out))  # fmt: skip
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    runs = {(r["arch"], r["seed"]): r for r in results["runs"]}
    assert runs[("esm2", 0)]["config"]["esm2"] is True
    assert runs[("esmm", 0)]["config"]["esm2"] is False
    single = runs[("single_task", 0)]
    assert set(single["tasks"]) == {"click", "action", "convert"}  # convert trained beside click
    assert set(single["best_epochs"]) == {"click", "action", "convert"}
    assert "Δ vs esmm" in (out / "table.md").read_text(encoding="utf-8")
    printed = script("seesaw.py", "--results", str(out / "results.json"), "--out",
                     str(tmp_path / "seesaw"), "--pairs", "click:action")  # fmt: skip
    assert "Seesaw diagnosis" in printed
    report = json.loads((tmp_path / "seesaw" / "results.json").read_text(encoding="utf-8"))
    gains = report["esm2 smoke"]["gains"]
    assert set(gains) == {"esm2", "esmm"}  # every arch against the single-task models
    assert "click" in gains["esm2"]
    quadrants = report["esm2 smoke"]["quadrants"]["click:action"]
    assert set(quadrants.values()) <= {"gains on both", "seesaw", "negative transfer"}
    assert (tmp_path / "seesaw" / "seesaw.png").stat().st_size > 10_000
