"""Manifest schema: round trip, names, consistency between tasks and graphs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.contracts.manifest import Manifest, load_manifest, validate_name


def manifest_dict(**overrides: Any) -> dict[str, Any]:
    """A valid manifest as plain data (used by the model store tests too)."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "model": "sim",
        "version": "v1",
        "created_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat(),
        "architecture": "mmoe",
        "hyperparameters": {"n_experts": 4},
        "tasks": [
            {"id": "click", "type": "binary", "output": "click"},
            {"id": "convert", "type": "binary", "output": "convert", "sample_space": "click"},
            {
                "id": "watch_time",
                "type": "regression",
                "output": "watch_time",
                "sample_space": "click",
                "target_transform": "log1p",
            },
        ],
        "derived": [{"id": "ctcvr", "product": ["click", "convert"]}],
        "feature_spec": {"name": "sim", "features": []},
        "graphs": {
            "user": {
                "file": "user.onnx",
                "inputs": [{"name": "user_cat", "dtype": "int64", "shape": [1, 2]}],
                "outputs": [{"name": "user_rep", "dtype": "float32", "shape": [1, 8]}],
            },
            "candidates": {
                "file": "candidates.onnx",
                "inputs": [
                    {"name": "user_rep", "dtype": "float32", "shape": [1, 8]},
                    {"name": "item_cat", "dtype": "int64", "shape": ["N", 1]},
                ],
                "outputs": [
                    {"name": t, "dtype": "float32", "shape": ["N"]}
                    for t in ("click", "convert", "watch_time")
                ],
            },
        },
        "opset": 17,
        "files": {"user.onnx": "a" * 64, "candidates.onnx": "b" * 64},
        "metrics": {"tasks": {"click": {"auc": 0.7}}},
        "data_card": {"rows": 600},
        "verification": {
            "rows": 1000,
            "max_abs_diff": 1e-7,
            "atol": 1e-5,
            "batch_vs_single_max_abs_diff": 0.0,
            "batch_size": 32,
            "onnxruntime_version": "1.0",
            "torch_version": "2.0",
        },
        "warmup": [
            {
                "user": {"id": "u1", "features": {"user_age": 30}},
                "context": {"hour": 3},
                "candidates": [{"id": "7", "features": {"item_price": 1.5}}],
            }
        ],
        "fusion_default": "balanced",
    }
    data.update(overrides)
    return data


def test_manifest_round_trips_through_json_file(tmp_path: Path) -> None:
    manifest = Manifest.model_validate(manifest_dict())
    manifest.dump(tmp_path / "manifest.json")
    loaded = load_manifest(tmp_path / "manifest.json")
    assert loaded == manifest
    assert loaded.objective_ids() == ["click", "convert", "watch_time", "ctcvr"]
    assert loaded.graphs.candidates.input_names() == ["user_rep", "item_cat"]


@pytest.mark.parametrize(
    "bad", ["../etc", "a/b", "a\\b", ".hidden", "", "x" * 65, "a..b", "sp ace", "é"]
)
def test_unsafe_model_and_version_names_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        validate_name(bad)
    with pytest.raises(ValidationError, match="model"):
        Manifest.model_validate(manifest_dict(model=bad))
    with pytest.raises(ValidationError, match="version"):
        Manifest.model_validate(manifest_dict(version=bad))


def test_unknown_fields_and_other_schema_versions_are_rejected() -> None:
    with pytest.raises(ValidationError, match="surprise"):
        Manifest.model_validate(manifest_dict(surprise=1))
    with pytest.raises(ValidationError, match="schema_version"):
        Manifest.model_validate(manifest_dict(schema_version=2))


def test_candidate_outputs_must_match_task_outputs() -> None:
    data = manifest_dict()
    data["graphs"]["candidates"]["outputs"] = data["graphs"]["candidates"]["outputs"][:2]
    with pytest.raises(ValidationError, match="must equal task outputs"):
        Manifest.model_validate(data)


def test_candidate_graph_must_start_with_user_rep() -> None:
    data = manifest_dict()
    data["graphs"]["candidates"]["inputs"].reverse()
    with pytest.raises(ValidationError, match="user_rep"):
        Manifest.model_validate(data)


def test_derived_objective_naming_unknown_task_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown tasks"):
        Manifest.model_validate(manifest_dict(derived=[{"id": "x", "product": ["click", "like"]}]))


@pytest.mark.parametrize("name", ["../user.onnx", "/abs.onnx", "plots/../../x", "manifest.json"])
def test_file_checksums_reject_paths_outside_the_version(name: str) -> None:
    with pytest.raises(ValidationError, match="files"):
        Manifest.model_validate(manifest_dict(files={name: "c" * 64}))


def test_checksum_must_be_hex_sha256() -> None:
    with pytest.raises(ValidationError, match="sha256"):
        Manifest.model_validate(manifest_dict(files={"user.onnx": "abc"}))


def test_naive_created_at_is_rejected() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        Manifest.model_validate(manifest_dict(created_at="2025-01-02T03:04:05"))


def test_load_manifest_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no manifest at"):
        load_manifest(tmp_path / "manifest.json")
