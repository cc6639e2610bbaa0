"""Splits a user controls: a split column, separate directories, or a seeded random split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.dataset import DatasetConfig, load_dataset, write_dataset
from training.data.splits import DataSources, SplitPlan, random_split, split_rows
from tests.training.data.test_dataset import SPEC, TASKS, _frame

PLAN = SplitPlan(seed=5, val_fraction=0.25)


def _write(directory: Path, frame: pd.DataFrame, split_column: str | None = None) -> Path:
    meta = DatasetConfig(name="tiny", tasks=TASKS, split_column=split_column)
    write_dataset(directory, meta, SPEC, frame)
    return directory


def _numbered(n: int = 40) -> pd.DataFrame:
    return _frame(n).assign(row=np.arange(n))


def test_random_split_is_deterministic_disjoint_and_complete(tmp_path: Path) -> None:
    data = load_dataset(_write(tmp_path, _numbered()))
    train, val, test = random_split(data, seed=5, val_fraction=0.25, test_fraction=0.1)
    assert val is not None and test is not None
    assert (len(train), len(val), len(test)) == (26, 10, 4)
    rows = [*train.frame["row"], *val.frame["row"], *test.frame["row"]]
    assert sorted(rows) == list(range(40))
    again = random_split(data, seed=5, val_fraction=0.25, test_fraction=0.1)
    pd.testing.assert_frame_equal(test.frame, again[2].frame)  # type: ignore[union-attr]
    assert list(random_split(data, 6, 0.25)[0].frame["row"]) != list(train.frame["row"])
    assert train.spec is data.spec and train.tasks == data.tasks


def test_a_test_fraction_leaves_the_validation_rows_unchanged(tmp_path: Path) -> None:
    data = load_dataset(_write(tmp_path, _numbered()))
    _, without, none = random_split(data, seed=3, val_fraction=0.25)
    _, with_test, _ = random_split(data, seed=3, val_fraction=0.25, test_fraction=0.25)
    assert none is None
    assert without is not None and with_test is not None
    assert list(without.frame["row"]) == list(with_test.frame["row"])


@pytest.mark.parametrize(("val", "test"), [(1.0, 0.0), (0.5, 0.5), (0.001, 0.0), (-0.1, 0.0)])
def test_a_split_that_leaves_a_part_empty_is_refused(tmp_path: Path, val: float, test: float) -> None:
    data = load_dataset(_write(tmp_path, _numbered()))
    with pytest.raises(ValueError, match="fraction|every part needs rows"):
        random_split(data, seed=0, val_fraction=val, test_fraction=test)


def test_split_column_gives_exactly_the_marked_rows(tmp_path: Path) -> None:
    marks = np.array(["train"] * 30 + ["validation"] * 6 + ["test"] * 4)
    frame = _numbered().assign(part=np.random.default_rng(1).permutation(marks))
    splits = split_rows(DataSources(_write(tmp_path, frame, split_column="part")), PLAN)
    assert splits.rows() == {"train": 30, "validation": 6, "test": 4}
    for name in ("train", "validation", "test"):
        expected = frame.loc[frame["part"] == name, "row"].tolist()
        assert splits.part(name).frame["row"].tolist() == expected  # type: ignore[arg-type]
    assert splits.origin["test"] == "rows with part == test"


def test_split_column_without_test_rows_has_no_test_part(tmp_path: Path) -> None:
    frame = _numbered().assign(part=["train"] * 32 + ["Validation "] * 8)
    splits = split_rows(DataSources(_write(tmp_path, frame, split_column="part")), PLAN)
    assert splits.test is None
    with pytest.raises(ValueError, match="no test rows"):
        splits.part("test")


def test_split_column_with_other_values_names_them(tmp_path: Path) -> None:
    frame = _numbered().assign(part=["train"] * 30 + ["val"] * 10)
    with pytest.raises(ValueError, match=r"holds \['val'\]"):
        split_rows(DataSources(_write(tmp_path, frame, split_column="part")), PLAN)


def test_split_column_and_directories_together_are_refused(tmp_path: Path) -> None:
    frame = _numbered().assign(part=["train"] * 30 + ["validation"] * 10)
    data = _write(tmp_path / "a", frame, split_column="part")
    with pytest.raises(ValueError, match="not both"):
        split_rows(DataSources(data, validation=data), PLAN)


def test_validation_and_test_directories_are_used_whole(tmp_path: Path) -> None:
    train = _write(tmp_path / "train", _numbered(40))
    val = _write(tmp_path / "val", _numbered(12))
    test = _write(tmp_path / "test", _numbered(7))
    splits = split_rows(DataSources(train, val, test), PLAN)
    assert splits.rows() == {"train": 40, "validation": 12, "test": 7}
    assert splits.origin["validation"] == str(val)


def test_a_test_directory_alone_keeps_a_random_validation_split(tmp_path: Path) -> None:
    train = _write(tmp_path / "train", _numbered(40))
    test = _write(tmp_path / "test", _numbered(7))
    splits = split_rows(DataSources(train, test=test), PLAN)
    assert splits.rows() == {"train": 30, "validation": 10, "test": 7}


def test_held_out_directory_with_other_tasks_is_refused(tmp_path: Path) -> None:
    train = _write(tmp_path / "train", _numbered(40))
    other = tmp_path / "other"
    meta = DatasetConfig(name="tiny", tasks=TASKS[:1])
    write_dataset(other, meta, SPEC, _numbered(10))
    with pytest.raises(ValueError, match="same tasks"):
        split_rows(DataSources(train, validation=other), PLAN)


def test_max_rows_shrinks_every_part_in_proportion(tmp_path: Path) -> None:
    data = _write(tmp_path, _numbered(40))
    plan = SplitPlan(seed=5, val_fraction=0.25, test_fraction=0.25, max_rows=20)
    assert split_rows(DataSources(data), plan).rows() == {"train": 10, "validation": 5, "test": 5}


def test_sources_round_trip_through_json(tmp_path: Path) -> None:
    sources = DataSources(tmp_path / "a", None, tmp_path / "c")
    assert DataSources.from_json(sources.as_json()) == sources
