"""The simulator's post-click actions (ESM²'s funnel), requests and task views."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.dataset import load_dataset
from training.data.simulator import SimulatorConfig, simulate

EXISTING = ["user_id", "item_id", "hour", "device", "position", "click", "convert", "watch_time",
            "like", "share"]  # fmt: skip


@pytest.fixture(scope="module")
def requests_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("requests")
    simulate(SimulatorConfig(rows=20_000, seed=5, request_size=10), out, progress=False)
    return out


def test_new_action_columns_leave_every_existing_column_unchanged(tmp_path: Path) -> None:
    base = SimulatorConfig(rows=3_000, seed=9)
    simulate(base, tmp_path / "a", progress=False)
    simulate(replace(base, cart_rate=0.4, wish_rate=0.3), tmp_path / "b", progress=False)
    a = pd.read_parquet(tmp_path / "a" / "impressions.parquet")
    b = pd.read_parquet(tmp_path / "b" / "impressions.parquet")
    pd.testing.assert_frame_equal(a[EXISTING], b[EXISTING])
    assert b["cart"].sum() > a["cart"].sum()
    assert "request_id" not in a.columns  # independent impressions by default


def test_cart_and_wish_follow_a_click_and_make_a_purchase_likelier(requests_dir: Path) -> None:
    f = pd.read_parquet(requests_dir / "impressions.parquet")
    assert (f.loc[f["click"] == 0, ["cart", "wish"]] == 0).all().all()
    clicked = f[f["click"] == 1]
    action = (clicked["cart"] + clicked["wish"]) > 0
    assert 0.1 < action.mean() < 0.4
    assert clicked.loc[action, "convert"].mean() > 4 * clicked.loc[~action, "convert"].mean()


def test_a_request_is_one_user_in_one_context_over_display_positions(requests_dir: Path) -> None:
    f = pd.read_parquet(requests_dir / "impressions.parquet")
    per_request = f.groupby("request_id")
    assert per_request.ngroups == 2_000
    assert (per_request[["user_id", "hour", "device"]].nunique() == 1).all().all()
    np.testing.assert_array_equal(per_request["position"].apply(sorted).iloc[0], np.arange(10))


def test_views_train_other_task_sets_over_the_same_files(requests_dir: Path) -> None:
    esm2 = load_dataset(requests_dir / "esm2.yaml")
    assert [t.id for t in esm2.tasks] == ["click", "action", "convert"]
    assert esm2.meta.esm2 is not None
    np.testing.assert_array_equal(
        esm2.frame["action"], np.maximum(esm2.frame["cart"], esm2.frame["wish"])
    )
    assert [d.id for d in esm2.derived] == ["ctavr", "ctcvr"]
    nmtr = load_dataset(requests_dir / "nmtr.yaml")
    assert nmtr.meta.funnel == ["click", "cart", "convert"]
    assert all(t.sample_space == "all" for t in nmtr.tasks)
    ltr = load_dataset(requests_dir / "ltr.yaml")
    assert ltr.task("relevance").type == "rank"
    assert ltr.meta.group == "request_id"
    assert ltr.frame["relevance"].max() >= 2
