"""Task declarations shared by dataset.yaml, training configs, the manifest and fusion.

A task id is a short lowercase word (``click``, ``convert``, ``watch_time``); the same id is the label
column, the ONNX output name, the fusion key and the response field.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TASK_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

# rank: a learning-to-rank score over the rows of one request (pairwise or listwise loss); served
# as an unbounded score, meaningful only in comparison with the other candidates of the request.
TaskType = Literal["binary", "regression", "rank"]
TargetTransform = Literal["none", "log1p"]


def _check_id(value: str) -> str:
    if not TASK_ID_PATTERN.match(value):
        raise ValueError(
            f"{value!r} is not a valid objective id: use 1-32 lowercase letters, digits or '_', "
            "starting with a letter"
        )
    return value


class TaskSpec(BaseModel):
    """One predicted objective with its label semantics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    type: TaskType
    # "all": every row counts; otherwise the id of a binary task whose label must be 1 (PLE sample space).
    sample_space: str = "all"
    # Regression only: the model learns transform(target); served values are in natural units.
    target_transform: TargetTransform = "none"

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return _check_id(value)

    @model_validator(mode="after")
    def _transform_only_for_regression(self) -> TaskSpec:
        if self.type != "regression" and self.target_transform != "none":
            raise ValueError(f"task {self.id!r}: target_transform applies to regression tasks only")
        return self


class DerivedObjective(BaseModel):
    """An objective computed from task outputs, e.g. ``ctcvr = click x convert`` (ESMM's pCTCVR)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    product: list[str] = Field(min_length=2)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return _check_id(value)


def validate_task_set(tasks: list[TaskSpec], derived: list[DerivedObjective]) -> None:
    """Raise ValueError unless ids are unique, sample spaces name binary tasks and products name tasks."""
    if not tasks:
        raise ValueError("at least one task is required")
    by_id = {t.id: t for t in tasks}
    if len(by_id) != len(tasks):
        raise ValueError(f"duplicate task ids in {[t.id for t in tasks]}")
    for task in tasks:
        if task.sample_space == "all":
            continue
        space = by_id.get(task.sample_space)
        if space is None or space.type != "binary":
            raise ValueError(
                f"task {task.id!r}: sample_space {task.sample_space!r} must be 'all' or a binary task id"
            )
    for objective in derived:
        if objective.id in by_id:
            raise ValueError(f"derived objective {objective.id!r} clashes with a task id")
        unknown = [t for t in objective.product if t not in by_id]
        if unknown:
            raise ValueError(f"derived objective {objective.id!r} names unknown tasks {unknown}")
    derived_ids = [d.id for d in derived]
    if len(set(derived_ids)) != len(derived_ids):
        raise ValueError(f"duplicate derived objective ids in {derived_ids}")


def objective_ids(tasks: list[TaskSpec], derived: list[DerivedObjective]) -> list[str]:
    """Every objective a model serves, tasks first, in declaration order."""
    return [t.id for t in tasks] + [d.id for d in derived]
