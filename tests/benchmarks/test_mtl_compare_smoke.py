"""``benchmarks/mtl_compare.py --smoke`` trains every (arch, seed) and writes its three result files."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from training.cli.main import main as training_main
from training.data.dataset import load_config, load_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mtl_compare.py"


def load_script() -> ModuleType:
    """The benchmark script as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("mtl_compare", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


mtl_compare = load_script()


@pytest.fixture(scope="module")
def simulator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mtl-compare") / "sim"
    code = training_main(["generate", "simulator", "--rows", "400", "--seed", "1", "--out",
                          str(out), "--users", "40", "--items", "30", "--no-progress"])  # fmt: skip
    assert code == 0
    return out


def test_pinned_order_validates_on_the_split_seeds_rows(
    simulator_dir: Path, tmp_path: Path
) -> None:
    impressions = tmp_path / "impressions.parquet"
    mtl_compare.write_impressions(simulator_dir / "impressions.parquet", impressions, 0, 3, None)
    meta = load_config(simulator_dir)
    pinned = mtl_compare.derived_data_dir(
        meta, simulator_dir, impressions, meta.tasks, tmp_path / "pinned"
    )
    expected = load_dataset(simulator_dir).split(0, 0.2)[1].frame
    got = load_dataset(pinned).split(3, 0.2)[1].frame
    keys = [c for c in expected.columns if expected[c].dtype != object]
    assert len(got) == len(expected)
    assert (
        got.sort_values(keys)[keys]
        .reset_index(drop=True)
        .equals(expected.sort_values(keys)[keys].reset_index(drop=True))
    )


@pytest.mark.slow
def test_smoke_run_writes_one_result_per_arch_and_seed(simulator_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = mtl_compare.main(["--data", str(simulator_dir), "--name", "smoke", "--archs", "shared_bottom,mmoe",
                 "--seeds", "2", "--epochs", "5", "--out", str(out), "--smoke"])  # fmt: skip
    assert code == 0
    for name in ("results.json", "table.md", "metrics.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    runs = {(r["arch"], r["seed"]): r for r in results["runs"]}
    assert sorted(runs) == [("mmoe", 0), ("mmoe", 1), ("shared_bottom", 0), ("shared_bottom", 1)]
    for run in runs.values():
        assert set(run["tasks"]) == {"click", "convert", "watch_time", "like", "share"}
        assert run["tasks"]["click"]["auc"] is not None
        for metrics in run["tasks"].values():
            assert all(math.isfinite(v) for v in metrics.values() if v is not None)
            if metrics.get("auc") is not None:
                assert 0.0 <= metrics["auc"] <= 1.0
            if "mse" in metrics:
                assert metrics["mse"] >= 0.0
        assert run["seconds"] > 0.0
    assert "| mmoe | 2 |" in (out / "table.md").read_text(encoding="utf-8")
