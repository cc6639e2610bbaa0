"""FeatureTransform: raw feature values (records or columns) -> the model arrays of docs/design.md.

Training (``strict=False``) and serving (``strict=True``) call this same code, so a model sees at
serving time exactly the encoding it was trained on. Every column is converted with numpy: typed
arrays never touch Python per row; object columns (JSON lists, pandas ``to_numpy()``) are split by
element type with C-level passes (``map(type, ...)``), and strings hash in a loop over byte
positions (``service.contracts.hashing``). A bucketized number becomes a bucket index (one
``searchsorted`` per column) and, with ``keep_value``, its scaled value beside the numerics.

Outcomes (both modes unless said): absent key / ``None`` / pandas NA -> the numeric default, index 0
or an empty sequence; ``required`` feature absent -> ``FeatureValueError``; unknown categorical -> 0;
NaN/Inf numeric (plain or bucketized), wrong types (``bool``, a string for a number, a number for a list, a non-integral
float for an id) -> ``FeatureValueError`` when strict, the default / 0 / empty when lenient. A NaN
in a categorical column is pandas' missing marker and counts as missing. Ids are canonical strings:
``42``, ``42.0`` and ``"42"`` are the same id. A sequence keeps its last ``max_length`` ids.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from service.contracts.coercion import (
    Column,
    Ids,
    Numbers,
    Sequences,
    describe,
    ids_of,
    numbers_of,
    sequences_of,
)
from service.contracts.feature_spec import (
    SIDES,
    BucketizedFeature,
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    SequenceFeature,
    Side,
)
from service.contracts.hashing import stable_hash, stable_hash_integers

try:
    from service import _speedups
except ImportError:  # built without a C compiler: numpy does every column
    _speedups = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

GROUP_NAMES: dict[Side, str] = {
    "user": "user",
    "item": "item",
    "context": "context",
    "training": "train",
}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class FeatureValueError(ValueError):
    """A feature value the transform cannot accept.

    ``field`` is ``field_prefix`` joined to the feature name with a dot (``candidates.features.price``;
    ``user.features.history[3]`` for element 3 of a sequence); ``row`` is the first offending row
    (``None`` when the whole column is at fault) and ``problem`` says what is wrong and what to send.
    """

    def __init__(self, field: str, problem: str, *, row: int | None = None) -> None:
        where = "" if row is None else f" (row {row})"
        super().__init__(f"{field}{where}: {problem}")
        self.field = field
        self.problem = problem
        self.row = row


class _Encoder:
    """Canonical ids -> indices in [0, cardinality) for one categorical feature."""

    def __init__(self, feature: CategoricalFeature) -> None:
        buckets = feature.buckets if feature.encoding == "hash" else None
        self.buckets = None if buckets is None else np.uint64(buckets)
        self.index = {value: i + 1 for i, value in enumerate(feature.vocabulary or [])}
        # what the C twin takes: the vocabulary, or None and the bucket count
        self._native_args = (None, buckets) if buckets is not None else (self.index, 0)

    def encode_list(self, values: list[Any]) -> npt.NDArray[np.int64] | None:
        """The codes of a plain list of ids (str, or int within int64) in one C pass, exactly what
        :meth:`encode` gives; None without the C extension or when an element needs the general
        path (missing, bool, float, a list, a string numpy hashes otherwise)."""
        if _speedups is None:
            return None
        written = _speedups.encode_ids(values, *self._native_args)
        return None if written is None else np.frombuffer(written, dtype=np.int64)

    def encode_sequences(self, rows: list[Any], length: int) -> npt.NDArray[np.int64] | None:
        """The ``(len(rows), length)`` codes of a plain list of id lists in one C pass (each row's
        last ``length`` ids from column 0, zeros after), exactly what
        :meth:`FeatureTransform._sequence` builds; None without the C extension or when a row is
        not a list or an element needs the general path."""
        if _speedups is None:
            return None
        written = _speedups.encode_sequences(rows, length, *self._native_args)
        if written is None:
            return None
        return np.frombuffer(written, dtype=np.int64).reshape(len(rows), length)

    def encode(self, ids: Ids) -> npt.NDArray[np.int64]:
        """Integer ids hash from their digits (no strings built); other ids from their UTF-8.
        Integer ids, and string ids held as Python objects, go through the C twin when built."""
        if _speedups is not None:
            plain = ids.integers if ids.integers is not None else ids.text
            if plain is not None and (plain.dtype.kind in "iu" or plain.dtype == object):
                codes = self.encode_list(plain.tolist())
                if codes is not None:
                    return codes
        if self.buckets is not None:
            if ids.integers is not None:
                hashes = stable_hash_integers(ids.integers)
            else:
                hashes = stable_hash(ids.strings.astype(np.str_, copy=False))
            hashes %= self.buckets
            codes = hashes.astype(np.int64)
            codes += 1
            return codes
        # dict lookups driven by map(): C-level iteration, no Python bytecode per row
        keys = map(str, ids.integers.tolist()) if ids.integers is not None else ids.strings.tolist()
        found = map(self.index.get, keys, itertools.repeat(0))
        return np.fromiter(found, dtype=np.int64, count=ids.rows.shape[0])


class _NumericPipeline:
    """clip -> log1p (of max(x, 0)) -> (x - mean) / std, with the fitted statistics."""

    def __init__(self, feature: NumericFeature | BucketizedFeature) -> None:
        stats = feature.stats
        if stats is None:
            raise ValueError(f"numeric feature {feature.name!r} has no fitted stats")
        self.lo, self.hi = stats.clip_lo, stats.clip_hi
        self.log1p = feature.log1p
        # max(x, 0) before log1p leaves alone what the clip already raised to a positive floor
        self.positive_floor = self.lo is not None and self.lo > 0
        self.standard = feature.normalize == "standard"
        self.mean, self.std = stats.mean, stats.std
        if feature.default is not None:
            self.fill = float(self.apply(np.array([feature.default], dtype=np.float64))[0])
        else:
            self.fill = 0.0 if self.standard else self.mean
        self.within_float32 = self._within_float32()
        # the C passes' clip bounds; none at a zero bound, where numpy's choice of sign decides
        self._c_clip = None if 0.0 in (self.lo, self.hi) else (self.lo, self.hi)

    def apply(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.lo is not None or self.hi is not None:
            x = _clip(x, self.lo, self.hi)
        if self.log1p:
            x = self._log1p(x)
        if self.standard:
            x = (x - self.mean) / self.std
        return x

    def _log1p(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """log1p of max(x, 0), the max left out once the clip has raised x to a positive floor."""
        return np.log1p(x if self.positive_floor else np.maximum(x, 0.0))

    def scale_list(self, values: list[Any]) -> npt.NDArray[np.float32] | None:
        """``_scale(self, numbers, None)`` of a list of finite JSON numbers, the same bits, in two C
        passes (convert and clip; standardise and cast) with numpy's log1p between them. None
        without the C extension, at a zero clip bound, or when a value needs the general path."""
        if _speedups is None or self._c_clip is None:
            return None
        written = _speedups.plain_floats(values, *self._c_clip)
        if written is None:
            return None
        x = np.frombuffer(written, dtype=np.float64)
        if self.log1p:
            x = self._log1p(x)
        clip = not self.within_float32
        scaled = _speedups.scale_floats(x, self.mean, self.std, self.standard, clip)
        return None if scaled is None else np.frombuffer(scaled, dtype=np.float32)

    def _within_float32(self) -> bool:
        """Whether every output, and the fill, lies far inside float32's range, so the clip to it
        in ``_scale`` changes nothing: with both clip bounds, ``apply`` is monotone (a clip, log1p,
        a shift and a scale), so its outputs lie between its values at the two bounds."""
        if self.lo is None or self.hi is None:
            return False
        with np.errstate(all="ignore"):
            ends = self.apply(np.array([self.lo, self.hi], dtype=np.float64))
        return bool(np.isfinite(ends).all()) and max(*np.abs(ends).tolist(), abs(self.fill)) < 1e38


class _Buckets:
    """A number -> its bucket index: 0 when missing, else 1 + #{boundaries <= x}."""

    def __init__(self, feature: BucketizedFeature) -> None:
        if feature.boundaries is None:
            raise ValueError(f"bucketized feature {feature.name!r} has no fitted boundaries")
        self.edges = np.asarray(feature.boundaries, dtype=np.float64)
        self.value = _NumericPipeline(feature) if feature.keep_value else None
        self.default = feature.default

    def index(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        found: npt.NDArray[np.int64] = np.searchsorted(self.edges, x, side="right") + 1
        return found


@functools.lru_cache(maxsize=4096)  # a request names the same few fields every time
def _field(prefix: str, name: str) -> str:
    prefix = prefix.rstrip(".")
    return f"{prefix}.{name}" if prefix else name


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.argmax(mask))


