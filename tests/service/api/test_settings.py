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
