"""Admin changes as pure state transitions: what each one sets, and what it refuses with a 409."""

from __future__ import annotations

import pytest

from service.contracts.fusion import FusionConfig
from service.fleet import changes
from service.fleet.changes import FleetConflict
from service.fleet.state import CandidateState, FleetState

FUSION = FusionConfig.model_validate(
    {"default": "only_click", "presets": {"only_click": {"terms": {"click": {"weight": 1.0}}}}}
)


def state(**fields: object) -> FleetState:
    return FleetState.model_validate({"model": "feed", "serving": "v1", **fields})


def canary(version: str = "v2", percent: float = 10.0) -> dict[str, object]:
    return {"mode": "canary", "version": version, "percent": percent}


def test_load_remembers_the_version_it_replaces() -> None:
    assert changes.load(state(), "v2") == {"serving": "v2", "previous": "v1"}
    assert changes.load(state(previous="v0"), "v1") == {"serving": "v1", "previous": "v0"}


def test_a_third_resident_version_is_refused_naming_what_is_loaded() -> None:
    with_canary = state(candidate=canary())
    with pytest.raises(FleetConflict, match=r"serving v1 and canary v2 \(10%\).*abort") as info:
        changes.load(with_canary, "v3")
    assert info.value.status_code == 409
    with pytest.raises(FleetConflict, match="serving v1 and canary v2"):
        changes.start_candidate(with_canary, "shadow", "v3", 5.0)
    with pytest.raises(FleetConflict, match="serving v1 and canary v2"):
        changes.rollback(state(previous="v0", candidate=canary()))


def test_a_candidate_can_change_its_share_or_mode_without_a_third_version() -> None:
    with_canary = state(candidate=canary())
    assert changes.start_candidate(with_canary, "canary", "v2", 30.0) == {
        "candidate": CandidateState(mode="canary", version="v2", percent=30.0)
    }
    assert changes.start_candidate(with_canary, "shadow", "v2", 5.0)["candidate"].mode == "shadow"


def test_the_serving_version_cannot_be_its_own_candidate() -> None:
    with pytest.raises(FleetConflict, match="already the serving version"):
        changes.start_candidate(state(), "canary", "v1", 10.0)


def test_promote_makes_the_canary_serve_and_abort_removes_it() -> None:
    with_canary = state(candidate=canary())
    assert changes.promote(with_canary) == {"serving": "v2", "previous": "v1", "candidate": None}
    assert changes.abort(with_canary, "canary") == {"candidate": None}
    with pytest.raises(FleetConflict, match="no shadow to abort"):
        changes.abort(with_canary, "shadow")
    with pytest.raises(FleetConflict, match="no canary to promote"):
        changes.promote(state(candidate={**canary(), "mode": "shadow"}))


def test_rollback_needs_a_previous_version() -> None:
    assert changes.rollback(state(previous="v0")) == {"serving": "v0", "previous": "v1"}
    with pytest.raises(FleetConflict, match="no previous version"):
        changes.rollback(state())


def test_presets_are_replaced_only_for_resident_versions_and_pruned_with_them() -> None:
    updates = changes.replace_fusion(state(candidate=canary()), "v2", FUSION)
    assert updates == {"fusion": {"v2": FUSION}}
    with pytest.raises(FleetConflict, match="v3 is not resident"):
        changes.replace_fusion(state(), "v3", FUSION)
    restored = changes.replace_fusion(state(fusion={"v1": FUSION}), "v1", None)
    assert restored == {"fusion": {}}
    old = state(serving="v5", previous="v4", fusion={"v1": FUSION, "v4": FUSION})
    assert set(changes.pruned_fusion(old)) == {"v4"}