class FeatureTransform:
    """Turns raw values into ``user_cat``, ``user_num``, ``user_seq``, ``item_*``, ``context_*``,
    ``train_*`` arrays (spec order within each group; a group with no feature has 0 columns)."""

    def __init__(self, spec: FeatureSpec, *, strict: bool) -> None:
        if not spec.is_fitted:
            raise ValueError(
                f"feature spec {spec.name!r} is not fitted: run fit_spec on training data first"
            )
        self.spec = spec
        self.strict = strict
        self._encoders = {
            f.name: _Encoder(f) for f in spec.features if isinstance(f, CategoricalFeature)
        }
        self._pipelines = {
            f.name: _NumericPipeline(f) for f in spec.features if isinstance(f, NumericFeature)
        }
        self._buckets = {
            f.name: _Buckets(f) for f in spec.features if isinstance(f, BucketizedFeature)
        }
        self.max_length = max((s.max_length for s in spec.sequences()), default=0)
        # each side's columns, listed once (the spec is frozen): a request transforms three sides
        self._categorical_columns = {side: spec.categorical_columns(side) for side in SIDES}
        self._numeric_columns = {side: spec.numeric_columns(side) for side in SIDES}
        self._sequences = spec.sequences()

    def transform_records(
        self, records: Sequence[Mapping[str, Any]], sides: Iterable[str], field_prefix: str = ""
    ) -> dict[str, npt.NDArray[Any]]:
        """Row form: one mapping per row; an absent key is the same as ``None``."""
        wanted = _check_sides(sides)
        names = [f.name for f in self.spec.features if f.side in wanted]
        columns = {name: [record.get(name) for record in records] for name in names}
        return self.transform_columns(columns, len(records), wanted, field_prefix)

    def transform_columns(
        self,
        columns: Mapping[str, Column],
        n_rows: int,
        sides: Iterable[str],
        field_prefix: str = "",
    ) -> dict[str, npt.NDArray[Any]]:
        """Column form: feature name -> ``n_rows`` values (list or numpy array); absent = missing."""
        wanted = _check_sides(sides)
        arrays: dict[str, npt.NDArray[Any]] = {}
        for side in SIDES:
            if side not in wanted:
                continue
            group = GROUP_NAMES[side]
            categorical = self._categorical_columns[side]
            cat = np.zeros((n_rows, len(categorical)), dtype=np.int64)
            scaled: dict[str, npt.NDArray[np.float32]] = {}  # bucketized keep_value columns
            for j, feature in enumerate(categorical):
                if isinstance(feature, BucketizedFeature):
                    cat[:, j], value = self._bucketized(feature, columns, n_rows, field_prefix)
                    if value is not None:
                        scaled[feature.name] = value
                else:
                    cat[:, j] = self._categorical(feature, columns, n_rows, field_prefix)
            arrays[f"{group}_cat"] = cat
            numeric = self._numeric_columns[side]
            num = np.zeros((n_rows, len(numeric)), dtype=np.float32)
            for j, num_feature in enumerate(numeric):
                if isinstance(num_feature, BucketizedFeature):
                    num[:, j] = scaled[num_feature.name]
                else:
                    num[:, j] = self._numeric(num_feature, columns, n_rows, field_prefix)
            arrays[f"{group}_num"] = num
            if side == "user":
                sequences = self._sequences
                seq = np.zeros((n_rows, len(sequences), self.max_length), dtype=np.int64)
                for s, seq_feature in enumerate(sequences):
                    seq[:, s, : seq_feature.max_length] = self._sequence(
                        seq_feature, columns, n_rows, field_prefix
                    )
                arrays["user_seq"] = seq
        return arrays

    def _column(
        self, name: str, required: bool, columns: Mapping[str, Column], n_rows: int, field: str
    ) -> Column | None:
        column = columns.get(name)
        if column is None:
            if required and n_rows > 0:
                raise FeatureValueError(field, "is required but missing: send a value for it")
            return None
        if len(column) != n_rows:
            raise FeatureValueError(
                field, f"has {len(column)} values, expected one per row ({n_rows})"
            )
        return column

    def _check_missing(self, required: bool, missing: npt.NDArray[np.bool_], field: str) -> None:
        if required and missing.any():
            row = _first(missing)
            raise FeatureValueError(field, "is required but missing: send a value for it", row=row)

    def _categorical(
        self, feature: CategoricalFeature, columns: Mapping[str, Column], n_rows: int, prefix: str
    ) -> npt.NDArray[np.int64]:
        field = _field(prefix, feature.name)
        column = self._column(feature.name, feature.required, columns, n_rows, field)
        if column is None:
            return np.zeros(n_rows, dtype=np.int64)
        if type(column) is list:  # JSON values: every id valid is the usual request, one C pass
            codes = self._encoders[feature.name].encode_list(column)
            if codes is not None:
                return codes
        out = np.zeros(n_rows, dtype=np.int64)
        ids = ids_of(column)
        self._check_missing(feature.required, ids.missing, field)
        self._check_ids(ids, field, row_of=None)
        out[ids.rows] = self._encoders[feature.name].encode(ids)
        return out

    def _check_ids(self, ids: Ids, field: str, row_of: npt.NDArray[np.intp] | None) -> None:
        if not (self.strict and ids.invalid.any()):
            return
        k = _first(ids.invalid)
        problem = f"expected a string or integer id, got {describe(ids.source[k])}"
        if row_of is None:
            raise FeatureValueError(field, problem + ": send ids as strings or integers", row=k)
        raise FeatureValueError(field, problem + ": send a list of item ids", row=int(row_of[k]))

    def _numbers(
        self, feature: NumericFeature | BucketizedFeature, column: Column, field: str
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_] | None]:
        """The column's floats and the rows to fill with the default (missing, or bad when
        lenient; None when no row is); strict mode refuses wrong types and NaN / Inf naming the
        field and row."""
        if _speedups is not None and type(column) is list:  # JSON numbers, all finite: one C pass
            written = _speedups.plain_floats(column)
            if written is not None:
                return np.frombuffer(written, dtype=np.float64), None
        numbers: Numbers = numbers_of(column)
        self._check_missing(feature.required, numbers.missing, field)
        if self.strict and numbers.invalid.any():
            k = _first(numbers.invalid)
            problem = f"expected a number, got {describe(numbers.source[k])}: send a number"
            raise FeatureValueError(field, problem, row=k)
        if self.strict and numbers.nonfinite.any():
            k = _first(numbers.nonfinite)
            problem = f"{describe(numbers.source[k])} is not a finite number: send a finite number or omit it"
            raise FeatureValueError(field, problem, row=k)
        fill = numbers.missing | numbers.invalid | numbers.nonfinite
        return numbers.values, fill

    def _numeric(
        self, feature: NumericFeature, columns: Mapping[str, Column], n_rows: int, prefix: str
    ) -> npt.NDArray[np.float32]:
        field = _field(prefix, feature.name)
        column = self._column(feature.name, feature.required, columns, n_rows, field)
        pipeline = self._pipelines[feature.name]
        if column is None:
            return np.full(n_rows, pipeline.fill, dtype=np.float32)
        if type(column) is list:  # JSON numbers, all finite, the usual request: C passes
            scaled = pipeline.scale_list(column)
            if scaled is not None:
                return scaled
        x, fill = self._numbers(feature, column, field)
        return _scale(pipeline, x, fill)

    def _bucketized(
        self, feature: BucketizedFeature, columns: Mapping[str, Column], n_rows: int, prefix: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32] | None]:
        """Bucket indices (n,) and, with ``keep_value``, the scaled values (n,)."""
        field = _field(prefix, feature.name)
        column = self._column(feature.name, feature.required, columns, n_rows, field)
        buckets = self._buckets[feature.name]
        fill: npt.NDArray[np.bool_] | None
        if column is None:
            x, fill = np.zeros(n_rows), np.ones(n_rows, dtype=np.bool_)
        else:
            x, fill = self._numbers(feature, column, field)
            if fill is None:
                fill = np.zeros(n_rows, dtype=np.bool_)
        if buckets.default is not None:  # missing = the default value, in its bucket
            x, fill = np.where(fill, buckets.default, x), np.zeros(n_rows, dtype=np.bool_)
        with np.errstate(invalid="ignore"):
            index = np.where(fill, 0, buckets.index(x))
        value = None if buckets.value is None else _scale(buckets.value, x, fill)
        return index, value

    def _sequence(
        self, feature: SequenceFeature, columns: Mapping[str, Column], n_rows: int, prefix: str
    ) -> npt.NDArray[np.int64]:
        field = _field(prefix, feature.name)
        column = self._column(feature.name, feature.required, columns, n_rows, field)
        length = feature.max_length
        encoder = self._encoders[feature.item_feature]
        if type(column) is list:  # JSON lists of valid ids, the usual request: one C pass
            codes = encoder.encode_sequences(column, length)
            if codes is not None:
                return codes
        out = np.zeros((n_rows, length), dtype=np.int64)
        if column is None:
            return out
        seqs: Sequences = sequences_of(column)
        self._check_missing(feature.required, seqs.missing, field)
        if self.strict and seqs.invalid.any():
            k = _first(seqs.invalid)
            problem = f"expected a list of item ids, got {describe(seqs.source[k])}: send a list"
            raise FeatureValueError(field, problem, row=k)
        rows = np.repeat(np.arange(n_rows), seqs.lengths)
        starts = np.cumsum(seqs.lengths) - seqs.lengths
        position = np.arange(rows.shape[0]) - np.repeat(starts, seqs.lengths)
        if self.strict and seqs.elements.invalid.any():
            k = _first(seqs.elements.invalid)
            self._check_ids(seqs.elements, f"{field}[{int(position[k])}]", row_of=rows)
        codes = np.zeros(rows.shape[0], dtype=np.int64)
        codes[seqs.elements.rows] = encoder.encode(seqs.elements)
        dropped = np.repeat(np.maximum(seqs.lengths - length, 0), seqs.lengths)  # keep the tail
        keep = position >= dropped
        out[rows[keep], (position - dropped)[keep]] = codes[keep]
        return out


