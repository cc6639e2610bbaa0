"""Contract 3: fusion of per-objective scores into the one score candidates are ranked by.

Formulas (seeds 000, 001, 003, 004):

* ``weighted_sum``: ``score = Σ_k w_k · g_k(s_k)``, the YouTube "What Video to Watch Next" style
  linear fusion of engagement and satisfaction predictions (seed 000, seed 001 §3).
* ``power_product``: ``score = Π_k (g_k(s_k) + ε)^w_k``, the multiplicative fusion recommended when
  objectives have different distributions, e.g. ``P_ctr^α · P_duration^(1-α)`` (seed 004) and the
  Tencent video score of the PLE paper (seed 003). Computed in log space,
  ``exp(Σ_k w_k · log(g_k(s_k) + ε))``; a value of ``g_k`` below 0 (e.g. a regression output
  predicting a slightly negative duration) is clipped to 0 first, so its factor is ``ε^w_k``.
  ``zscore`` is refused in a power product: its output is negative by construction.
* Derived objectives multiply task outputs, e.g. ESMM's ``ctcvr = click × convert`` (seed 001, 003).

Per-objective transforms ``g``, computed across the candidates of one request:
``identity``; ``log1p`` (``log(1 + max(s, 0))``); ``zscore`` (``(s - mean) / std``, population std;
a constant column gives 0); ``minmax`` (``(s - min) / (max - min)``, constant gives 0); ``rank``
(the percentile ``rank / N`` in ``(0, 1]``, ascending, ties get their average rank).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.contracts.tasks import TASK_ID_PATTERN, DerivedObjective

try:
    from service import _speedups
except ImportError:  # built without a C compiler: numpy sums the terms
    _speedups = None  # type: ignore[assignment]

FUSION_FILE = "fusion.yaml"
PRESET_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

Transform = Literal["identity", "log1p", "zscore", "minmax", "rank"]
FusionKind = Literal["weighted_sum", "power_product"]
Floats = npt.NDArray[np.float64]


class UnknownObjectiveError(ValueError):
    """A fusion term names an objective the model does not serve."""

    def __init__(self, objective: str, known: Sequence[str], where: str) -> None:
        self.objective = objective
        super().__init__(
            f"{where}: {objective!r} is not an objective of this model; "
            f"use one of {', '.join(known)}"
        )


class FusionTerm(BaseModel):
    """One objective's contribution: its weight (exponent in a power product) and transform."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float = Field(allow_inf_nan=False, ge=-1e3, le=1e3)
    transform: Transform = "identity"


class FusionSpec(BaseModel):
    """One fusion formula over named objectives."""

    model_config = ConfigDict(  # the validators' rules, stated in the JSON schema too
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "if": {"required": ["kind"], "properties": {"kind": {"const": "power_product"}}},
            "then": {
                "properties": {
                    "terms": {
                        "additionalProperties": {
                            "properties": {"transform": {"not": {"const": "zscore"}}}
                        }
                    }
                }
            },
        },
    )

    kind: FusionKind = "weighted_sum"
    epsilon: float = Field(default=1e-6, gt=0, le=1.0, allow_inf_nan=False)  # power_product only
    terms: dict[str, FusionTerm] = Field(
        min_length=1,
        max_length=64,
        json_schema_extra={"propertyNames": {"pattern": TASK_ID_PATTERN.pattern}},
    )

    @field_validator("terms")
    @classmethod
    def _term_names(cls, terms: dict[str, FusionTerm]) -> dict[str, FusionTerm]:
        for name in terms:
            if not TASK_ID_PATTERN.match(name):
                raise ValueError(
                    f"term {name!r} is not an objective id (lowercase letters, digits, '_')"
                )
        return terms

    @model_validator(mode="after")
    def _power_product_inputs(self) -> FusionSpec:
        if self.kind == "power_product":
            bad = [name for name, term in self.terms.items() if term.transform == "zscore"]
            if bad:
                raise ValueError(
                    f"power_product cannot use transform 'zscore' (terms {bad}): z-scores are "
                    "negative for half the candidates; use minmax or rank instead"
                )
        return self

    def validate_objectives(self, objectives: Sequence[str], where: str = "fusion") -> None:
        """Raise UnknownObjectiveError naming the first term that is not in ``objectives``."""
        for name in self.terms:
            if name not in objectives:
                raise UnknownObjectiveError(name, objectives, f"{where}.terms.{name}")


