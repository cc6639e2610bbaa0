"""Contract 2: the manifest of a published model version (``manifest.json``).

Written by ``training/export/publish.py``, validated and read by the service. It says everything the
service needs to serve a version without guessing: tasks and derived objectives, the fitted feature
spec, both ONNX graphs' inputs and outputs, checksums of every file, metrics and warm-up requests.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.contracts.feature_spec import FeatureSpec
from service.contracts.tasks import DerivedObjective, TaskSpec, objective_ids, validate_task_set

SCHEMA_VERSION: Literal[1] = 1
MANIFEST_FILE = "manifest.json"
USER_REP = "user_rep"  # the user graph's output and the candidate graph's first input
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def validate_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a safe model or version name (usable as one path component)."""
    if not NAME_PATTERN.match(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is invalid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return value


def validate_relative_file(value: str) -> str:
    """Return ``value`` if it is a relative POSIX path inside a version folder (no '..', no '/')."""
    path = PurePosixPath(value)
    if (
        not value
        or path.is_absolute()
        or "\\" in value
        or any(p in ("", ".", "..") for p in value.split("/"))
    ):
        raise ValueError(f"file name {value!r} must be a relative path inside the version folder")
    return value


class TensorSpec(BaseModel):
    """One graph input or output; dynamic dimensions are strings such as ``"N"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    dtype: Literal["int64", "float32"]
    shape: list[int | str]


class GraphSpec(BaseModel):
    """One ONNX file and its signature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec] = Field(min_length=1)

    _file_ok = field_validator("file")(validate_relative_file)

    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


class Graphs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user: GraphSpec
    candidates: GraphSpec


class ManifestTask(TaskSpec):
    """A task as served: its label semantics plus the candidate-graph output that carries it."""

    output: str = Field(min_length=1)

    def spec(self) -> TaskSpec:
        return TaskSpec(
            id=self.id,
            type=self.type,
            sample_space=self.sample_space,
            target_transform=self.target_transform,
        )


class Verification(BaseModel):
    """What the pre-publish checks measured (onnxruntime vs PyTorch, batch vs one by one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(ge=1)  # held-out rows compared
    max_abs_diff: float = Field(ge=0)  # over binary-task probabilities
    atol: float = Field(gt=0)  # tolerance applied to max_abs_diff
    max_rel_diff_regression: float | None = Field(default=None, ge=0)  # |a-b| / max(|b|, 1)
    rtol_regression: float | None = Field(default=None, gt=0)
    batch_vs_single_max_abs_diff: float = Field(ge=0)
    batch_size: int = Field(ge=1)  # candidates scored at once in the batch check
    onnxruntime_version: str
    torch_version: str


class RankUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None  # ids are strings, as POST /rank takes them
    features: dict[str, Any] = Field(default_factory=dict)


class RankCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str  # unique within the request, as POST /rank requires
    features: dict[str, Any] = Field(default_factory=dict)


class RankExample(BaseModel):
    """A raw request, as a /rank client would send it; used to warm up a freshly loaded version."""

    model_config = ConfigDict(extra="forbid")

    user: RankUser
    context: dict[str, Any] = Field(default_factory=dict)
    candidates: list[RankCandidate] = Field(min_length=1)


class Manifest(BaseModel):
    """Everything that describes one published model version."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    schema_version: Literal[1] = SCHEMA_VERSION
    model: str
    version: str
    created_at: datetime
    architecture: str = Field(min_length=1)
    hyperparameters: dict[str, Any]
    tasks: list[ManifestTask] = Field(min_length=1)
    derived: list[DerivedObjective] = Field(default_factory=list)
    feature_spec: FeatureSpec  # fitted: statistics and vocabularies the transform needs
    graphs: Graphs
    opset: int = Field(ge=7)
    files: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256 hex
    metrics: dict[str, Any] = Field(default_factory=dict)
    data_card: dict[str, Any] = Field(default_factory=dict)
    verification: Verification
    warmup: list[RankExample] = Field(default_factory=list)
    fusion_default: str = Field(min_length=1)

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return validate_name(value, "model name")

    @field_validator("version")
    @classmethod
    def _version_name(cls, value: str) -> str:
        return validate_name(value, "version")

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must carry a time zone (UTC)")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            validate_relative_file(name)
            if name == MANIFEST_FILE:
                raise ValueError(
                    f"files must not list {MANIFEST_FILE} (it cannot hold its own checksum)"
                )
            if not SHA256_PATTERN.match(digest):
                raise ValueError(f"files[{name!r}] must be a lowercase hex sha256, got {digest!r}")
        return value

    @field_validator("feature_spec")
    @classmethod
    def _fitted(cls, value: FeatureSpec) -> FeatureSpec:
        if not value.is_fitted:
            raise ValueError(
                "feature_spec must be fitted (statistics and vocabularies from the training rows)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        validate_task_set([t.spec() for t in self.tasks], self.derived)
        user, cand = self.graphs.user, self.graphs.candidates
        if user.output_names() != [USER_REP]:
            raise ValueError(
                f"graphs.user outputs must be [{USER_REP!r}], got {user.output_names()}"
            )
        if not cand.inputs or cand.inputs[0].name != USER_REP:
            raise ValueError(f"graphs.candidates must take {USER_REP!r} as its first input")
        if user.outputs[0].shape != cand.inputs[0].shape:
            raise ValueError(
                f"user_rep shape differs between graphs: {user.outputs[0].shape} vs {cand.inputs[0].shape}"
            )
        outputs = [t.output for t in self.tasks]
        if cand.output_names() != outputs:
            raise ValueError(
                f"graphs.candidates outputs {cand.output_names()} must equal task outputs {outputs}"
            )
        if user.file == cand.file:
            raise ValueError("graphs.user and graphs.candidates must be different files")
        return self

    def task_specs(self) -> list[TaskSpec]:
        return [t.spec() for t in self.tasks]

    def objective_ids(self) -> list[str]:
        """Every objective this version serves: task ids, then derived ids."""
        return objective_ids(self.task_specs(), self.derived)

    def dump(self, path: Path) -> None:
        """Write the manifest as indented JSON (not atomic: the model store publishes atomically)."""
        path.write_text(self.to_json(), encoding="utf-8")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def load_manifest(path: Path) -> Manifest:
    """Read and validate ``manifest.json``; errors name the file and the invalid field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no manifest at {path}: is this a published version folder?"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    return Manifest.model_validate(raw)
