import asyncio
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from service.cli.main import main
from service.store.loader import FeatureLoadError, load_table
from service.store.ports import FeatureFetch
from service.store.redis_feature_store import RedisFeatureStore, item_key

pytestmark = pytest.mark.redis


def write_parquet_tables(directory: Path) -> tuple[Path, Path]:
    users = pa.table(
        {
            "user_id": [1, 2, 3],
            "age": [20, None, 41],
            "history": [[10, 11], [], [12]],
        }
    )
    items = pa.table(
        {
            "item_id": [f"i{index}" for index in range(7)],
            "price": [float(index) + 0.5 for index in range(7)],
            "category": ["a", "b", "a", "c", "b", "a", "c"],
        }
    )
    pq.write_table(users, directory / "users.parquet")
    pq.write_table(items, directory / "items.parquet")
    return directory / "users.parquet", directory / "items.parquet"


def fetch(url: str, prefix: str, user_id: str | None, item_ids: list[str]) -> FeatureFetch:
    async def scenario() -> FeatureFetch:
        # not a test of time: a busy CI machine was seen to need more than the 30 ms default
        store = RedisFeatureStore.from_url(url, prefix=prefix, timeout_ms=2000, budget_ms=2000)
        try:
            return await store.fetch(user_id, item_ids)
        finally:
            await store.close()

    return asyncio.run(scenario())


def test_parquet_tables_load_in_batches_and_fetch_back(
    tmp_path: Path, redis_server: str, redis_prefix: str
) -> None:
    users, items = write_parquet_tables(tmp_path)
    progress: list[tuple[int, int | None]] = []
    client = redis.Redis.from_url(redis_server)
    try:
        load_table(client, users, entity="user", key_column="user_id", prefix=redis_prefix)
        report = load_table(
            client,
            items,
            entity="item",
            key_column="item_id",
            prefix=redis_prefix,
            batch_size=3,
            on_progress=lambda done, total: progress.append((done, total)),
        )
    finally:
        client.close()
    assert report.rows == 7
    assert progress == [(3, 7), (6, 7), (7, 7)]
    result = fetch(redis_server, redis_prefix, "2", ["i6", "i0", "nope"])
    assert result.user == {"user_id": 2, "history": []}  # null age dropped: missing
    assert result.items == [
        {"item_id": "i6", "price": 6.5, "category": "c"},
        {"item_id": "i0", "price": 0.5, "category": "a"},
        None,
    ]
    assert fetch(redis_server, redis_prefix, "1", []).user == {
        "user_id": 1,
        "age": 20,
        "history": [10, 11],
    }


def test_csv_table_loads_with_json_array_cells_as_lists(
    tmp_path: Path, redis_server: str, redis_prefix: str
) -> None:
    table = tmp_path / "users.csv"
    table.write_text('uid,age,history\n7,30,"[1, 2, 3]"\n8,25,[]\n')
    client = redis.Redis.from_url(redis_server)
    try:
        load_table(client, table, entity="user", key_column="uid", prefix=redis_prefix)
    finally:
        client.close()
    assert fetch(redis_server, redis_prefix, "7", []).user == {
        "uid": 7,
        "age": 30,
        "history": [1, 2, 3],
    }


def test_missing_key_column_names_the_columns_and_the_flag(
    tmp_path: Path, redis_server: str
) -> None:
    _, items = write_parquet_tables(tmp_path)
    client = redis.Redis.from_url(redis_server)
    try:
        with pytest.raises(FeatureLoadError, match=r"no key column 'sku'.*--item-key"):
            load_table(client, items, entity="item", key_column="sku", prefix="unused")
    finally:
        client.close()


def test_unknown_format_is_refused_with_the_accepted_ones(
    tmp_path: Path, redis_server: str
) -> None:
    table = tmp_path / "users.xlsx"
    table.write_bytes(b"PK")
    client = redis.Redis.from_url(redis_server)
    try:
        with pytest.raises(FeatureLoadError, match=r"\.parquet or \.csv"):
            load_table(client, table, entity="user", key_column="user_id")
    finally:
        client.close()


def test_cli_loads_both_tables_with_ttl(
    tmp_path: Path, redis_server: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    users, items = write_parquet_tables(tmp_path)
    argv = ["features", "load", "--redis", redis_server, "--users", str(users)]
    argv += ["--items", str(items), "--prefix", redis_prefix, "--batch", "2", "--ttl", "600"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "loaded 3 users" in out.out
    assert "loaded 7 items" in out.out
    assert "items: 7/7 rows" in out.err
    client = redis.Redis.from_url(redis_server)
    ttl = client.ttl(item_key(redis_prefix, "i3"))
    client.close()
    assert 0 < ttl <= 600


def test_cli_reports_missing_key_column_and_fails(
    tmp_path: Path, redis_server: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    users, _ = write_parquet_tables(tmp_path)
    argv = ["features", "load", "--redis", redis_server, "--users", str(users)]
    argv += ["--user-key", "customer", "--prefix", redis_prefix]
    assert main(argv) == 1
    assert "no key column 'customer'" in capsys.readouterr().err


def test_cli_without_tables_explains_what_to_pass(
    redis_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["features", "load", "--redis", redis_server]) == 2
    assert "--users FILE" in capsys.readouterr().err
