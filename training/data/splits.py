"""Which rows a run trains on, chooses its epoch on (validation) and reports (test).

Three ways, in order of precedence, so a user's own split is used exactly as given:

* a split column named in ``dataset.yaml`` (``split_column: split``): rows marked ``train``,
  ``validation`` and ``test`` (the test part may be empty);
* separate data directories (``train --val-data DIR --test-data DIR``): every row of each;
* otherwise a seeded random split of the training directory: ``val_fraction`` for validation and
  ``test_fraction`` (default 0: no test set) for test, with ``TrainConfig.data_split_seed``.

Training, evaluation and publishing all call ``split_rows`` with the sources a run recorded in its
checkpoint, so they see the same rows; test rows never choose the epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from training.data.computed import GROUP_COLUMN
from training.data.dataset import Dataset, load_dataset
from training.data.loader import check_columns

logger = logging.getLogger(__name__)

SplitName = Literal["train", "validation", "test"]
SPLIT_VALUES: tuple[SplitName, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class DataSources:
    """The data directories of a run; ``None``: that part comes out of ``train``."""

    train: Path
    validation: Path | None = None
    test: Path | None = None

    def as_json(self) -> dict[str, str | None]:
        return {
            "train": str(self.train.resolve()),
            "validation": None if self.validation is None else str(self.validation.resolve()),
            "test": None if self.test is None else str(self.test.resolve()),
        }

    @classmethod
    def from_json(cls, data: dict[str, str | None]) -> DataSources:
        train = data.get("train")
        if not train:
            raise ValueError(f"data sources {data} name no training directory")
        validation, test = data.get("validation"), data.get("test")
        return cls(
            Path(train), Path(validation) if validation else None, Path(test) if test else None
        )


@dataclass(frozen=True)
class SplitPlan:
    """The split settings of a training config (``TrainConfig`` provides them)."""

    seed: int
    val_fraction: float
    test_fraction: float = 0.0
    max_rows: int | None = None


@dataclass(frozen=True)
class Splits:
    """The rows of each part and, per part, where they came from (for logs and metrics.json)."""

    train: Dataset
    validation: Dataset
    test: Dataset | None
    origin: dict[str, str]

    def rows(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": 0 if self.test is None else len(self.test),
        }

    def part(self, name: SplitName) -> Dataset:
        chosen = {"train": self.train, "validation": self.validation, "test": self.test}[name]
        if chosen is None:
            raise ValueError(
                "this run has no test rows: give --test-data DIR, a split column with 'test' "
                "rows, or test_fraction > 0 when training"
            )
        return chosen


def split_rows(sources: DataSources, plan: SplitPlan) -> Splits:
    """Train, validation and (optional) test rows of a run, as the module docstring says."""
    dataset = load_dataset(sources.train)
    column = dataset.meta.split_column
    if column is not None:
        if sources.validation is not None or sources.test is not None:
            raise ValueError(
                f"{sources.train} marks its rows with split_column {column!r}; give either that "
                "column or --val-data / --test-data, not both"
            )
        splits = _by_column(dataset, column)
    else:
        splits = _by_sources(dataset, sources, plan)
    if len(splits.train) == 0 or len(splits.validation) == 0:
        raise ValueError(f"no training or no validation rows ({splits.rows()}): check the split")
    return _shrink(splits, plan.max_rows)


def _by_column(dataset: Dataset, column: str) -> Splits:
    if column not in dataset.frame.columns:
        raise ValueError(
            f"split_column {column!r} of {dataset.dir / 'dataset.yaml'} is not a column of the "
            f"impressions; columns: {sorted(map(str, dataset.frame.columns))[:20]}"
        )
    values = dataset.frame[column].astype(str).str.strip().str.lower().to_numpy()
    unknown = sorted(set(values.tolist()) - set(SPLIT_VALUES))
    if unknown:
        raise ValueError(
            f"split column {column!r} holds {unknown[:5]}: every row must say one of "
            f"{list(SPLIT_VALUES)}"
        )
    parts = {name: _subset(dataset, np.flatnonzero(values == name)) for name in SPLIT_VALUES}
    test = parts["test"] if len(parts["test"]) else None
    origin = {str(name): f"rows with {column} == {name}" for name in SPLIT_VALUES}
    return Splits(parts["train"], parts["validation"], test, origin)


def _by_sources(dataset: Dataset, sources: DataSources, plan: SplitPlan) -> Splits:
    val_fraction = 0.0 if sources.validation is not None else plan.val_fraction
    test_fraction = 0.0 if sources.test is not None else plan.test_fraction
    train, val, test = random_split(dataset, plan.seed, val_fraction, test_fraction)
    origin = {"train": f"{dataset.dir}"}
    if val_fraction or test_fraction:
        origin["train"] = f"the rest of {dataset.dir} (random split, seed {plan.seed})"
    origin["validation"] = f"random {val_fraction:.0%} of {dataset.dir} (seed {plan.seed})"
    if sources.validation is not None:
        val = _other(dataset, sources.validation)
        origin["validation"] = f"{sources.validation}"
    if test_fraction:
        origin["test"] = f"random {test_fraction:.0%} of {dataset.dir} (seed {plan.seed})"
    if sources.test is not None:
        test = _other(dataset, sources.test)
        origin["test"] = f"{sources.test}"
    assert val is not None  # a fraction > 0 or a directory, by construction
    return Splits(train, val, test, origin)


def random_split(
    dataset: Dataset, seed: int, val_fraction: float, test_fraction: float = 0.0
) -> tuple[Dataset, Dataset | None, Dataset | None]:
    """Deterministic random (train, validation, test) by row, or by request when the data set
    has a ``group`` (whole requests on one side); a part of fraction 0 is ``None``.

    The permutation puts validation first, so a split without test rows is the same as before
    test fractions existed.
    """
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} = {fraction} must lie in [0, 1)")
    rng = np.random.default_rng(seed)
    grouped = GROUP_COLUMN in dataset.frame.columns
    codes = dataset.frame[GROUP_COLUMN].to_numpy() if grouped else None
    units = np.unique(codes) if codes is not None else np.arange(len(dataset))
    n, what = len(units), "requests" if grouped else "rows"
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if (val_fraction and n_val < 1) or (test_fraction and n_test < 1) or n_val + n_test >= n:
        raise ValueError(
            f"{n} {what} cannot be split into validation {val_fraction} and test "
            f"{test_fraction}: every part needs {what}"
        )
    order = rng.permutation(units)
    chosen = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
    if codes is None:
        val_rows, test_rows, train_rows = (np.sort(part) for part in chosen)
    else:
        val_rows, test_rows, train_rows = (np.flatnonzero(np.isin(codes, p)) for p in chosen)
    val = _subset(dataset, val_rows) if n_val else None
    test = _subset(dataset, test_rows) if n_test else None
    return _subset(dataset, train_rows), val, test


def _other(train: Dataset, directory: Path) -> Dataset:
    """A validation or test directory: its rows must carry the training set's features and tasks."""
    other = load_dataset(directory)
    ours = [(t.id, t.type, t.sample_space) for t in train.tasks]
    theirs = [(t.id, t.type, t.sample_space) for t in other.tasks]
    if ours != theirs:
        raise ValueError(
            f"{directory} declares tasks {theirs}, the training data {ours}: held-out rows must "
            "have the same tasks"
        )
    check_columns(other.frame, train.spec, train.tasks, str(directory))
    return replace(train, frame=other.frame, dir=other.dir)


def _subset(dataset: Dataset, rows: npt.NDArray[np.int64]) -> Dataset:
    return replace(dataset, frame=dataset.frame.iloc[rows].reset_index(drop=True))


def _shrink(splits: Splits, max_rows: int | None) -> Splits:
    """At most ``max_rows`` rows in all: every part keeps its first rows, in proportion."""
    total = sum(splits.rows().values())
    if max_rows is None or max_rows >= total:
        return splits
    factor = max_rows / total

    def head(part: Dataset) -> Dataset:
        keep = max(1, round(len(part) * factor))
        return replace(part, frame=part.frame.head(keep).reset_index(drop=True))

    test = None if splits.test is None else head(splits.test)
    logger.info("max_rows %d: using %.1f%% of every part", max_rows, 100 * factor)
    return Splits(head(splits.train), head(splits.validation), test, splits.origin)
