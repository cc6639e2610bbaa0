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
from training.train.config import load_config as load_train_config

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


def test_every_seed_validates_on_the_split_seeds_rows() -> None:
    plan = mtl_compare.parse_args(["--data", "d", "--name", "n", "--archs", "mmoe", "--out", "o",
                                   "--val-fraction", "0.1", "--test-fraction", "0.1"])  # fmt: skip
    configs = [mtl_compare.run_config("mmoe", seed, plan, ["click"]) for seed in (1, 2)]
    assert [c.seed for c in configs] == [1, 2]
    assert {c.split_plan for c in configs} == {configs[0].split_plan}  # one split for all seeds
    assert (configs[0].data_split_seed, configs[0].test_fraction) == (0, 0.1)
    own = mtl_compare.parse_args(["--data", "d", "--name", "n", "--archs", "mmoe", "--out", "o",
                                  "--split-seed", "-1"])  # fmt: skip
    assert mtl_compare.run_config("mmoe", 3, own, ["click"]).data_split_seed == 3


def test_presets_keep_their_epoch_cap_and_drop_keys_naming_absent_tasks() -> None:
    plan = mtl_compare.parse_args(["--data", "d", "--name", "n", "--archs", "ple", "--out", "o"])
    config = mtl_compare.run_config("ple", 0, plan, ["income", "never_married"])
    assert config.weighting.gamma == {}  # the preset's gamma names click only
    assert config.epochs == load_train_config("ple").epochs


@pytest.mark.slow
def test_smoke_run_writes_one_result_per_arch_and_seed(simulator_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = mtl_compare.main(["--data", str(simulator_dir), "--name", "smoke", "--archs",
                             "hgb,shared_bottom,mmoe", "--seeds", "2", "--epochs", "5",
                             "--test-fraction", "0.2", "--out", str(out), "--smoke"])  # fmt: skip
    assert code == 0
    for name in ("results.json", "table.md", "metrics.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    runs = {(r["arch"], r["seed"]): r for r in results["runs"]}
    assert sorted(runs) == [(a, s) for a in ("hgb", "mmoe", "shared_bottom") for s in (0, 1)]
    for run in runs.values():
        assert set(run["tasks"]) == {"click", "convert", "watch_time", "like", "share"}
        assert run["tasks"]["click"]["auc"] is not None
        assert run["tasks"]["click"]["n"] == 80  # the 20 % test rows of the 400 simulated
        for metrics in run["tasks"].values():
            assert all(math.isfinite(v) for v in metrics.values() if v is not None)
            if metrics.get("auc") is not None:
                assert 0.0 <= metrics["auc"] <= 1.0
            if "mse" in metrics:
                assert metrics["mse"] >= 0.0
        assert run["seconds"] > 0.0
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "| mmoe | 2 |" in table
    assert "| hgb | 2 |" in table
    assert "smoke: test metrics" in table
