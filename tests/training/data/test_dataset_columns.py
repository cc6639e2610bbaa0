"""dataset.yaml's computed columns, sample weights, request groups and views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from service.contracts.feature_spec import FeatureSpec
from training.data.computed import GROUP_COLUMN, WEIGHT_PREFIX
from training.data.dataset import load_dataset
from training.data.splits import random_split

SPEC = {"name": "t", "features": [{"name": "u", "side": "user", "kind": "categorical"},
                                  {"name": "i", "side": "item", "kind": "categorical"}]}  # fmt: skip


def write(tmp_path: Path, frame: pd.DataFrame, meta: dict[str, Any], file: str = "dataset.yaml") -> Path:
    frame.to_parquet(tmp_path / "impressions.parquet", index=False)
    FeatureSpec.model_validate(SPEC).dump(tmp_path / "feature_spec.yaml")
    meta = {"name": "t", "data_card": None, **meta}
    (tmp_path / file).write_text(yaml.safe_dump(meta), encoding="utf-8")
    return tmp_path / file


def frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    click = rng.integers(0, 2, rows).astype(float)
    return pd.DataFrame({
        "u": rng.integers(0, 5, rows), "i": rng.integers(0, 9, rows), "click": click,
        "watch": click * rng.uniform(1, 100, rows), "req": np.repeat(np.arange(rows // 4), 4),
    })  # fmt: skip


CLICK = {"id": "click", "type": "binary"}


def test_sample_weights_and_computed_columns_land_in_the_frame(tmp_path: Path) -> None:
    meta = {"tasks": [CLICK, {"id": "engaged", "type": "binary"}],
            "columns": {"engaged": "watch > 30"},
            "sample_weights": {"click": "1 + log1p(watch)"}}  # fmt: skip
    data = load_dataset(write(tmp_path, frame(), meta))
    f = data.frame
    np.testing.assert_array_equal(f["engaged"], (f["watch"] > 30).astype(float))
    np.testing.assert_allclose(f[WEIGHT_PREFIX + "click"], 1 + np.log1p(f["watch"]))
    assert WEIGHT_PREFIX + "engaged" not in f.columns


def test_a_negative_or_missing_weight_is_refused_naming_the_row(tmp_path: Path) -> None:
    meta = {"tasks": [CLICK], "sample_weights": {"click": "watch - 50"}}
    with pytest.raises(ValueError, match=r"sample weight of 'click' \('watch - 50'\) is -"):
        load_dataset(write(tmp_path, frame(), meta))


def test_computed_columns_may_not_overwrite_the_log(tmp_path: Path) -> None:
    meta = {"tasks": [CLICK], "columns": {"watch": "2 * watch"}}
    with pytest.raises(ValueError, match="'watch' already exists"):
        load_dataset(write(tmp_path, frame(), meta))


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"tasks": [CLICK, {"id": "rel", "type": "rank"}]}, "need 'group'"),
        ({"tasks": [CLICK], "sample_weights": {"like": "1"}}, "unknown tasks"),
        ({"tasks": [CLICK], "sample_weights": {"click": "open('x')"}}, "calling 'open'"),
        ({"tasks": [CLICK, {"id": "a", "type": "binary"}, {"id": "b", "type": "binary"}],
          "esm2": {"ctr": "click", "action": "a", "cvr": "b"}}, "sample_space 'click'"),
        ({"tasks": [CLICK, {"id": "b", "type": "binary", "sample_space": "click"}],
          "funnel": ["click", "b"]}, "sample_space 'all'"),
    ],
)
def test_inconsistent_declarations_are_refused(
    tmp_path: Path, meta: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_dataset(write(tmp_path, frame(), meta))


def test_requests_stay_whole_on_one_side_of_the_split(tmp_path: Path) -> None:
    meta = {"tasks": [CLICK], "group": "req"}
    data = load_dataset(write(tmp_path, frame(400), meta))
    assert data.frame[GROUP_COLUMN].nunique() == 100
    train, val, test = random_split(data, seed=3, val_fraction=0.2, test_fraction=0.1)
    assert val is not None
    assert test is not None
    parts = [set(part.frame["req"]) for part in (train, val, test)]
    assert not parts[0] & parts[1]
    assert not parts[0] & parts[2]
    assert not parts[1] & parts[2]
    assert (len(val), len(test)) == (80, 40)


def test_a_view_file_loads_other_tasks_over_the_same_directory(tmp_path: Path) -> None:
    write(tmp_path, frame(), {"tasks": [CLICK]})
    view = write(tmp_path, frame(), {"tasks": [CLICK, {"id": "long", "type": "binary"}],
                                     "columns": {"long": "watch > 60"}}, "long.yaml")  # fmt: skip
    assert [t.id for t in load_dataset(tmp_path).tasks] == ["click"]
    data = load_dataset(view)
    assert [t.id for t in data.tasks] == ["click", "long"]
    assert data.dir == tmp_path
    assert data.source == view
