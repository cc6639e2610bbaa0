"""``python -m training generate ...`` writes loadable data directories and reports them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.training.data.test_public import fake_wheel
from training.cli.main import main
from training.data.dataset import load_dataset


def test_generate_simulator_writes_a_loadable_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    code = main(["generate", "simulator", "--rows", "300", "--seed", "1", "--out", str(out),
                 "--users", "40", "--items", "30"])  # fmt: skip
    assert code == 0
    data = load_dataset(out)
    assert len(data) == 300
    assert data.frame["user_id"].max() <= 40
    printed = capsys.readouterr().out
    assert "impressions.parquet" in printed
    assert "click" in printed


def test_generate_synthetic_writes_the_requested_dimension(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert main(["generate", "synthetic", "--rho", "0.3", "--rows", "200", "--out", str(out),
                 "--dim", "5"]) == 0  # fmt: skip
    data = load_dataset(out)
    assert len(data) == 200
    assert len(data.spec.features) == 5


def test_generate_synthetic_rejects_rho_outside_the_unit_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["generate", "synthetic", "--rho", "2", "--rows", "10", "--out", str(tmp_path)])
    assert code == 2
    assert "rho" in capsys.readouterr().err


def test_generate_adult_uses_the_cached_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_wheel(tmp_path / "cache")
    monkeypatch.setenv("MTRANK_DATA_CACHE", str(tmp_path / "cache"))
    assert main(["generate", "adult", "--out", str(tmp_path / "adult")]) == 0
    assert len(load_dataset(tmp_path / "adult")) == 4


def test_generate_movielens_reports_an_unreachable_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MTRANK_DATA_CACHE", str(tmp_path / "empty"))

    def offline(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(subprocess, "run", offline)
    assert main(["generate", "movielens", "--out", str(tmp_path / "ml")]) == 2
    assert "network is unreachable" in capsys.readouterr().err
