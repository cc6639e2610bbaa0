"""Service settings: ``MTRANK_*`` environment variables, an optional YAML/TOML file, then defaults.

Precedence (highest first): constructor arguments, environment variables, the file named by
``MTRANK_CONFIG_FILE``, defaults. The defaults serve ``models_store/`` out of the box. Nothing is read at
import time: ``Settings()`` reads the environment when called, so tests build their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from service.model_store import ModelStore

CONFIG_FILE_ENV = "MTRANK_CONFIG_FILE"
MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of the ranking service; env var = ``MTRANK_`` + upper-case field name."""

    # errors never echo the input: it may hold the admin token
    model_config = SettingsConfigDict(
        env_prefix="MTRANK_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    models_dir: Path = Field(
        Path("models_store"), description="model store root (<model>/<version>/)"
    )
    model: str | None = Field(
        None, description="model to serve; default: the only model in the store"
    )
    redis_url: str | None = Field(
        None,
        description="online feature store and user cache (redis://HOST:PORT/DB, or "
        "redis+cluster://NODE:PORT for a Redis Cluster); unset = request features only",
    )
    redis_prefix: str = Field("mtrank", min_length=1, description="key prefix in Redis")
    redis_timeout_ms: int = Field(20, ge=1, le=10_000, description="socket/connect timeout")
    feature_budget_ms: int = Field(30, ge=1, le=10_000, description="whole feature fetch budget")
    user_cache_ttl_seconds: int = Field(300, ge=0, description="0 disables the user-rep cache")
    admin_token: SecretStr | None = Field(
        None, description="bearer token for /admin; unset = admin API refused"
    )
    admin_token_file: Path | None = Field(
        None,
        description="file holding the admin token (first line); keeps it out of the environment "
        "and the process list",
    )
    max_candidates: int = Field(5000, ge=1, description="candidates per request")
    max_body_bytes: int = Field(8 * MIB, ge=1024, description="request body size limit")
    max_admin_body_bytes: int = Field(
        64 * 1024, ge=256, description="body size limit of /admin requests"
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="a request body must arrive within this; 408 otherwise"
    )
    max_sequence_length: int = Field(1000, ge=1, description="ids in one sequence feature")
    unknown_features: Literal["reject", "ignore"] = Field(
        "reject",
        description="a feature the model does not take: reject (422 naming it) or ignore it "
        "(for clients that send one superset of features to several model versions)",
    )
    max_concurrency: int = Field(
        64, ge=1, description="/rank requests in flight; past it: 503 + Retry-After"
    )
    retry_after_seconds: int = Field(1, ge=1, description="Retry-After sent with an overload 503")
    ort_threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads per session")
    inference_threads: int = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        ge=0,
        description="threads running ONNX sessions off the event loop; 0 = score on the event "
        "loop, one request at a time per worker process (no thread hop)",
    )
    keep_alive_seconds: int = Field(
        5,
        ge=1,
        le=600,
        description="python -m service serve: close a connection idle (or still sending its "
        "request head) this long",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="python -m service serve: open connections before new requests get 503",
    )
    store_read_only: bool = Field(
        False,
        description="never write the model store (also detected for read-only mounts): the fleet "
        "choice is then recorded in Redis only",
    )
    fleet_poll_seconds: float = Field(
        2.0, gt=0, le=300, description="how often each process re-reads the fleet choice"
    )
    fleet_heartbeat_seconds: float = Field(
        2.0, gt=0, le=300, description="how often each process posts its status"
    )
    fleet_redis_timeout_seconds: float = Field(
        1.0, gt=0, le=60, description="timeout of the fleet's Redis calls (not on the /rank path)"
    )
    background_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="added to the nice value of background threads (model loading, shadow "
        "scoring); 0 = the same priority as serving",
    )
    loader_pause_ms: float = Field(
        2.0, ge=0, le=1000, description="pause between model load steps, yielding the CPU"
    )
    shadow_queue_size: int = Field(
        64, ge=1, le=100_000, description="shadow jobs waiting; past it new ones are dropped"
    )
    drain_seconds: float = Field(
        3.0, ge=0, le=300, description="after SIGTERM: not ready, still serving, for this long"
    )
    shutdown_grace_seconds: float = Field(
        10.0, gt=0, le=600, description="then: in-flight requests get at most this long"
    )
    log_format: Literal["json", "text"] = Field("json", description="JSON lines or plain text")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _admin_token_from_file(cls, data: Any) -> Any:
        """``admin_token_file`` fills ``admin_token``, so the rest of the service reads one field."""
        if not isinstance(data, dict) or not data.get("admin_token_file"):
            return data
        if data.get("admin_token"):
            raise ValueError(
                "both MTRANK_ADMIN_TOKEN and MTRANK_ADMIN_TOKEN_FILE are set: keep one of them"
            )
        return {**data, "admin_token": read_token_file(Path(data["admin_token_file"]))}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # dotenv and secrets sources are inert unless configured; kept for users who configure them
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(_file_source(settings_cls, Path(config_file)))
        sources.append(file_secret_settings)
        return tuple(sources)


def read_token_file(path: Path) -> str:
    """The token on the first line of ``path`` (surrounding whitespace removed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"MTRANK_ADMIN_TOKEN_FILE={path}: cannot read it ({exc.strerror or exc})"
        ) from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise ValueError(f"MTRANK_ADMIN_TOKEN_FILE={path} is empty: write the token in it")
    return token


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ValueError(
            f"{CONFIG_FILE_ENV}={path} does not exist; point it at a YAML or TOML file"
        )
    if path.suffix in {".yaml", ".yml"}:
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    if path.suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    raise ValueError(f"{CONFIG_FILE_ENV}={path}: use a .yaml, .yml or .toml file")


def resolve_model_name(settings: Settings) -> str:
    """The model to serve: ``settings.model``, or the store's only model; else a ``ValueError``."""
    if settings.model is not None:
        return settings.model
    models = ModelStore(settings.models_dir).models()
    if len(models) == 1:
        return models[0]
    if not models:
        raise ValueError(
            f"no model in {settings.models_dir.resolve()}: publish one "
            "(python -m training publish RUN --store DIR --model NAME) or set MTRANK_MODELS_DIR"
        )
    raise ValueError(
        f"{settings.models_dir} holds several models ({', '.join(models)}): choose one with MTRANK_MODEL"
    )