def _scale(
    pipeline: _NumericPipeline, x: npt.NDArray[np.float64], fill: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.float32]:
    """Scaled float32 values; ``fill`` rows (None: no row) take the pipeline's fill value."""
    with np.errstate(all="ignore"):
        if fill is not None and fill.any():
            values = np.where(fill, pipeline.fill, pipeline.apply(np.where(fill, 0.0, x)))
        else:  # the usual column: no pass picks between value and fill
            values = pipeline.apply(x)
    if not pipeline.within_float32:
        values = _clip(values, -_FLOAT32_MAX, _FLOAT32_MAX)
    return values.astype(np.float32)


def _clip(
    x: npt.NDArray[np.float64], lo: float | None, hi: float | None
) -> npt.NDArray[np.float64]:
    """``np.clip(x, lo, hi)`` (the same values, NaN kept) without its Python-level dispatch, which
    costs more than the clipping itself on a request's short columns."""
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return x


def _check_sides(sides: Iterable[str]) -> frozenset[Side]:
    return _sides(tuple(sides))


@functools.lru_cache(maxsize=64)  # a few tuples of sides per process
def _sides(sides: tuple[str, ...]) -> frozenset[Side]:
    wanted = frozenset(sides)
    unknown = sorted(s for s in wanted if s not in SIDES)
    if unknown:
        raise ValueError(f"unknown sides {unknown}: use {list(SIDES)}")
    return frozenset(s for s in SIDES if s in wanted)
