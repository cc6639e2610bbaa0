"""Request and response bodies of the admin model API (``/admin/models...``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from service.contracts.fusion import FusionConfig
from service.fleet.heartbeat import ProcessStatus
from service.fleet.record import ReadResult
from service.fleet.state import CandidateState

VersionName = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CandidateRequest(_Body):
    version: VersionName = Field(description="a published version other than the serving one")
    percent: float = Field(
        gt=0.0, le=100.0, allow_inf_nan=False, description="share of users (canary) or requests"
    )


class FusionRequest(_Body):
    version: VersionName | None = Field(
        None, description="the serving (default) or the canary/shadow version"
    )
    fusion: FusionConfig | None = Field(
        description="presets and default replacing the version's fusion.yaml; null restores it"
    )


class FleetChoiceOut(_Body):
    serving: str | None
    previous: str | None
    candidate: CandidateState | None
    fusion_replaced: list[str] = Field(description="versions whose presets were replaced")
    revision: int
    changed_at: str | None
    changed_by: str | None
    source: Literal["store", "redis"] = Field(description="the record the choice was read from")

    @classmethod
    def of(cls, read: ReadResult) -> FleetChoiceOut:
        state = read.state
        return cls(
            serving=state.serving,
            previous=state.previous,
            candidate=state.candidate,
            fusion_replaced=sorted(state.fusion),
            revision=state.revision,
            changed_at=state.changed_at,
            changed_by=state.changed_by,
            source="redis" if read.source == "redis" else "store",
        )


class ProcessOut(ProcessStatus):
    heartbeat_age_seconds: float


class ModelVersionOut(_Body):
    name: str
    version: str
    loaded_at: str


class ModelsOut(_Body):
    model: str | None
    active: ModelVersionOut | None = Field(description="what this process serves")
    current: str | None = Field(description="the store's `current` pointer")
    available: list[str] = Field(description="published versions, oldest first")
    fleet: FleetChoiceOut | None = Field(description="the recorded fleet choice")
    heartbeats: Literal["redis", "store", "local"] = Field(description="where processes report")
    processes: list[ProcessOut] = Field(description="this process first, then every other one")


class ChangeOut(_Body):
    action: str
    name: str
    version: str = Field(description="the serving version of this process after the change")
    loaded_at: str
    candidate: CandidateState | None
    revision: int
    recorded_in: list[Literal["store", "redis"]] = Field(
        description="where the choice was recorded; every other process follows it from there"
    )
    process: ProcessOut
