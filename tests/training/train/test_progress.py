"""Progress bars draw on a terminal and stay out of logs that are not one."""

import io
import sys
from pathlib import Path

import pytest

import training.data.simulator as simulator
from training.data.simulator import SimulatorConfig, simulate
from training.train.progress import progress_bar, wanted


class Terminal(io.StringIO):
    """A captured stderr that says it is an interactive terminal."""

    def isatty(self) -> bool:
        return True


def drawn(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, show: bool | None) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    for _ in progress_bar(range(3), show=show, desc="epoch 1", leave=True):
        pass
    return stream.getvalue()


def test_bar_draws_on_a_terminal_by_default(monkeypatch: pytest.MonkeyPatch):
    assert "epoch 1" in drawn(monkeypatch, Terminal(), None)


def test_bar_stays_out_of_a_log_file_by_default(monkeypatch: pytest.MonkeyPatch):
    assert drawn(monkeypatch, io.StringIO(), None) == ""


def test_explicit_choice_wins_over_the_terminal_check(monkeypatch: pytest.MonkeyPatch):
    assert drawn(monkeypatch, Terminal(), False) == ""
    assert "epoch 1" in drawn(monkeypatch, io.StringIO(), True)


def test_wanted_resolves_none_by_the_terminal(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert (wanted(None), wanted(False), wanted(True)) == (True, False, True)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert (wanted(None), wanted(False), wanted(True)) == (False, False, True)


@pytest.mark.parametrize(("stream", "expected"), [(Terminal, True), (io.StringIO, False)])
def test_simulator_bar_by_default_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stream: type[io.StringIO], expected: bool
):
    monkeypatch.setattr(simulator, "PROGRESS_ROWS", 100)  # a big run, as far as the bar knows
    captured = stream()
    monkeypatch.setattr(sys, "stderr", captured)
    simulate(SimulatorConfig(rows=300, seed=1), tmp_path / "sim")
    assert ("impressions" in captured.getvalue()) is expected
