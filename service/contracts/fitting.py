"""fit_spec: fill a feature spec's fitted fields (vocabularies, clip bounds, mean/std) from data.

Run once on the training split; the fitted spec is saved next to the model and embedded in its
manifest, so serving applies exactly the statistics training used. Values are read with the same
coercion as the transform (``service.contracts.coercion``): missing and invalid values are skipped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from service.contracts.coercion import Column, ids_of, numbers_of, sequences_of
from service.contracts.feature_spec import (
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    NumericStats,
)

logger = logging.getLogger(__name__)

AUTO_CLIP_QUANTILES = (0.001, 0.999)


def fit_spec(spec: FeatureSpec, columns: Mapping[str, Column]) -> FeatureSpec:
    """A copy of ``spec`` with every vocabulary and numeric ``stats`` fitted on ``columns``.

    ``columns`` maps feature names to one value per training row (lists or numpy arrays, e.g.
    ``frame[name].to_numpy()``). Vocabularies keep values seen at least ``min_count`` times, most
    frequent first, ties in code-point order, at most ``max_vocab``; an item feature used by a
    sequence is fitted on its own column plus every id of those sequences (one shared table).
    Numeric stats: clip bounds (given, or the 0.1% / 99.9% quantiles for ``clip: auto``), then mean
    and std of the clipped (and log1p-ed) values; a constant feature gets std 1. Features already
    fitted (a declared vocabulary, given stats) and hashed features are kept as they are.
    """
    fitted: list[object] = []
    for feature in spec.features:
        if isinstance(feature, CategoricalFeature) and not feature.is_fitted:
            vocabulary = _vocabulary(feature, spec, columns)
            fitted.append(feature.model_dump() | {"vocabulary": vocabulary})
        elif isinstance(feature, NumericFeature) and not feature.is_fitted:
            stats = _stats(feature, _column(feature.name, columns))
            fitted.append(feature.model_dump() | {"stats": stats.model_dump()})
        else:
            fitted.append(feature.model_dump())
    return FeatureSpec.model_validate({"name": spec.name, "features": fitted})


def _column(name: str, columns: Mapping[str, Column]) -> Column:
    column = columns.get(name)
    if column is None:
        raise ValueError(
            f"no column {name!r} in the training data: fitting feature {name!r} needs it "
            f"(columns given: {sorted(columns)[:20]})"
        )
    return column


def _vocabulary(
    feature: CategoricalFeature, spec: FeatureSpec, columns: Mapping[str, Column]
) -> list[str]:
    ids = ids_of(_column(feature.name, columns))
    parts = [ids.strings]
    invalid = int(ids.invalid.sum())
    for seq in spec.sequences():
        if seq.item_feature == feature.name and columns.get(seq.name) is not None:
            elements = sequences_of(_column(seq.name, columns)).elements
            parts.append(elements.strings)
            invalid += int(elements.invalid.sum())
    if invalid:
        logger.warning(
            "feature %r: %d values of a wrong type skipped while fitting", feature.name, invalid
        )
    counts: Counter[str] = Counter()
    for part in parts:
        counts.update(map(str, part.tolist()))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))  # ties: code point order
    vocabulary = [value for value, count in ranked if count >= feature.min_count]
    vocabulary = vocabulary[: feature.max_vocab]
    if not vocabulary:
        logger.warning(
            "feature %r: no value to fit a vocabulary on; every value will map to 0", feature.name
        )
    return vocabulary


def _stats(feature: NumericFeature, column: Column) -> NumericStats:
    numbers = numbers_of(column)
    usable = ~(numbers.missing | numbers.invalid | numbers.nonfinite)
    x: npt.NDArray[np.float64] = numbers.values[usable]
    if x.size == 0:
        raise ValueError(
            f"numeric feature {feature.name!r}: no finite number in the training data to fit "
            "its statistics; check the column or remove the feature"
        )
    lo: float | None = None
    hi: float | None = None
    if feature.clip == "auto":
        lo, hi = (float(q) for q in np.quantile(x, AUTO_CLIP_QUANTILES))
    elif feature.clip is not None:
        lo, hi = feature.clip
    if lo is not None and hi is not None:
        x = np.clip(x, lo, hi)
    if feature.log1p:
        x = np.log1p(np.maximum(x, 0.0))
    mean, std = float(x.mean()), float(x.std())
    if not std > 0 or not np.isfinite(std):
        std = 1.0
    return NumericStats(mean=mean, std=std, clip_lo=lo, clip_hi=hi)
