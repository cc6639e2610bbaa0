"""``python -m training --help`` and ``python -m service --help`` list every command a user needs."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("package", "commands"),
    [
        ("training", ["generate", "train", "evaluate", "publish", "models"]),
        ("service", ["serve", "features"]),
    ],
)
def test_help_lists_every_command(package: str, commands: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", package, "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("    ")}
    assert set(commands) <= listed, done.stdout


def test_unknown_command_fails_with_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training", "fly"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "invalid choice: 'fly'" in done.stderr
