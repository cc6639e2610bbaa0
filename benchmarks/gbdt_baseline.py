"""A single-task gradient-boosted tree baseline on a data set's own split, for mtl_compare.py.

One scikit-learn ``HistGradientBoostingClassifier`` (binary tasks) or ``...Regressor`` (regression
tasks, fitted in the task's training space) per task, on exactly the rows a neural run of the same
split plan trains on (``training.data.splits.split_rows``): fitted on the training rows within the
task's sample space, early-stopped on the validation rows (the rows the neural models choose their
epoch on), scored on the test rows (else the validation rows) with the same metric code.

Like the neural runs (``threads: 1``) it fits on one thread by default, so seconds per run compare.

Features: numeric and bucketized columns as raw numbers (trees need neither scaling nor buckets);
categorical columns with at most ``MAX_CATEGORIES`` distinct training values as native
categories, larger ones (ids) as codes ordered by training frequency; sequences are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from service.contracts.feature_spec import CategoricalFeature, FeatureSpec, SequenceFeature
from service.contracts.tasks import TaskSpec
from training.data.splits import DataSources, SplitPlan, split_rows
from training.train.metrics import FloatArray, in_space, task_metrics

MAX_CATEGORIES = 250  # HistGradientBoosting takes at most 255 categories per feature
MAX_ITER = 1000  # early stopping on the validation rows usually ends far sooner
PATIENCE = 20  # boosting rounds without a better validation loss


def feature_frames(
    spec: FeatureSpec, train: pd.DataFrame, others: list[pd.DataFrame]
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The model inputs of the training rows and of other rows, encoded on the training rows."""
    columns: dict[str, list[pd.Series]] = {}
    for feature in spec.features:
        if isinstance(feature, SequenceFeature) or feature.side == "training":
            continue
        frames = [train, *others]
        if not isinstance(feature, CategoricalFeature):
            columns[feature.name] = [
                pd.to_numeric(f[feature.name], errors="coerce") for f in frames
            ]
            continue
        values = [f[feature.name].astype("string") for f in frames]
        ranked = values[0].value_counts().index.tolist()  # most frequent first
        if len(ranked) <= MAX_CATEGORIES:
            dtype = pd.CategoricalDtype(ranked)
            columns[feature.name] = [v.astype(dtype) for v in values]
        else:
            code = {value: k for k, value in enumerate(ranked)}
            columns[feature.name] = [v.map(code).astype("float64") for v in values]
    built = [
        pd.DataFrame({name: parts[k].reset_index(drop=True) for name, parts in columns.items()})
        for k in range(1 + len(others))
    ]
    return built[0], built[1:]


def _target(task: TaskSpec, labels: FloatArray) -> FloatArray:
    if task.type == "regression" and task.target_transform == "log1p":
        logged: FloatArray = np.log1p(np.clip(labels, 0.0, None))
        return logged
    return labels


def gbdt_metrics(
    sources: DataSources, plan: SplitPlan, seed: int, threads: int | None = 1
) -> dict[str, dict[str, Any]]:
    """Per task: the test metrics (else validation metrics) of a boosted-tree model of that task,
    fitted on ``threads`` OpenMP threads (None: every core), as many as the neural runs use."""
    with threadpool_limits(limits=threads):
        return _gbdt_metrics(sources, plan, seed)


def _gbdt_metrics(sources: DataSources, plan: SplitPlan, seed: int) -> dict[str, dict[str, Any]]:
    splits = split_rows(sources, plan)
    scored = splits.test if splits.test is not None else splits.validation
    train, (val, test) = feature_frames(
        splits.train.spec, splits.train.frame, [splits.validation.frame, scored.frame]
    )

    def labels(frame: pd.DataFrame) -> dict[str, FloatArray]:
        return {t.id: frame[t.id].to_numpy(np.float64) for t in splits.train.tasks}

    y_train, y_val, y_test = (labels(p.frame) for p in (splits.train, splits.validation, scored))
    out: dict[str, dict[str, Any]] = {}
    for task in splits.train.tasks:
        if task.type == "rank":
            continue
        fit_rows, stop_rows = in_space(task, y_train), in_space(task, y_val)
        target = _target(task, y_train[task.id][fit_rows])
        if task.type == "binary" and len(np.unique(target)) < 2:  # one class: its base rate
            constant = np.full(len(test), float(target.mean()) if target.size else 0.0)
            out[task.id] = task_metrics(task, y_test, constant)
            continue
        common: dict[str, Any] = {"max_iter": MAX_ITER, "early_stopping": True}
        common |= {"n_iter_no_change": PATIENCE, "random_state": seed}
        common |= {"categorical_features": "from_dtype"}
        model: HistGradientBoostingClassifier | HistGradientBoostingRegressor
        if task.type == "binary":
            model = HistGradientBoostingClassifier(**common)
        else:
            model = HistGradientBoostingRegressor(**common)
        model.fit(
            train[fit_rows],
            target,
            X_val=val[stop_rows],
            y_val=_target(task, y_val[task.id][stop_rows]),
        )
        if isinstance(model, HistGradientBoostingClassifier):
            pred = model.predict_proba(test)[:, 1]
        else:
            pred = model.predict(test)
        out[task.id] = task_metrics(task, y_test, np.asarray(pred, dtype=np.float64))
    return out
