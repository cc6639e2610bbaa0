"""The main job: ``bash scripts/quickstart`` ranks real candidates with the committed demo model.

Also guards the demo model itself: published by the pipeline (checksums verify), small enough for git,
its tables' ids are what a request names.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from service.loadtest.workload import Tables
from service.model_store import ModelStore

ROOT = Path(__file__).resolve().parents[1]
STORE = ModelStore(ROOT / "models_store")


def test_the_demo_model_is_a_verified_published_version_under_2_mb() -> None:
    version = STORE.current("demo")
    assert version is not None
    manifest = STORE.verify("demo", version)  # every file matches its sha256
    assert manifest.verification.max_abs_diff <= manifest.verification.atol
    files = [p for p in (ROOT / "models_store" / "demo").rglob("*") if p.is_file()]
    files += list((ROOT / "demo").glob("*.parquet"))
    assert sum(p.stat().st_size for p in files) < 2 * 1024 * 1024


def test_the_demo_tables_hold_the_users_and_items_of_the_demo_model() -> None:
    tables = Tables.read(ROOT / "demo" / "users.parquet", ROOT / "demo" / "items.parquet")
    version = STORE.current("demo")
    assert version is not None
    spec = STORE.read_manifest("demo", version).feature_spec
    assert set(spec.names("user")) <= set(tables.users[0])
    assert set(spec.names("item")) <= set(tables.items[0])
    assert len(tables.users) >= 1000
    assert len(tables.items) >= 500


@pytest.mark.slow
def test_quickstart_prints_every_objective_and_the_fused_score_of_each_candidate() -> None:
    done = subprocess.run(
        ["bash", "scripts/quickstart"], cwd=ROOT, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    version = STORE.current("demo")
    assert version is not None
    manifest = STORE.read_manifest("demo", version)
    header = next(line for line in lines if line.lstrip().startswith("rank"))
    assert header.split()[:2] == ["rank", "item"]
    assert header.split()[-1] == "score"
    assert set(manifest.objective_ids()) <= set(header.split())
    rows = [line.split() for line in lines if re.match(r"^\s+\d+\s", line)]
    assert [int(row[0]) for row in rows] == list(range(1, 13))
    scores = [float(row[-1]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert f"model   demo / {version}" in done.stdout
    assert re.search(r"12 candidates ranked in [\d.]+ ms", done.stdout)
