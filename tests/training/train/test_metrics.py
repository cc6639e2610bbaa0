import math

import numpy as np
import pytest

from tests.training.models.small import TASKS
from training.train.metrics import (
    auc,
    average_ranks,
    logloss,
    mae,
    mse,
    product_metrics,
    task_metrics,
)


def test_average_ranks_share_ties():
    np.testing.assert_allclose(average_ranks([0.3, 0.1, 0.3, 0.9]), [2.5, 1.0, 2.5, 4.0])


def test_auc_counts_tied_pairs_as_one_half():
    # pos 0.8 vs neg 0.8: 1/2, pos 0.8 vs 0.1: 1, pos 0.3 vs 0.8: 0, pos 0.3 vs 0.1: 1 -> 2.5 / 4
    assert auc([1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]) == pytest.approx(0.625)
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0


def test_auc_is_undefined_for_one_class():
    assert auc([1, 1], [0.2, 0.3]) is None


def test_logloss_mse_mae_match_hand_values():
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert logloss([1], [0.0]) == pytest.approx(-math.log(1e-7))  # clipped, finite
    assert mse([1.0, 2.0], [2.0, 4.0]) == pytest.approx(2.5)
    assert mae([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.5)
    assert logloss([], []) is None


def test_task_metrics_use_only_rows_in_the_sample_space():
    labels = {
        "click": np.array([1.0, 0.0, 1.0, 1.0, 0.0]),
        "convert": np.array([1.0, 1.0, 0.0, 1.0, np.nan]),  # row 1 is outside (not clicked)
        "watch_time": np.array([math.e - 1, 99.0, 0.0, np.nan, 5.0]),
    }
    pred = np.array(
        [[0.9, 0.7, 1.0], [0.1, 0.0, 50.0], [0.8, 0.2, 0.5], [0.2, 0.6, 0.0], [0.3, 0.9, 1.0]]
    )
    convert = task_metrics(TASKS[1], labels, pred[:, 1])
    # clicked rows 0, 2, 3: labels 1, 0, 1 with scores 0.7, 0.2, 0.6 -> AUC 1
    assert convert == {
        "auc": 1.0,
        "logloss": pytest.approx(-(np.log(0.7) + np.log(0.8) + np.log(0.6)) / 3),
        "n": 3,
    }
    watch = task_metrics(TASKS[2], labels, pred[:, 2])
    # clicked with a known label: rows 0 and 2; targets log1p: 1 and 0; preds 1.0 and 0.5
    assert watch == {"mse": pytest.approx(0.125), "mae": pytest.approx(0.25), "n": 2}
    click = task_metrics(TASKS[0], labels, pred[:, 0])  # pos 0.9 0.8 0.2 vs neg 0.1 0.3
    assert click["n"] == 5
    assert click["auc"] == pytest.approx(5 / 6)


def test_derived_product_is_scored_on_every_impression():
    labels = {"click": np.array([1.0, 1.0, 0.0]), "convert": np.array([1.0, 0.0, np.nan])}
    probs = {"click": np.array([0.5, 0.8, 0.1]), "convert": np.array([0.9, 0.1, 0.5])}
    out = product_metrics(["click", "convert"], labels, probs)
    # products 0.45, 0.08, 0.05 vs labels 1, 0, 0
    assert out["n"] == 3
    assert out["auc"] == 1.0
    assert out["logloss"] == pytest.approx(-(np.log(0.45) + np.log(0.92) + np.log(0.95)) / 3)
