"""The feed simulator: rates near real feeds, the ESMM funnel, position bias, files and determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from service.contracts.feature_spec import FeatureSpec
from training.data.dataset import Dataset, load_dataset
from training.data.loader import read_table
from training.data.simulator import SimulatorConfig, simulate


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("feed")
    simulate(SimulatorConfig(rows=20_000, seed=7), out)
    return load_dataset(out)


def test_rates_land_near_real_feeds(feed: Dataset) -> None:
    click = feed.frame["click"].to_numpy()
    convert = feed.frame["convert"].to_numpy()
    assert 0.05 <= click.mean() <= 0.10
    assert 0.015 <= convert[click == 1].mean() <= 0.06
    assert 0.0 < feed.frame["like"].mean() < click.mean()
    assert 0.0 < feed.frame["share"].mean() < feed.frame["like"].mean()


def test_conversion_watch_time_like_and_share_only_after_a_click(feed: Dataset) -> None:
    f = feed.frame
    not_clicked = f["click"] == 0
    assert (f.loc[not_clicked, ["convert", "like", "share", "watch_time"]] == 0).all().all()
    assert (f.loc[~not_clicked, "watch_time"] > 0).all()


def test_sample_space_of_convert_is_the_clicked_rows(feed: Dataset) -> None:
    mask = feed.sample_space_mask("convert")
    np.testing.assert_array_equal(mask, feed.frame["click"].to_numpy() == 1)
    assert feed.sample_space_mask("click").all()


def test_clicks_fall_with_display_position(feed: Dataset) -> None:
    f = feed.frame
    top = f.loc[f["position"] < 5, "click"].mean()
    bottom = f.loc[f["position"] >= 15, "click"].mean()
    assert top > 1.5 * bottom


def test_directory_holds_tables_spec_config_and_card(feed: Dataset) -> None:
    names = {p.name for p in feed.dir.iterdir()}
    assert {"impressions.parquet", "users.parquet", "items.parquet", "feature_spec.yaml"} <= names
    assert {"dataset.yaml", "data_card.json"} <= names
    spec = FeatureSpec.load(feed.dir / "feature_spec.yaml")
    assert not spec.is_fitted
    assert spec.feature("position").side == "training"
    assert feed.position_feature == "position"
    assert feed.esmm is not None
    assert (feed.esmm.ctr, feed.esmm.cvr) == ("click", "convert")
    assert [d.id for d in feed.derived] == ["ctcvr"]
    assert feed.task("watch_time").target_transform == "log1p"


def test_entity_tables_match_the_impressions(feed: Dataset) -> None:
    users = feed.entity_table("users")
    items = feed.entity_table("items")
    assert users["user_id"].is_unique
    assert items["item_id"].is_unique
    row = feed.frame.iloc[123]
    user = users.set_index("user_id").loc[row["user_id"]]
    assert user["user_age"] == row["user_age"]
    assert user["history"] == row["history"]
    item = items.set_index("item_id").loc[row["item_id"]]
    assert item["item_price"] == row["item_price"]


def test_histories_are_recent_known_item_ids(feed: Dataset) -> None:
    lengths = feed.frame["history"].map(len)
    assert lengths.max() <= 30
    assert lengths.mean() > 3
    known = set(feed.entity_table("items")["item_id"])
    assert all(set(h) <= known for h in feed.frame["history"].head(500))


def test_data_card_states_rates_correlations_and_a_nontrivial_bayes_auc(feed: Dataset) -> None:
    card = pd.read_json(feed.dir / "data_card.json", typ="series")
    assert card["rows"] == 20_000
    click = card["tasks"]["click"]
    assert click["rate"] == pytest.approx(feed.frame["click"].mean(), abs=1e-6)
    assert 0.75 < click["bayes_auc"] < 0.87
    assert click["bayes_auc"] < card["derived"]["ctcvr"]["bayes_auc"] < 1.0  # ESMM's ceiling
    # Without the display position (training-only) the ceiling is lower, but not by much.
    assert click["bayes_auc"] - 0.03 < click["served_bayes_auc"] < click["bayes_auc"]
    ctcvr = card["derived"]["ctcvr"]
    assert ctcvr["bayes_auc"] - 0.03 < ctcvr["served_bayes_auc"] < ctcvr["bayes_auc"]
    assert card["tasks"]["convert"]["n"] == int(feed.frame["click"].sum())
    assert card["label_correlations"]["click"]["watch_time"] > 0.3


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        simulate(SimulatorConfig(rows=1500, seed=seed, users=100, items=80), tmp_path / name)
    a, b, c = (pd.read_parquet(tmp_path / n / "impressions.parquet") for n in "abc")
    pd.testing.assert_frame_equal(a, b)
    assert not a[["user_id", "item_id", "click"]].equals(c[["user_id", "item_id", "click"]])
    users_a = pd.read_parquet(tmp_path / "a" / "users.parquet")
    pd.testing.assert_frame_equal(users_a, pd.read_parquet(tmp_path / "b" / "users.parquet"))


def test_rows_beyond_one_chunk_are_all_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("training.data.simulator.CHUNK_ROWS", 400)
    simulate(SimulatorConfig(rows=1000, seed=0, users=50, items=40), tmp_path)
    frame = pd.read_parquet(tmp_path / "impressions.parquet")
    assert len(frame) == 1000
    assert frame["user_id"].between(1, 50).all()
    assert frame["item_id"].between(1, 40).all()


def test_partitioned_log_holds_the_same_rows_as_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("training.data.simulator.CHUNK_ROWS", 400)
    config = SimulatorConfig(rows=2000, seed=3, users=60, items=50)
    simulate(config, tmp_path / "one")
    simulate(config, tmp_path / "parts", part_rows=800)
    parts = sorted((tmp_path / "parts" / "impressions").glob("*.parquet"))
    assert [p.name for p in parts] == [f"part-0000{i}.parquet" for i in range(3)]
    assert [pq.ParquetFile(p).metadata.num_row_groups for p in parts] == [2, 2, 1]
    one, many = load_dataset(tmp_path / "one"), load_dataset(tmp_path / "parts")
    assert many.meta.impressions == "impressions"
    pd.testing.assert_frame_equal(one.frame, many.frame)


def test_hive_partitioned_folder_is_read_with_its_partition_column(tmp_path: Path) -> None:
    simulate(SimulatorConfig(rows=600, seed=0, users=30, items=20), tmp_path)
    frame = pd.read_parquet(tmp_path / "impressions.parquet")
    folder = tmp_path / "by_day"
    for day, rows in (("2026-01-01", frame.iloc[:250]), ("2026-01-02", frame.iloc[250:])):
        (folder / f"day={day}").mkdir(parents=True)
        rows.to_parquet(folder / f"day={day}" / "part-0.parquet", index=False)
    read = read_table(folder, ["history"])
    assert len(read) == 600
    assert read["day"].astype(str).tolist() == ["2026-01-01"] * 250 + ["2026-01-02"] * 350
    assert read["history"].iloc[0] == frame["history"].iloc[0].tolist()


def test_writing_parts_into_a_folder_that_holds_parts_is_refused(tmp_path: Path) -> None:
    config = SimulatorConfig(rows=300, seed=0, users=30, items=20)
    simulate(config, tmp_path, part_rows=200)
    with pytest.raises(FileExistsError, match="impressions already holds 1 part files"):
        simulate(config, tmp_path, part_rows=200)


def test_history_length_sets_the_sequence_length_and_caps_histories(tmp_path: Path) -> None:
    simulate(SimulatorConfig(rows=2_000, seed=3, history_length=5), tmp_path)
    spec = FeatureSpec.load(tmp_path / "feature_spec.yaml")
    assert spec.sequences()[0].max_length == 5
    histories = pq.read_table(tmp_path / "users.parquet").column("history").to_pylist()
    assert max(map(len, histories)) == 5
