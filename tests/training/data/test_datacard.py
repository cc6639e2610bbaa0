"""Data card statistics: AUC by rank sums, rates within sample spaces, chunk-invariant results."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from service.contracts.tasks import TaskSpec
from training.data.datacard import DataCardAccumulator, auc

TASKS = [
    TaskSpec(id="click", type="binary"),
    TaskSpec(id="convert", type="binary", sample_space="click"),
    TaskSpec(id="watch", type="regression", sample_space="click"),
]


def _pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_equals_the_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    labels = (rng.random(60) < 0.4).astype(int)
    assert auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels))


def test_auc_is_nan_with_a_single_class() -> None:
    assert math.isnan(auc([0.1, 0.2], [1, 1]))


def _labels(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.3).astype(float)
    return {
        "click": click,
        "convert": click * (rng.random(n) < 0.2),
        "watch": click * rng.exponential(30.0, n),
    }


def test_rates_are_computed_within_each_sample_space() -> None:
    labels = _labels(1000, 1)
    acc = DataCardAccumulator("t", TASKS)
    acc.update(labels)
    card = acc.card()
    clicked = labels["click"] == 1
    assert card["tasks"]["convert"]["n"] == int(clicked.sum())
    assert card["tasks"]["convert"]["rate"] == pytest.approx(
        labels["convert"][clicked].mean(), 1e-5
    )
    assert card["tasks"]["watch"]["mean"] == pytest.approx(labels["watch"][clicked].mean(), 1e-5)
    assert card["label_correlations"]["click"]["watch"] == pytest.approx(
        np.corrcoef(labels["click"], labels["watch"])[0, 1], abs=1e-5
    )


def test_chunked_updates_give_the_same_card_as_one_update() -> None:
    labels = _labels(900, 2)
    probs = np.random.default_rng(3).random(900)
    whole = DataCardAccumulator("t", TASKS)
    whole.update(labels, {"click": probs})
    chunked = DataCardAccumulator("t", TASKS)
    for part in (slice(0, 100), slice(100, 650), slice(650, 900)):
        chunked.update({k: v[part] for k, v in labels.items()}, {"click": probs[part]})
    assert chunked.card() == whole.card()
    assert "bayes_auc" in whole.card()["tasks"]["click"]


def test_served_ceilings_are_aucs_within_each_sample_space_and_chunk_invariant() -> None:
    labels = _labels(900, 4)
    rng = np.random.default_rng(5)
    blind, convert_blind, ctcvr = rng.random(900), rng.random(900), rng.random(900)
    outcome = labels["click"] * labels["convert"]
    served = {"click": blind, "convert": convert_blind, "ctcvr": ctcvr}
    whole = DataCardAccumulator("t", TASKS)
    whole.update(labels, {"click": blind}, {"ctcvr": (ctcvr, outcome)}, served)
    card = whole.card()
    assert card["tasks"]["click"]["served_bayes_auc"] == pytest.approx(auc(blind, labels["click"]))
    clicked = labels["click"] == 1  # convert's ceiling counts clicked rows only
    assert card["tasks"]["convert"]["served_bayes_auc"] == pytest.approx(
        auc(convert_blind[clicked], labels["convert"][clicked])
    )
    assert card["derived"]["ctcvr"]["served_bayes_auc"] == pytest.approx(auc(ctcvr, outcome))
    chunked = DataCardAccumulator("t", TASKS)
    for part in (slice(0, 300), slice(300, 900)):
        chunked.update(
            {k: v[part] for k, v in labels.items()},
            {"click": blind[part]},
            {"ctcvr": (ctcvr[part], outcome[part])},
            {k: v[part] for k, v in served.items()},
        )
    assert chunked.card() == card
    with pytest.raises(ValueError, match="served probabilities given for 'ctr'"):
        whole.update(labels, served={"ctr": blind})


def test_undefined_statistics_are_written_as_null() -> None:
    acc = DataCardAccumulator("t", TASKS)
    acc.update({"click": np.zeros(5), "convert": np.zeros(5), "watch": np.zeros(5)})
    card = acc.card()
    assert card["tasks"]["convert"]["rate"] is None
    assert card["label_correlations"]["click"]["convert"] is None


def test_missing_label_column_is_named() -> None:
    with pytest.raises(ValueError, match="watch"):
        DataCardAccumulator("t", TASKS).update({"click": [1.0], "convert": [0.0]})
