"""``benchmarks/serving_compare.py``'s table: the half-saturation figure in several passes (the
median reported with every pass beside it; older results of one pass rendered as they were), and
the host's stalls in its head when the run measured them."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks" / "serving" / "compare" / "results.json"


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # its sibling modules import each other
    try:
        spec = importlib.util.spec_from_file_location(
            "serving_compare", ROOT / "benchmarks" / "serving_compare.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def run(p50: float, p99: float) -> dict[str, Any]:
    return {"p50": p50, "p99": p99, "throughput": 300.0, "n": 1800}


def test_the_median_pass_is_the_one_with_the_middle_tail(compare: ModuleType) -> None:
    burst, quiet, middle = run(1.5, 8.5), run(1.5, 3.0), run(1.5, 4.2)
    assert compare.median_pass([burst, quiet, middle]) is middle
    assert compare.median_pass([quiet]) is quiet
    assert compare.median_pass([quiet, burst]) is burst  # an even count: the higher middle one


def test_the_table_names_every_pass_beside_the_median(compare: ModuleType) -> None:
    written = json.loads(RESULTS.read_text())
    results = copy.deepcopy(written["results"])
    for model in results.values():  # as runs before the passes wrote them
        for workers in model["two_core"].values():
            if isinstance(workers, dict):
                for key in ("half_rounds", "half_pool", "half_pool_rounds"):
                    workers.pop(key, None)
    one_pass = compare.table(results, written["sgemm_gflops"], "0 0 0", written["cpu"])
    assert "passes" not in one_pass  # results of one pass render as before

    several = copy.deepcopy(results)
    two = several["default"]["two_core"]["2"]
    two["half"] = run(1.6, 4.8)
    two["half_rounds"] = [2.1, 5.69, 3.0]
    text = compare.table(several, written["sgemm_gflops"], "0 0 0", written["cpu"])
    assert "(p99/p50 3.00, the median of 3 passes: 2.10, 5.69, 3.00)" in text
    assert "as one client pool reuses them" not in text  # runs before the pooled passes

    two["half_pool"] = run(1.0, 5.3)
    two["half_pool_rounds"] = [5.71, 5.3, 4.2]
    text = compare.table(several, written["sgemm_gflops"], "0 0 0", written["cpu"])
    assert (
        "(p99/p50 3.00, the median of 3 passes: 2.10, 5.69, 3.00; over 8 connections in turn; "
        "as one client pool reuses them, the last answered first: p50 1.00 ms, p99 5.30 ms "
        "(p99/p50 5.30, the median of 3 passes: 5.71, 5.30, 4.20))"
    ) in text


def test_the_table_heads_with_the_host_stalls_when_they_were_measured(compare: ModuleType) -> None:
    written = json.loads(RESULTS.read_text())
    args = (written["results"], written["sgemm_gflops"], "0 0 0", written["cpu"])
    stalls = "at the start, 2.7 a second per core longer than 0.5 ms"
    head = compare.table(*args, stalls).splitlines()[:3]
    assert head[1] == f"host stalls (a loop spinning on each core, host_stalls.py): {stalls}"
    assert head[2] == ""
    assert "host stalls" not in compare.table(*args)  # runs that did not measure them
