"""Fit a feature spec's fitted fields (vocabularies, bucket boundaries, clip bounds, mean/std)
from data, in one pass.

Run once on the training split; the fitted spec is saved next to the model and embedded in its
manifest, so serving applies exactly the statistics training used. Values are read with the same
coercion as the transform (``service.contracts.coercion``): missing and invalid values are skipped.

``SpecFitter`` consumes the data in batches (``update``), merges with the fitter of another shard
(``merge``: ranks of a distributed run each fit their part) and returns the fitted spec
(``result``); ``fit_spec`` is the one-batch case. Every statistic is exact, whatever the batching:

* vocabularies: exact counts of every distinct value (memory grows with the number of distinct
  values; use ``encoding: hash`` for id spaces too large to count);
* ``clip: auto``: the 0.1% / 99.9% quantiles (numpy's linear interpolation) from the smallest and
  largest ``ceil(0.001 * rows) + 3`` values kept exactly (``rows``: an upper bound on the rows the
  fitter will see, given up front), i.e. 0.2% of a numeric column;
* mean and std of the clipped (and log1p-ed) values: shifted sums over every value, corrected for
  the clipped values, which all lie in those kept tails;
* bucket boundaries (``kind: bucketized``): exact counts of every distinct number (16 bytes per
  distinct value), cut by ``bucket_boundaries``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from service.contracts.coercion import Column, ids_of, numbers_of, sequences_of
from service.contracts.feature_spec import (
    BucketizedFeature,
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    NumericStats,
)

logger = logging.getLogger(__name__)

AUTO_CLIP_QUANTILES = (0.001, 0.999)
Floats = npt.NDArray[np.float64]


def fit_spec(spec: FeatureSpec, columns: Mapping[str, Column]) -> FeatureSpec:
    """A copy of ``spec`` with every vocabulary and numeric ``stats`` fitted on ``columns``.

    ``columns`` maps feature names to one value per training row (lists or numpy arrays, e.g.
    ``frame[name].to_numpy()``). Vocabularies keep values seen at least ``min_count`` times, most
    frequent first, ties in code-point order, at most ``max_vocab``; an item feature used by a
    sequence is fitted on its own column plus every id of those sequences (one shared table).
    Numeric stats: clip bounds (given, or the 0.1% / 99.9% quantiles for ``clip: auto``), then mean
    and std of the clipped (and log1p-ed) values; a constant feature gets std 1. Bucketized
    features: boundaries by ``bucket_boundaries`` unless given, stats when ``keep_value``.
    Features already fitted (a declared vocabulary, given stats) and hashed features are kept as
    they are.
    """
    rows = max((len(c) for c in columns.values()), default=0)
    fitter = SpecFitter(spec, max_rows=rows)
    fitter.update(columns)
    return fitter.result()


def _column(name: str, columns: Mapping[str, Column]) -> Column:
    column = columns.get(name)
    if column is None:
        raise ValueError(
            f"no column {name!r} in the training data: fitting feature {name!r} needs it "
            f"(columns given: {sorted(columns)[:20]})"
        )
    return column


def _count(strings: npt.NDArray[np.str_] | npt.NDArray[np.object_]) -> Counter[str]:
    if strings.size == 0:
        return Counter()
    values, counts = np.unique(np.asarray(strings, dtype=np.str_), return_counts=True)
    return Counter(dict(zip(values.tolist(), counts.tolist(), strict=True)))


@dataclass
class _Moments:
    """n, and sums of (y - shift) and (y - shift)^2, for mean and variance without cancellation."""

    n: int = 0
    shift: float | None = None
    s1: float = 0.0
    s2: float = 0.0

    def add(self, y: Floats, sign: float = 1.0) -> None:
        if y.size == 0:
            return
        if self.shift is None:
            self.shift = float(y.mean())
        d = y - self.shift
        self.n += int(sign) * int(y.size)
        self.s1 += sign * float(d.sum())
        self.s2 += sign * float(np.dot(d, d))

    def merge(self, other: _Moments) -> None:
        if other.n == 0 and other.shift is None:
            return
        if self.shift is None:
            self.shift = other.shift
        assert other.shift is not None
        assert self.shift is not None
        delta = other.shift - self.shift  # re-centre the other's sums on our shift
        self.s2 += other.s2 + 2 * delta * other.s1 + other.n * delta * delta
        self.s1 += other.s1 + other.n * delta
        self.n += other.n

    def mean_std(self) -> tuple[float, float]:
        assert self.shift is not None
        assert self.n > 0
        m = self.s1 / self.n
        return self.shift + m, math.sqrt(max(self.s2 / self.n - m * m, 0.0))


@dataclass
class _NumericFit:
    feature: NumericFeature | BucketizedFeature
    keep: int  # values kept in each tail (clip: auto)
    count: int = 0  # usable values seen
    moments: _Moments = field(default_factory=_Moments)  # of g(x), or of h(x) for clip: auto
    low: Floats = field(default_factory=lambda: np.empty(0))  # smallest values, sorted
    high: Floats = field(default_factory=lambda: np.empty(0))  # largest values, sorted

    def _h(self, x: Floats) -> Floats:
        return np.log1p(np.maximum(x, 0.0)) if self.feature.log1p else x

    def update(self, x: Floats) -> None:
        self.count += int(x.size)
        clip = self.feature.clip
        if clip == "auto":
            self.low = _smallest(np.concatenate([self.low, x]), self.keep)
            self.high = -_smallest(-np.concatenate([self.high, x]), self.keep)[::-1]
            self.moments.add(self._h(x))
        else:
            self.moments.add(self._h(x if clip is None else np.clip(x, clip[0], clip[1])))

    def merge(self, other: _NumericFit) -> None:
        self.count += other.count
        self.moments.merge(other.moments)
        if self.feature.clip == "auto":
            self.low = _smallest(np.concatenate([self.low, other.low]), self.keep)
            self.high = -_smallest(-np.concatenate([self.high, other.high]), self.keep)[::-1]

    def stats(self) -> NumericStats:
        name = self.feature.name
        if self.count == 0:
            raise ValueError(
                f"numeric feature {name!r}: no finite number in the training data to fit "
                "its statistics; check the column or remove the feature"
            )
        lo: float | None = None
        hi: float | None = None
        moments = self.moments
        if self.feature.clip == "auto":
            lo = _quantile(self.low, self.count, AUTO_CLIP_QUANTILES[0], from_top=False)
            hi = _quantile(self.high, self.count, AUTO_CLIP_QUANTILES[1], from_top=True)
            moments = _Moments(moments.n, moments.shift, moments.s1, moments.s2)
            below, above = self.low[self.low < lo], self.high[self.high > hi]
            for beyond, bound in ((below, lo), (above, hi)):
                moments.add(self._h(beyond), sign=-1.0)  # their unclipped values out ...
                moments.add(self._h(np.full(beyond.size, bound)))  # ... their bound in
        elif self.feature.clip is not None:
            lo, hi = self.feature.clip
        mean, std = moments.mean_std()
        if not std > 0 or not np.isfinite(std):
            std = 1.0
        return NumericStats(mean=mean, std=std, clip_lo=lo, clip_hi=hi)


@dataclass
class _DistinctCounts:
    """Every distinct number seen and how often (sorted), mergeable across batches and shards."""

    values: Floats = field(default_factory=lambda: np.empty(0))
    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def add(self, values: Floats, counts: npt.NDArray[np.int64]) -> None:
        merged, index = np.unique(np.concatenate([self.values, values]), return_inverse=True)
        weights = np.concatenate([self.counts, counts])
        self.values, self.counts = merged, np.bincount(index, weights, merged.size).astype(np.int64)

    def update(self, x: Floats) -> None:
        values, counts = np.unique(x, return_counts=True)
        self.add(values, counts.astype(np.int64))


def bucket_boundaries(
    values: Floats, counts: npt.NDArray[np.int64], max_buckets: int
) -> list[float]:
    """Lower-inclusive bucket edges for about ``max_buckets`` equal-frequency buckets of the
    distinct ``values`` (sorted) seen ``counts`` times.

    A value holding at least 1/max_buckets of the rows (a spike: zero capital gains, a default
    price) gets a bucket of its own, bounded by itself and the next larger value seen; the other
    values share the remaining buckets by quantiles. Edges are values seen in training, so a
    bucket never starts between two training values at an arbitrary point.
    """
    if values.size <= max_buckets:  # few distinct values: one bucket each
        return [float(v) for v in values[1:]]
    total = int(counts.sum())
    spike = counts * max_buckets >= total  # (distinct,)
    edges = [values[1:][spike[:-1]], values[spike]]  # each spike starts a bucket and ends one
    rest_counts = np.where(spike, 0, counts)
    n_rest, buckets_left = int(rest_counts.sum()), max_buckets - int(spike.sum())
    if n_rest and buckets_left > 1:
        # the distinct value at each quantile of the non-spike rows (inverted CDF, no interpolation)
        cumulative = np.cumsum(rest_counts)
        targets = n_rest * np.arange(1, buckets_left) / buckets_left
        edges.append(values[np.searchsorted(cumulative, targets, side="right")])
    merged = np.unique(np.concatenate(edges))
    return [float(v) for v in merged if v > values[0]]


def _smallest(x: Floats, k: int) -> Floats:
    if x.size > k:
        x = np.partition(x, k - 1)[:k]
    return np.sort(x)


def _quantile(tail: Floats, n: int, q: float, *, from_top: bool) -> float:
    """numpy's default (linear) quantile of n values, from the sorted tail holding the order
    statistics it needs (the smallest values, or the largest when ``from_top``)."""
    h = (n - 1) * q
    i = math.floor(h)
    t = h - i
    j = min(i + 1, n - 1)
    offset = n - tail.size if from_top else 0  # order statistic k sits at tail[k - offset]
    if i - offset < 0 or j - offset >= tail.size:
        raise ValueError(
            f"{n} values seen but the fitter was sized for fewer (max_rows): give SpecFitter "
            "an upper bound on the rows it will see"
        )
    a, b = float(tail[i - offset]), float(tail[j - offset])
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t  # numpy's _lerp


class SpecFitter:
    """Accumulates what ``fit_spec`` needs, batch by batch; ``max_rows`` bounds the rows it will
    see in all (every shard together), which sizes the exact tails of ``clip: auto``."""

    def __init__(self, spec: FeatureSpec, *, max_rows: int) -> None:
        self.spec = spec
        keep = math.ceil(AUTO_CLIP_QUANTILES[0] * max(max_rows, 1)) + 3
        self.counts: dict[str, Counter[str]] = {}
        self.numeric: dict[str, _NumericFit] = {}
        self.distinct: dict[str, _DistinctCounts] = {}  # bucketized features without boundaries
        self.invalid: Counter[str] = Counter()
        for feature in spec.features:
            if isinstance(feature, CategoricalFeature) and not feature.is_fitted:
                self.counts[feature.name] = Counter()
            elif isinstance(feature, NumericFeature) and not feature.is_fitted:
                self.numeric[feature.name] = _NumericFit(feature, keep)
            elif isinstance(feature, BucketizedFeature) and not feature.is_fitted:
                if feature.boundaries is None:
                    self.distinct[feature.name] = _DistinctCounts()
                if feature.keep_value and feature.stats is None:
                    self.numeric[feature.name] = _NumericFit(feature, keep)

    def update(self, columns: Mapping[str, Column]) -> None:
        """Add one batch of rows (a column per feature, as in ``fit_spec``)."""
        for name, counter in self.counts.items():
            ids = ids_of(_column(name, columns))
            counter.update(_count(ids.strings))
            self.invalid[name] += int(ids.invalid.sum())
            for seq in self.spec.sequences():
                if seq.item_feature == name and columns.get(seq.name) is not None:
                    elements = sequences_of(_column(seq.name, columns)).elements
                    counter.update(_count(elements.strings))
                    self.invalid[name] += int(elements.invalid.sum())
        for name in self.numeric.keys() | self.distinct.keys():
            numbers = numbers_of(_column(name, columns))
            usable = numbers.values[~(numbers.missing | numbers.invalid | numbers.nonfinite)]
            if name in self.numeric:
                self.numeric[name].update(usable)
            if name in self.distinct:
                self.distinct[name].update(usable)

    def merge(self, other: SpecFitter) -> None:
        """Add another shard's fitter (same spec) to this one."""
        for name, counter in self.counts.items():
            counter.update(other.counts[name])
        for name, fit in self.numeric.items():
            fit.merge(other.numeric[name])
        for name, distinct in self.distinct.items():
            distinct.add(other.distinct[name].values, other.distinct[name].counts)
        self.invalid.update(other.invalid)

    def result(self) -> FeatureSpec:
        """The fitted spec."""
        fitted: list[object] = []
        for feature in self.spec.features:
            if feature.name in self.counts:
                assert isinstance(feature, CategoricalFeature)
                fitted.append(feature.model_dump() | {"vocabulary": self._vocabulary(feature)})
            elif isinstance(feature, BucketizedFeature) and not feature.is_fitted:
                fitted.append(feature.model_dump() | self._buckets(feature))
            elif feature.name in self.numeric:
                stats = self.numeric[feature.name].stats()
                fitted.append(feature.model_dump() | {"stats": stats.model_dump()})
            else:
                fitted.append(feature.model_dump())
        return FeatureSpec.model_validate({"name": self.spec.name, "features": fitted})

    def _buckets(self, feature: BucketizedFeature) -> dict[str, object]:
        """The fitted fields of a bucketized feature: boundaries and (keep_value) stats."""
        fields: dict[str, object] = {}
        if feature.name in self.distinct:
            distinct = self.distinct[feature.name]
            if distinct.values.size == 0:
                raise ValueError(
                    f"bucketized feature {feature.name!r}: no finite number in the training "
                    "data to fit its boundaries; check the column or give boundaries"
                )
            edges = bucket_boundaries(distinct.values, distinct.counts, feature.max_buckets)
            fields["boundaries"] = edges
        if feature.name in self.numeric:
            fields["stats"] = self.numeric[feature.name].stats().model_dump()
        return fields

    def _vocabulary(self, feature: CategoricalFeature) -> list[str]:
        if self.invalid[feature.name]:
            logger.warning(
                "feature %r: %d values of a wrong type skipped while fitting",
                feature.name,
                self.invalid[feature.name],
            )
        counts = self.counts[feature.name]
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))  # ties: code points
        vocabulary = [value for value, count in ranked if count >= feature.min_count]
        vocabulary = vocabulary[: feature.max_vocab]
        if not vocabulary:
            logger.warning(
                "feature %r: no value to fit a vocabulary on; every value will map to 0",
                feature.name,
            )
        return vocabulary
