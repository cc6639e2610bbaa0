"""Canary routing by a stable hash of the user id; shadow sampling per request."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from service.scoring.routing import Routing, user_bucket

SERVING: Any = SimpleNamespace(version="v1")
CANARY: Any = SimpleNamespace(version="v2")
USERS = [f"user-{k}" for k in range(2000)]


def canary_share(routing: Routing, users: list[str]) -> float:
    return 100 * sum(routing.pick(u)[1] == "canary" for u in users) / len(users)


@pytest.mark.parametrize("percent", [1.0, 10.0, 25.0, 50.0, 90.0])
def test_canary_share_is_within_three_points_over_2000_users(percent: float) -> None:
    routing = Routing.with_candidate(SERVING, CANARY, "canary", percent)
    assert abs(canary_share(routing, USERS) - percent) <= 3.0


def test_a_user_always_lands_on_the_same_side_and_more_percent_only_adds_users() -> None:
    ten = Routing.with_candidate(SERVING, CANARY, "canary", 10.0)
    thirty = Routing.with_candidate(SERVING, CANARY, "canary", 30.0)
    sides = {u: ten.pick(u)[0] for u in USERS}
    for _ in range(3):
        assert all(ten.pick(u)[0] is sides[u] for u in USERS)
    assert {u for u in USERS if sides[u] is CANARY} <= {
        u for u in USERS if thirty.pick(u)[0] is CANARY
    }


def test_another_canary_version_picks_other_users() -> None:
    other = SimpleNamespace(version="v3")
    first = {u for u in USERS if user_bucket(u, b"v2") < 1000}
    second = {u for u in USERS if user_bucket(u, other.version.encode()) < 1000}
    assert first != second


def test_requests_without_a_user_id_and_shadows_go_to_the_serving_version() -> None:
    assert Routing.with_candidate(SERVING, CANARY, "canary", 100.0).pick(None) == (
        SERVING,
        "serving",
    )
    shadow = Routing.with_candidate(SERVING, CANARY, "shadow", 100.0)
    assert all(shadow.pick(u) == (SERVING, "serving") for u in USERS[:100])
    assert Routing(SERVING).shadow() is None


def test_shadow_sampling_follows_the_percent() -> None:
    shadow = Routing.with_candidate(SERVING, CANARY, "shadow", 20.0)
    sampled = sum(shadow.shadow() is CANARY for _ in range(5000))
    assert 800 <= sampled <= 1200  # 1000 expected; 6 standard deviations either side
