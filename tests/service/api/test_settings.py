"""Settings come from MTRANK_* variables and an optional YAML/TOML file; the model is resolved from the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings, resolve_model_name


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("MTRANK_"):
            monkeypatch.delenv(name)


def test_defaults_serve_models_store_without_redis_or_admin() -> None:
    settings = Settings()
    assert settings.models_dir == Path("models_store")
    assert settings.redis_url is None
    assert settings.admin_token is None
    assert settings.max_candidates == 5000
    assert settings.max_body_bytes == 8 * 1024 * 1024


def test_environment_variables_with_prefix_override_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MTRANK_MAX_CANDIDATES", "10")
    monkeypatch.setenv("MTRANK_ADMIN_TOKEN", "s3cret")
    settings = Settings()
    assert settings.max_candidates == 10
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_yaml_config_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mtrank.yaml"
    config.write_text("max_candidates: 7\nredis_prefix: fromfile\n")
    monkeypatch.setenv("MTRANK_CONFIG_FILE", str(config))
    monkeypatch.setenv("MTRANK_REDIS_PREFIX", "fromenv")
    settings = Settings()
    assert settings.max_candidates == 7
    assert settings.redis_prefix == "fromenv"


def test_toml_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "mtrank.toml"
    config.write_text("max_concurrency = 3\n")
    monkeypatch.setenv("MTRANK_CONFIG_FILE", str(config))
    assert Settings().max_concurrency == 3


def test_missing_config_file_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTRANK_CONFIG_FILE", str(tmp_path / "absent.yaml"))
    with pytest.raises(ValueError, match=r"absent\.yaml"):
        Settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.max_candidates = 3  # type: ignore[misc]


def test_the_only_model_in_the_store_is_served_by_default(tmp_path: Path) -> None:
    (tmp_path / "feed").mkdir()
    assert resolve_model_name(Settings(models_dir=tmp_path)) == "feed"


def test_several_models_need_a_choice_and_the_error_lists_them(tmp_path: Path) -> None:
    (tmp_path / "feed").mkdir()
    (tmp_path / "video").mkdir()
    with pytest.raises(ValueError, match=r"feed, video.*MTRANK_MODEL"):
        resolve_model_name(Settings(models_dir=tmp_path))
    assert resolve_model_name(Settings(models_dir=tmp_path, model="video")) == "video"


def test_an_empty_store_says_how_to_publish(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="publish"):
        resolve_model_name(Settings(models_dir=tmp_path))


def test_admin_token_is_read_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("  from-file-token \n")
    monkeypatch.setenv("MTRANK_ADMIN_TOKEN_FILE", str(token_file))
    settings = Settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "from-file-token"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), ("\n", "is empty")],
    ids=["missing_file", "empty_file"],
)
def test_an_unusable_admin_token_file_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, message: str
) -> None:
    token_file = tmp_path / "admin-token"
    if content is not None:
        token_file.write_text(content)
    monkeypatch.setenv("MTRANK_ADMIN_TOKEN_FILE", str(token_file))
    with pytest.raises(ValueError, match=message):
        Settings()


def test_token_and_token_file_together_are_refused_without_echoing_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("one\n")
    monkeypatch.setenv("MTRANK_ADMIN_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("MTRANK_ADMIN_TOKEN", "s3cret-in-env")
    with pytest.raises(ValueError, match="keep one of them") as refused:
        Settings()
    assert "s3cret-in-env" not in str(refused.value)
