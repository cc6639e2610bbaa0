"""User and item tables matching the ``published_store`` test model, written as Parquet files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures.published_model import raw_items, raw_user

USERS = 60
ITEMS = 80


@dataclass(frozen=True)
class TablePaths:
    users: Path
    items: Path


@pytest.fixture(scope="session")
def loadtest_tables(tmp_path_factory: pytest.TempPathFactory) -> TablePaths:
    root = tmp_path_factory.mktemp("loadtest-tables")
    users = [raw_user(seed) | {"user_id": f"u{seed}"} for seed in range(USERS)]
    items = raw_items(ITEMS, seed=3) | {"item_id": [f"i{k}" for k in range(ITEMS)]}
    paths = TablePaths(root / "users.parquet", root / "items.parquet")
    pq.write_table(pa.Table.from_pylist(users), paths.users)
    pq.write_table(pa.table(items), paths.items)
    return paths
