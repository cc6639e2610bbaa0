"""What the fleet serves: one immutable document shared by every worker and replica.

``FleetState`` names the serving version, an optional second version (a canary taking a stable
share of users, or a shadow scoring a copy of requests off the response path), fusion presets that
replace a version's published ``fusion.yaml``, and a ``revision`` that grows with every change so
that two records of the choice can be ordered. Processes only ever apply a state; they never invent
one (a process-local variable is only a cache of this document).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.contracts.fusion import FusionConfig

CandidateMode = Literal["canary", "shadow"]


class CandidateState(BaseModel):
    """A second resident version: a canary (a share of users) or a shadow (a share of requests)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: CandidateMode
    version: str
    percent: float = Field(gt=0.0, le=100.0, allow_inf_nan=False)


class FleetState(BaseModel):
    """The fleet's choice for one model; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    serving: str | None = None
    previous: str | None = Field(None, description="the version served before (for rollback)")
    candidate: CandidateState | None = None
    fusion: dict[str, FusionConfig] = Field(
        default_factory=dict, description="version -> presets replacing its fusion.yaml"
    )
    revision: int = Field(0, ge=0)
    changed_at: str | None = None
    changed_by: str | None = None

    def same_choice(self, other: FleetState | None) -> bool:
        """True when ``other`` asks for the same versions, shares and presets (revision aside)."""
        if other is None:
            return False
        keep = {"serving", "candidate", "fusion"}
        return self.model_dump(include=keep) == other.model_dump(include=keep)

    def changed(self, revision: int, by: str, **updates: object) -> FleetState:
        """A copy with ``updates``, stamped with ``revision``, the time and who changed it."""
        stamp = {"revision": revision, "changed_by": by, "changed_at": _now()}
        return self.model_validate({**self.model_dump(), **updates, **stamp})

    def fusion_for(self, version: str) -> FusionConfig | None:
        return self.fusion.get(version)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
