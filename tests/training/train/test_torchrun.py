"""``torchrun --nproc_per_node 2 -m training train`` end to end: the same result as one process
within noise, one run directory written by rank 0, and ``publish`` takes it unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.cli.main import main

pytestmark = pytest.mark.slow

TRAIN = ["--epochs", "2", "--seed", "3", "--no-progress", "--set", "batch_size=256"]


def test_two_ranks_match_one_rank_and_publish_the_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert (
        main(["generate", "simulator", "--rows", "12000", "--seed", "5", "--out", str(data)]) == 0
    )
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "--data", str(data), "--out", str(one), *TRAIN]) == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "-m", "training", "train"]
    launched = subprocess.run(
        [*command, "--data", str(data), "--out", str(two), *TRAIN],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("trained mmoe on 2 ranks") == 1  # rank 0 alone reports
    m1, m2 = (json.loads((run / "metrics.json").read_text()) for run in (one, two))
    for task in ("click", "like"):
        assert m2["tasks"][task]["n"] == m1["tasks"][task]["n"]  # every validation row counted
        assert m2["tasks"][task]["auc"] == pytest.approx(m1["tasks"][task]["auc"], abs=0.03)
    assert m2["derived"]["ctcvr"]["auc"] == pytest.approx(m1["derived"]["ctcvr"]["auc"], abs=0.05)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())

    store = tmp_path / "store"
    assert main(["publish", str(two), "--store", str(store), "--model", "feed"]) == 0
    assert (store / "feed" / "current").is_file()