class FusionConfig(BaseModel):
    """The ``fusion.yaml`` of a model version: named presets and the default one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str
    presets: dict[str, FusionSpec] = Field(min_length=1)

    @field_validator("presets")
    @classmethod
    def _preset_names(cls, presets: dict[str, FusionSpec]) -> dict[str, FusionSpec]:
        for name in presets:
            if not PRESET_PATTERN.match(name):
                raise ValueError(f"preset name {name!r}: use 1-64 letters, digits, '_' or '-'")
        return presets

    @model_validator(mode="after")
    def _default_exists(self) -> FusionConfig:
        if self.default not in self.presets:
            raise ValueError(
                f"default preset {self.default!r} is not among presets {sorted(self.presets)}"
            )
        return self

    def validate_objectives(self, objectives: Sequence[str]) -> None:
        """Raise UnknownObjectiveError if any preset names an objective outside ``objectives``."""
        for name, spec in self.presets.items():
            spec.validate_objectives(objectives, where=f"presets.{name}")

    def preset(self, name: str | None = None) -> FusionSpec:
        """The named preset (default when None); KeyError lists the known names."""
        key = self.default if name is None else name
        if key not in self.presets:
            raise KeyError(f"no fusion preset {key!r}; known presets: {sorted(self.presets)}")
        return self.presets[key]

    @classmethod
    def from_data(cls, data: Any, source: str = "fusion config") -> FusionConfig:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping with 'default' and 'presets'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{source}: invalid fusion config: {describe_errors(exc)}") from None

    @classmethod
    def load(cls, path: str | Path) -> FusionConfig:
        """Read and validate a YAML fusion config; errors name the file and the field."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_data(data, str(path))


def describe_errors(exc: ValidationError) -> str:
    """``presets.watch.terms.click.weight: Input should be a finite number; ...`` (one line)."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)


def _rank_percentile(values: Floats) -> Floats:
    """Ascending rank / N in (0, 1]; tied values share their average rank."""
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    del unique
    starts = np.cumsum(counts) - counts  # 0-based position of each distinct value's first copy
    average = starts + (counts + 1) / 2.0  # 1-based average rank of each distinct value
    ranks: Floats = average[inverse.reshape(-1)] / float(values.shape[0])
    return ranks


def apply_transform(values: Floats, transform: Transform) -> Floats:
    """``g(s)`` over one objective's scores for all candidates of a request."""
    if transform == "identity":
        return values
    if transform == "log1p":
        return np.log1p(np.maximum(values, 0.0))
    if values.shape[0] == 0:
        return values
    low, high = float(values.min()), float(values.max())
    if transform == "rank":
        return _rank_percentile(values)
    if low == high:  # constant column: no spread to normalise
        return np.zeros_like(values)
    if transform == "minmax":
        return (values - low) / (high - low)
    std = float(values.std())
    return (values - float(values.mean())) / std  # zscore


def fuse(spec: FusionSpec, objectives: Mapping[str, npt.NDArray[Any]]) -> Floats:
    """The fused score of every candidate (float64, finite) under ``spec``."""
    missing = [name for name in spec.terms if name not in objectives]
    if missing:
        raise UnknownObjectiveError(missing[0], list(objectives), f"fusion.terms.{missing[0]}")
    columns = {name: np.asarray(objectives[name], dtype=np.float64) for name in spec.terms}
    transformed = [
        apply_transform(columns[name], term.transform) for name, term in spec.terms.items()
    ]
    if spec.kind == "weighted_sum" and _speedups is not None:  # one C pass, numpy's exact sums
        written = _speedups.weighted_sum(transformed, [term.weight for term in spec.terms.values()])
        if written is not None:  # None: a non-finite sum (numpy's path says why) or odd columns
            summed: Floats = np.frombuffer(written, dtype=np.float64)
            return summed
    total = np.zeros(transformed[0].shape[0], dtype=np.float64)
    # an overflow is refused below, naming the fix, not warned about on stderr as well
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for g, term in zip(transformed, spec.terms.values(), strict=True):
            if spec.kind == "weighted_sum":
                total += term.weight * g
            else:
                total += term.weight * np.log(np.maximum(g, 0.0) + spec.epsilon)
        scores = np.exp(total) if spec.kind == "power_product" else total
    if not np.isfinite(scores).all():
        raise ValueError(
            f"{spec.kind} fusion produced non-finite scores (weights too large for the objectives' "
            "range?); lower the weights or use log1p / minmax / rank transforms"
        )
    return scores


def derive_objectives(
    tasks_scores: Mapping[str, npt.NDArray[Any]], derived: Sequence[DerivedObjective]
) -> dict[str, Floats]:
    """Every objective as float64: the tasks' scores, then each derived product (e.g. ctcvr)."""
    out = {name: np.asarray(values, dtype=np.float64) for name, values in tasks_scores.items()}
    for objective in derived:
        unknown = [t for t in objective.product if t not in tasks_scores]
        if unknown:
            raise ValueError(f"derived objective {objective.id!r} needs unknown tasks {unknown}")
        product = out[objective.product[0]].copy()
        for task in objective.product[1:]:
            product *= out[task]
        out[objective.id] = product
    return out
