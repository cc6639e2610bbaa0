"""`python -m service serve` maps its options to MTRANK_* settings and starts even with nothing to serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.cli.main import build_parser, main


def test_serve_options_become_mtrank_environment_variables() -> None:
    from service.cli.serve import settings_environment

    args = build_parser().parse_args(
        ["serve", "--store", "/models", "--model", "feed", "--redis", "redis://r:6379/0"]
    )
    assert settings_environment(args) == {
        "MTRANK_MODELS_DIR": "/models",
        "MTRANK_MODEL": "feed",
        "MTRANK_REDIS_URL": "redis://r:6379/0",
    }
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 8000, 1)


def test_admin_token_file_option_sets_the_file_variable() -> None:
    from service.cli.serve import settings_environment

    args = build_parser().parse_args(["serve", "--admin-token-file", "/run/secrets/token"])
    assert settings_environment(args) == {"MTRANK_ADMIN_TOKEN_FILE": "/run/secrets/token"}


def test_admin_token_on_the_command_line_warns_that_ps_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *_, **__: None)  # no server in this test
    monkeypatch.delenv("MTRANK_MODEL", raising=False)
    monkeypatch.setenv("MTRANK_ADMIN_TOKEN", "restored-after-the-test")  # serve sets it
    monkeypatch.setenv("MTRANK_MODELS_DIR", str(tmp_path))
    assert main(["serve", "--store", str(tmp_path), "--admin-token", "t"]) == 0
    err = capsys.readouterr().err
    assert "process list" in err
    assert "--admin-token-file" in err


def test_serve_starts_on_an_empty_store_and_says_why_it_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    monkeypatch.delenv("MTRANK_MODEL", raising=False)
    monkeypatch.setenv("MTRANK_MODELS_DIR", str(tmp_path))  # restored after the test
    assert main(["serve", "--store", str(tmp_path)]) == 0
    assert "nothing to serve yet: no model in" in capsys.readouterr().err  # a log line
    assert calls[0]["app"] == "service.main:create_app"
    assert calls[0]["timeout_graceful_shutdown"] == 11  # MTRANK_SHUTDOWN_GRACE_SECONDS + 1


def test_serve_help_lists_the_documented_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--store", "--model", "--host", "--port", "--workers"):
        assert option in out
