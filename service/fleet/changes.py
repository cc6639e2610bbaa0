"""The admin changes as pure functions: the chosen state in, the fields that change out.

Each function enforces the residency rule (at most the serving version plus one canary or shadow
version) and raises :class:`FleetConflict` (409) with a message naming what is resident and what
to do instead. Nothing here touches a model, a file or Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.contracts.fusion import FusionConfig
from service.errors import RankError
from service.fleet.state import CandidateMode, CandidateState, FleetState

Updates = dict[str, Any]
Compute = Callable[[FleetState], Updates]  # the chosen state in, the fields to change out


class FleetConflict(RankError):  # noqa: N818 (named like the other HTTP outcomes)
    """The change conflicts with what the fleet serves (a third version, nothing to promote...)."""

    status_code = 409
    code = "fleet_conflict"


def describe(state: FleetState) -> str:
    """``serving v1 and canary v2 (10%)``: what the fleet has resident."""
    serving = f"serving {state.serving or 'nothing'}"
    candidate = state.candidate
    if candidate is None:
        return serving
    return f"{serving} and {candidate.mode} {candidate.version} ({candidate.percent:g}%)"


def _no_third(state: FleetState, wanted: str) -> None:
    candidate = state.candidate
    if candidate is not None:
        action = "promote or abort" if candidate.mode == "canary" else "abort"
        raise FleetConflict(
            f"{describe(state)} are resident and at most two versions may be: {action} the "
            f"{candidate.mode} (POST /admin/models/{candidate.mode}/abort) before {wanted}"
        )


def load(state: FleetState, version: str) -> Updates:
    _no_third(state, f"loading {version}")
    previous = state.serving if state.serving not in (None, version) else state.previous
    return {"serving": version, "previous": previous}


def rollback(state: FleetState) -> Updates:
    if state.previous is None or state.previous == state.serving:
        raise FleetConflict(
            f"no previous version of {state.model} to roll back to ({describe(state)}); "
            "load one by name instead"
        )
    _no_third(state, f"rolling back to {state.previous}")
    return {"serving": state.previous, "previous": state.serving}


def start_candidate(
    state: FleetState, mode: CandidateMode, version: str, percent: float
) -> Updates:
    if version == state.serving:
        raise FleetConflict(f"{version} is already the serving version; choose another one")
    current = state.candidate
    if current is not None and current.version != version:
        _no_third(state, f"starting {mode} {version}")
    return {"candidate": CandidateState(mode=mode, version=version, percent=percent)}


def promote(state: FleetState) -> Updates:
    candidate = state.candidate
    if candidate is None or candidate.mode != "canary":
        raise FleetConflict(f"no canary to promote ({describe(state)})")
    return {"serving": candidate.version, "previous": state.serving, "candidate": None}


def abort(state: FleetState, mode: CandidateMode) -> Updates:
    candidate = state.candidate
    if candidate is None or candidate.mode != mode:
        raise FleetConflict(f"no {mode} to abort ({describe(state)})")
    return {"candidate": None}


def replace_fusion(state: FleetState, version: str, fusion: FusionConfig | None) -> Updates:
    resident = {state.serving} | ({state.candidate.version} if state.candidate else set())
    if version not in resident:
        raise FleetConflict(
            f"{version} is not resident ({describe(state)}): replace the presets of the serving "
            "version or of the canary/shadow version"
        )
    overrides = dict(state.fusion)
    if fusion is None:
        overrides.pop(version, None)
    else:
        overrides[version] = fusion
    return {"fusion": overrides}


def pruned_fusion(state: FleetState) -> dict[str, FusionConfig]:
    """Overrides of versions the fleet may still serve (serving, previous, candidate) only."""
    keep = {state.serving, state.previous} | (
        {state.candidate.version} if state.candidate else set()
    )
    return {v: f for v, f in state.fusion.items() if v in keep}
