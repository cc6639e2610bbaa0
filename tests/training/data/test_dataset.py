"""Data directories and user logs: loading, sample spaces and errors that name the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from service.contracts.feature_spec import FeatureSpec
from service.contracts.tasks import TaskSpec
from training.data.dataset import DatasetConfig, load_dataset, write_dataset
from training.data.loader import load_log

SPEC = FeatureSpec.model_validate(
    {
        "name": "tiny",
        "features": [
            {"name": "user_id", "side": "user", "kind": "categorical"},
            {"name": "history", "side": "user", "kind": "sequence", "max_length": 5,
             "item_feature": "item_id"},
            {"name": "item_id", "side": "item", "kind": "categorical"},
            {"name": "price", "side": "item", "kind": "numeric"},
            {"name": "position", "side": "training", "kind": "categorical"},
        ],
    }
)  # fmt: skip
TASKS = [
    TaskSpec(id="click", type="binary"),
    TaskSpec(id="convert", type="binary", sample_space="click"),
]


def _frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    click = (rng.random(n) < 0.5).astype(float)
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 5, n),
            "history": [[int(i) for i in rng.integers(1, 9, k)] for k in rng.integers(0, 4, n)],
            "item_id": rng.integers(1, 9, n),
            "price": rng.random(n),
            "position": rng.integers(0, 3, n),
            "click": click,
            "convert": click * (rng.random(n) < 0.5),
        }
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    meta = DatasetConfig(name="tiny", tasks=TASKS, position_feature="position")
    write_dataset(tmp_path, meta, SPEC, _frame())
    return tmp_path


def test_load_gives_spec_tasks_and_label_columns_by_task_id(data_dir: Path) -> None:
    data = load_dataset(data_dir)
    assert data.spec == SPEC
    assert [t.id for t in data.tasks] == ["click", "convert"]
    assert data.position_feature == "position"
    assert len(data) == 40
    assert data.frame["history"].map(lambda h: isinstance(h, list)).all()
    np.testing.assert_array_equal(data.labels("click"), _frame()["click"].to_numpy(np.float32))


def test_sample_space_mask_follows_the_space_tasks_label(data_dir: Path) -> None:
    data = load_dataset(data_dir)
    np.testing.assert_array_equal(data.sample_space_mask("convert"), data.frame["click"] == 1)
    assert data.sample_space_mask(TASKS[0]).all()


def test_missing_dataset_yaml_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="generate"):
        load_dataset(tmp_path)


def test_missing_feature_and_label_columns_are_named(data_dir: Path) -> None:
    frame = _frame().drop(columns=["price", "convert"])
    frame.to_parquet(data_dir / "impressions.parquet")
    with pytest.raises(ValueError, match=r"\['price'\].*\['convert'\]"):
        load_dataset(data_dir)


def test_invalid_binary_label_names_column_and_row(data_dir: Path) -> None:
    frame = _frame()
    frame.loc[3, "click"] = 2.0
    frame.to_parquet(data_dir / "impressions.parquet")
    with pytest.raises(ValueError, match=r"'click' holds 2\.0 at row 3"):
        load_dataset(data_dir)


def test_position_feature_must_be_training_side(data_dir: Path) -> None:
    raw = yaml.safe_load((data_dir / "dataset.yaml").read_text())
    raw["position_feature"] = "price"
    (data_dir / "dataset.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="training-side"):
        load_dataset(data_dir)


def test_sample_space_naming_an_unknown_task_is_rejected(data_dir: Path) -> None:
    raw = yaml.safe_load((data_dir / "dataset.yaml").read_text())
    raw["tasks"][1]["sample_space"] = "purchase"
    (data_dir / "dataset.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="sample_space"):
        load_dataset(data_dir)


def test_csv_log_parses_sequences_given_as_json_or_separated_ids(tmp_path: Path) -> None:
    frame = _frame(3).astype({"history": object})
    frame["history"] = ["[3, 4]", "5 6 7", ""]
    frame.to_csv(tmp_path / "log.csv", index=False)
    loaded = load_log(tmp_path / "log.csv", SPEC, TASKS)
    assert list(loaded["history"]) == [[3, 4], [5, 6, 7], None]


def test_log_missing_columns_error_lists_them_all(tmp_path: Path) -> None:
    _frame(5).drop(columns=["user_id", "item_id"]).to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(ValueError, match=r"\['user_id', 'item_id'\]"):
        load_log(tmp_path / "log.csv", SPEC, TASKS)


def test_unsupported_log_format_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_log(tmp_path / "log.json", SPEC, TASKS)
