"""``benchmarks/host_stalls.py``: how often the host takes a core away, from a loop on each core."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.fixtures.benchmark_module import benchmark_module


@pytest.fixture(scope="module")
def stalls_module() -> Iterator[ModuleType]:
    with benchmark_module("host_stalls") as module:  # the spawned loops import it by name
        yield module


def test_the_summary_counts_per_second_and_core_and_the_share_of_time_lost(
    stalls_module: ModuleType,
) -> None:
    found = stalls_module.Stalls(2.0, [[1.0, 3.0, 12.0], [2.0]])
    assert found.per_second == pytest.approx(1.0)  # 4 stalls over 2 cores x 2 s
    assert found.share == pytest.approx(18.0 / 4000.0)
    assert found.largest_ms == 12.0
    assert found.median_ms == pytest.approx(2.5)
    assert found.describe() == (
        "1.0 a second per core longer than 0.5 ms (median 2.5 ms, the largest 12.0 ms), "
        "0.45% of the time"
    )
    assert found.as_json()["cores"] == 2


def test_a_host_that_never_stalls_reads_as_zero(stalls_module: ModuleType) -> None:
    quiet = stalls_module.Stalls(1.0, [[], []])
    assert (quiet.per_second, quiet.share, quiet.largest_ms, quiet.median_ms) == (0, 0, 0, 0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_a_short_measurement_runs_a_loop_on_every_core(stalls_module: ModuleType) -> None:
    found = stalls_module.measure(0.2)
    assert len(found.per_core) == len(os.sched_getaffinity(0))
    assert all(gap > stalls_module.GAP_MS for gaps in found.per_core for gap in gaps)
    assert 0.0 <= found.share < 1.0
