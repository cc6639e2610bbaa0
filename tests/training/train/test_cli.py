"""End to end through ``python -m training``: generate a few hundred simulator rows, train,
reload the run, evaluate."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from training.cli.main import main
from training.data.dataset import load_dataset
from training.data.splits import split_rows
from training.train.arrays import to_arrays
from training.train.checkpoint import load_run
from training.train.metrics import auc
from training.train.run import train_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    assert main(["generate", "simulator", "--rows", "600", "--seed", "3", "--out", str(data)]) == 0
    out = root / "run"
    args = ["train", "--preset", "default", "--data", str(data), "--out", str(out)]
    args += ["--epochs", "2", "--seed", "5", "--no-progress", "--set", "batch_size=128"]
    assert main(args) == 0
    return out


def test_train_writes_checkpoint_config_spec_metrics_plots_and_card(run_dir: Path):
    for name in ("checkpoint.pt", "config.yaml", "feature_spec.yaml", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "plots" / "training_curves.png").stat().st_size > 0
    assert (run_dir / "plots" / "gates.png").stat().st_size > 0  # default preset is MMoE
    assert (run_dir / "data_card.json").is_file()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (config["seed"], config["epochs"], config["arch"]["name"]) == (5, 2, "mmoe")
    assert 0 < config["val_fraction"] < 1


def test_metrics_follow_the_run_directory_contract(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"click", "convert", "watch_time", "like", "share"}
    # position-biased tasks (binary, every impression) also score the logged impression
    assert set(metrics["tasks"]["click"]) == {"auc", "auc_logged", "logloss", "n"}
    assert set(metrics["tasks"]["convert"]) == {"auc", "logloss", "n"}
    assert set(metrics["tasks"]["watch_time"]) == {"mse", "mae", "n"}
    assert metrics["tasks"]["convert"]["n"] < metrics["tasks"]["click"]["n"]  # clicked rows only
    assert set(metrics["derived"]) == {"ctcvr"}
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert set(metrics["history"][0]["train_loss"]) == set(metrics["tasks"])
    assert metrics["split"] == "validation"  # no test set given: said so
    assert "rows that chose the epoch" in metrics["note"]
    assert metrics["validation"]["tasks"] == metrics["tasks"]
    assert (metrics["epochs_run"], metrics["epoch_cap"], metrics["stopped"]) == (2, 2, "epoch_cap")
    assert metrics["best_epoch"] in (1, 2)
    assert metrics["monitor"] == "mean auc"


def test_load_run_rebuilds_the_model_with_identical_predictions(run_dir: Path):
    run = load_run(run_dir)
    assert not run.model.training
    assert run.options.esmm == ("click", "convert")
    frame = load_dataset(run.dataset_dir).frame.head(50)
    inputs = to_arrays(frame, run.spec, run.tasks).inputs
    again = load_run(run_dir)
    with torch.no_grad():
        a, b = run.model(inputs).pred, again.model(inputs).pred
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    val = split_rows(run.sources, run.config.split_plan).validation
    val_inputs = to_arrays(val.frame, run.spec, run.tasks)
    with torch.no_grad():
        pred = run.model(val_inputs.inputs).pred[:, 0].numpy()
    assert auc(val_inputs.labels[:, 0].numpy(), pred) == pytest.approx(
        metrics["tasks"]["click"]["auc"]
    )


def test_evaluate_writes_where_asked_and_never_touches_the_training_record(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    record = (run_dir / "metrics.json").read_bytes()
    data = load_run(run_dir).dataset_dir
    out = tmp_path / "eval" / "again.json"
    assert main(["evaluate", str(run_dir), "--data", str(data), "--out", str(out)]) == 0
    assert (run_dir / "metrics.json").read_bytes() == record
    again = json.loads(out.read_text())
    assert again["split"] == "validation"  # the run has no test rows
    assert "chose the epoch" in again["note"]
    assert again["tasks"]["click"] == pytest.approx(json.loads(record)["tasks"]["click"])
    assert "chose the epoch" in capsys.readouterr().out
    assert main(["evaluate", str(run_dir), "--out", str(run_dir / "metrics.json")]) == 1
    assert "training record" in capsys.readouterr().err
    assert (run_dir / "metrics.json").read_bytes() == record


def test_evaluate_scores_another_directory_whole(run_dir: Path, tmp_path: Path):
    other = tmp_path / "other"
    assert main(["generate", "simulator", "--rows", "300", "--seed", "4", "--out", str(other)]) == 0
    assert main(["evaluate", str(run_dir), "--data", str(other)]) == 0
    scored = json.loads((run_dir / "evaluation.json").read_text())
    assert (scored["split"], scored["rows"]) == ("all", 300)
    assert main(["evaluate", str(run_dir), "--data", str(other), "--split", "test"]) == 1


def test_same_seed_trains_the_same_weights(run_dir: Path, tmp_path: Path):
    run = load_run(run_dir)
    train_run(run.config, run.dataset_dir, tmp_path, progress=False)
    again = load_run(tmp_path)
    for (name, x), (_, y) in zip(
        run.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert np.array_equal(x.numpy(), y.numpy()), name


def test_train_reports_a_bad_preset_without_a_traceback(tmp_path: Path, capsys):
    code = main(
        ["train", "--preset", "nope", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    )
    assert code == 1
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_runs_with_one_split_seed_validate_on_the_same_rows(run_dir: Path, tmp_path: Path):
    data = load_run(run_dir).dataset_dir
    first, second = tmp_path / "a", tmp_path / "b"
    common = [
        "train",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--no-progress",
        "--set",
        "split_seed=9",
    ]
    assert main([*common, "--seed", "1", "--out", str(first)]) == 0
    assert main([*common, "--seed", "2", "--out", str(second)]) == 0
    a = json.loads((first / "metrics.json").read_text())["tasks"]
    b = json.loads((second / "metrics.json").read_text())["tasks"]
    assert {k: v["n"] for k, v in a.items()} == {k: v["n"] for k, v in b.items()}
    assert a["click"]["auc"] != b["click"]["auc"]  # different initialisation, same rows
