"""Splits a user controls, through ``python -m training``: validation and test directories, a
split column, test metrics that never chose the epoch, and publishing's held-out rows."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from service.contracts.tasks import TaskSpec
from tests.training.data.test_dataset import SPEC, _frame
from training.cli.main import main
from training.data.dataset import DATASET_FILE, DatasetConfig, write_dataset
from training.export.run_inputs import inputs_from_run

pytestmark = pytest.mark.slow
TRAIN = ["--epochs", "2", "--seed", "1", "--no-progress", "--set", "batch_size=128"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("splits") / "data"
    assert main(["generate", "simulator", "--rows", "700", "--seed", "8", "--out", str(data)]) == 0
    return data


def copy_with(source: Path, out: Path, frame: pd.DataFrame, **meta: object) -> Path:
    """A data directory over ``frame`` with the source's spec (and dataset.yaml fields added)."""
    out.mkdir(parents=True)
    frame.to_parquet(out / "impressions.parquet", index=False)
    (out / "feature_spec.yaml").write_text((source / "feature_spec.yaml").read_text())
    config = yaml.safe_load((source / DATASET_FILE).read_text())
    config.pop("data_card", None)
    config["data_card"] = None
    (out / DATASET_FILE).write_text(yaml.safe_dump(config | meta))
    return out


def impressions(source: Path) -> pd.DataFrame:
    return pd.read_parquet(source / "impressions.parquet")


def test_validation_and_test_directories_give_test_metrics(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = impressions(source)
    train = copy_with(source, tmp_path / "train", frame.iloc[:450])
    val = copy_with(source, tmp_path / "val", frame.iloc[450:580])
    test = copy_with(source, tmp_path / "test", frame.iloc[580:])
    run = tmp_path / "run"
    args = ["train", "--data", str(train), "--val-data", str(val), "--test-data", str(test)]
    assert main([*args, "--out", str(run), *TRAIN]) == 0
    out = capsys.readouterr().out
    assert "test metrics (120 rows held out from training and epoch choice)" in out
    assert "best epoch" in out
    assert "2 epochs" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert "note" not in metrics
    assert metrics["rows"] == {"train": 450, "validation": 130, "test": 120}
    assert metrics["tasks"] == metrics["test"]["tasks"]
    assert metrics["test"]["tasks"]["click"]["n"] == 120
    assert metrics["validation"]["tasks"]["click"]["n"] == 130
    # evaluate on the run's own data scores the test rows again, into its own file
    assert main(["evaluate", str(run)]) == 0
    printed = capsys.readouterr().out
    assert f"model: 2 epochs (best epoch {metrics['best_epoch']} by validation mean auc" in printed
    assert "metrics on 120 test rows" in printed
    again = json.loads((run / "evaluation.json").read_text())
    assert (again["split"], again["rows"]) == ("test", 120)
    assert again["tasks"]["click"]["auc"] == pytest.approx(metrics["test"]["tasks"]["click"]["auc"])


def test_split_column_rows_are_used_as_marked_and_publish_verifies_on_test_rows(
    source: Path, tmp_path: Path
) -> None:
    frame = impressions(source)
    marks = np.array(["train"] * 500 + ["validation"] * 100 + ["test"] * 100)
    marked = frame.assign(part=np.random.default_rng(0).permutation(marks))
    data = copy_with(source, tmp_path / "marked", marked, split_column="part")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TRAIN]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["rows"] == {"train": 500, "validation": 100, "test": 100}
    assert metrics["origin"]["test"] == "rows with part == test"
    inputs = inputs_from_run(run)
    assert inputs.arrays["item_cat"].shape[0] == 100  # the test rows, never trained on
    test_items = marked.loc[marked["part"] == "test", "item_id"].tolist()
    warm = [int(c.features["item_id"]) for c in inputs.warmup[0].candidates]
    assert warm == test_items[: len(warm)]


def test_test_fraction_holds_out_rows_the_validation_split_never_sees(
    source: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", str(source), "--out", str(run), *TRAIN]
    assert main([*args, "--set", "test_fraction=0.2", "--set", "val_fraction=0.2"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["rows"] == {"train": 420, "validation": 140, "test": 140}


def test_a_preset_naming_absent_tasks_trains_with_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The PLE preset decays click's weight; Adult-like data has no click: trained, noted."""
    frame = _frame(300).rename(columns={"click": "income", "convert": "married"})
    frame["married"] = frame["married"].fillna(0.0)
    meta = DatasetConfig(
        name="census-like",
        tasks=[TaskSpec(id="income", type="binary"), TaskSpec(id="married", type="binary")],
    )
    write_dataset(tmp_path / "data", meta, SPEC, frame)
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        code = main(
            [
                "train",
                "--preset",
                "ple",
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(run),
                *TRAIN,
            ]
        )
    assert code == 0
    notes = json.loads((run / "metrics.json").read_text())["preset_notes"]
    assert notes == [
        "weighting.gamma names ['click'], which this data set lacks (tasks: ['income', "
        "'married']): ignored"
    ]
    assert "preset adapted to the data set" in caplog.text
    assert yaml.safe_load((run / "config.yaml").read_text())["weighting"]["gamma"] == {}
