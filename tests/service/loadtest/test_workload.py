"""Load-test bodies: real table rows, the model's features only, a spread of sizes and users."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from service.loadtest.workload import Tables, Workload, WorkloadConfig
from service.schemas import RankRequest
from tests.fixtures.published_model import PublishedModel
from tests.service.loadtest.conftest import ITEMS, USERS, TablePaths


@pytest.fixture
def tables(loadtest_tables: TablePaths) -> Tables:
    return Tables.read(loadtest_tables.users, loadtest_tables.items)


def test_ids_mode_sends_only_ids_and_valid_request_bodies(
    tables: Tables, published_store: PublishedModel
) -> None:
    workload = Workload(tables, WorkloadConfig(mode="ids", candidates=10), published_store.spec)
    for raw in workload.encoded(20):
        body = orjson.loads(raw)
        RankRequest.model_validate(body)  # the service's own schema accepts it
        assert set(body["user"]) == {"id"}
        assert all(set(candidate) == {"id"} for candidate in body["candidates"])
        assert set(body["context"]) == {"hour"}  # drawn from the fitted vocabulary
        assert body["context"]["hour"] in range(24)


def test_features_mode_sends_the_model_features_of_the_drawn_rows(
    tables: Tables, published_store: PublishedModel
) -> None:
    spec = published_store.spec
    workload = Workload(tables, WorkloadConfig(mode="features", candidates=5, spread=0), spec)
    body = workload.body()
    user_row = tables.users[tables.user_ids.index(body["user"]["id"])]
    assert body["user"]["features"] == {n: user_row[n] for n in spec.names("user")}
    assert len(body["candidates"]) == 5
    for candidate in body["candidates"]:
        row = tables.items[tables.item_ids.index(candidate["id"])]
        assert candidate["features"] == {n: row[n] for n in spec.names("item")}


def test_columnar_candidates_carry_one_list_per_feature(
    tables: Tables, published_store: PublishedModel
) -> None:
    config = WorkloadConfig(mode="features", candidates=7, spread=0, columnar=True)
    body = Workload(tables, config, published_store.spec).body()
    columns = body["candidates"]
    assert len(columns["ids"]) == 7
    assert set(columns["features"]) == set(published_store.spec.names("item"))
    assert all(len(values) == 7 for values in columns["features"].values())


def test_candidate_counts_spread_around_the_median_within_the_clip(tables: Tables) -> None:
    config = WorkloadConfig(candidates=20, spread=0.6, max_candidates=50, seed=1)
    workload = Workload(tables, config)
    counts = [len(workload.body()["candidates"]) for _ in range(400)]
    assert min(counts) >= 1
    assert max(counts) <= 50
    assert len(set(counts)) > 15  # a spread, not one size
    median = sorted(counts)[len(counts) // 2]
    assert 15 <= median <= 25


def test_popular_users_come_back_more_often_than_uniform_draws(tables: Tables) -> None:
    def top_share(zipf: float) -> float:
        workload = Workload(tables, WorkloadConfig(candidates=1, spread=0, zipf=zipf, seed=2))
        users = Counter(workload.body()["user"]["id"] for _ in range(600))
        return users.most_common(1)[0][1] / 600

    assert top_share(1.0) > 3 * top_share(0.0)


def test_same_seed_gives_the_same_bodies(tables: Tables) -> None:
    config = WorkloadConfig(candidates=8, seed=5)
    assert Workload(tables, config).encoded(5) == Workload(tables, config).encoded(5)


def test_candidates_are_distinct_and_capped_by_the_item_table(tables: Tables) -> None:
    body = Workload(
        tables, WorkloadConfig(candidates=10_000, spread=0, max_candidates=10_000)
    ).body()
    ids = [c["id"] for c in body["candidates"]]
    assert len(ids) == len(set(ids)) == ITEMS


def test_a_table_without_its_id_column_is_refused_naming_the_file(
    loadtest_tables: TablePaths, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"users\.parquet: no id column 'uid'"):
        Tables.read(loadtest_tables.users, loadtest_tables.items, user_key="uid")
    assert len(Tables.read(loadtest_tables.users, loadtest_tables.items).users) == USERS
