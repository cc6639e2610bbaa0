"""Contract 1: the feature spec, declared once and used by training and serving (no torch).

A YAML file lists user, item, context and training-only features. Categorical features are encoded
by a fitted vocabulary (index 0 = missing or out of vocabulary) or by stable hashing into N buckets;
numeric features are clipped, optionally log1p-ed and standardised with statistics fitted on training
data; a behaviour sequence (DUPN-style user history) is a list of item ids encoded exactly like one
item categorical feature. A bucketized feature cuts a number at boundaries (given, or fitted on
training quantiles) into buckets with one embedding each, optionally beside its scaled value, for
numbers whose effect is not monotone. ``service.contracts.fitting.fit_spec`` fills the fitted fields and
``service.contracts.transform.FeatureTransform`` turns raw values into model arrays.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal, overload

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Side = Literal["user", "item", "context", "training"]
Kind = Literal["categorical", "numeric", "sequence", "bucketized"]
SIDES: tuple[Side, ...] = ("user", "item", "context", "training")
DEFAULT_MAX_VOCAB = 10_000
DEFAULT_MAX_BUCKETS = 16


class _Feature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")
    side: Side
    required: bool = False  # missing -> FeatureValueError instead of the default, in both modes


class CategoricalFeature(_Feature):
    """An id encoded to an index in ``[0, cardinality)``; 0 = missing (and out of vocabulary)."""

    kind: Literal["categorical"]
    encoding: Literal["vocab", "hash"] = "vocab"
    embedding_dim: int | None = Field(default=None, ge=1)  # None: the model's rule of thumb
    # encoding: vocab. Known values are 1..V in vocabulary order (most frequent first when fitted).
    vocabulary: list[str] | None = None
    max_vocab: int = Field(default=DEFAULT_MAX_VOCAB, ge=1)
    min_count: int = Field(default=1, ge=1)
    # encoding: hash. Index = 1 + stable_hash(value) % buckets.
    buckets: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _encoding_fields(self) -> CategoricalFeature:
        if self.encoding == "hash" and self.buckets is None:
            raise ValueError(f"feature {self.name!r}: encoding 'hash' needs 'buckets'")
        if self.encoding == "hash" and self.vocabulary is not None:
            raise ValueError(f"feature {self.name!r}: a hashed feature has no vocabulary")
        if self.encoding == "vocab" and self.buckets is not None:
            raise ValueError(f"feature {self.name!r}: 'buckets' applies to encoding 'hash' only")
        if self.vocabulary is not None and len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError(f"feature {self.name!r}: the vocabulary has duplicate values")
        return self

    @property
    def is_fitted(self) -> bool:
        return self.encoding == "hash" or self.vocabulary is not None

    @property
    def cardinality(self) -> int:
        """Number of indices, including 0 (missing / unknown)."""
        if self.encoding == "hash":
            assert self.buckets is not None  # checked by the validator
            return self.buckets + 1
        if self.vocabulary is None:
            raise ValueError(
                f"feature {self.name!r} has no vocabulary yet: fit the spec on training data first"
            )
        return len(self.vocabulary) + 1


class NumericStats(BaseModel):
    """Fitted statistics; mean/std are of the clipped (and log1p-ed) training values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float = Field(allow_inf_nan=False)
    std: float = Field(gt=0, allow_inf_nan=False)
    clip_lo: float | None = Field(default=None, allow_inf_nan=False)
    clip_hi: float | None = Field(default=None, allow_inf_nan=False)


class _Scaled(_Feature):
    """A number's scaling: clip -> log1p -> (x - mean) / std; missing values take ``default``."""

    default: float | None = Field(default=None, allow_inf_nan=False)  # raw space; None: the mean
    clip: tuple[float, float] | Literal["auto"] | None = None  # auto: 0.1% / 99.9% quantiles
    log1p: bool = False  # for counts, prices, durations: values below 0 count as 0
    normalize: Literal["standard", "none"] = "standard"
    stats: NumericStats | None = None

    @model_validator(mode="after")
    def _clip_is_an_interval(self) -> _Scaled:
        if isinstance(self.clip, tuple):
            lo, hi = self.clip
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(
                    f"feature {self.name!r}: clip [{lo}, {hi}] must be finite, lo <= hi"
                )
        return self


class NumericFeature(_Scaled):
    """A number: clip -> log1p -> (x - mean) / std. Missing values take ``default``."""

    kind: Literal["numeric"]

    @property
    def is_fitted(self) -> bool:
        return self.stats is not None


class BucketizedFeature(_Scaled):
    """A number cut into buckets, one embedding per bucket, for effects that are not monotone.

    Index 0 = missing (when ``default`` is null); a value x falls into bucket
    ``1 + #{b in boundaries: b <= x}`` (boundaries are lower-inclusive edges), so the cardinality
    is ``len(boundaries) + 2``. ``boundaries`` are given, or fitted on the training rows as about
    ``max_buckets`` equal-frequency buckets in which a value holding a large share of the rows (a
    spike such as capital_gain = 0) gets a bucket of its own. ``keep_value`` also emits the scaled
    value (clip -> log1p -> standardise, like a numeric feature) as a numeric column.
    """

    kind: Literal["bucketized"]
    boundaries: list[float] | None = None  # strictly increasing lower edges of buckets 2, 3, ...
    max_buckets: int = Field(default=DEFAULT_MAX_BUCKETS, ge=2, le=100_000)
    keep_value: bool = False
    embedding_dim: int | None = Field(default=None, ge=1)  # None: the model's rule of thumb

    @model_validator(mode="after")
    def _increasing_boundaries(self) -> BucketizedFeature:
        edges = self.boundaries
        if edges is not None:
            if not all(math.isfinite(b) for b in edges):
                raise ValueError(f"feature {self.name!r}: boundaries must be finite numbers")
            if any(b >= c for b, c in itertools.pairwise(edges)):
                raise ValueError(f"feature {self.name!r}: boundaries must be strictly increasing")
        return self

    @property
    def is_fitted(self) -> bool:
        return self.boundaries is not None and (not self.keep_value or self.stats is not None)

    @property
    def cardinality(self) -> int:
        """Number of indices: missing (0) plus one per bucket."""
        if self.boundaries is None:
            raise ValueError(
                f"feature {self.name!r} has no boundaries yet: fit the spec on training data first"
            )
        return len(self.boundaries) + 2


class SequenceFeature(_Feature):
    """A user's behaviour history: item ids, oldest first, encoded like ``item_feature``."""

    kind: Literal["sequence"]
    item_feature: str
    max_length: int = Field(ge=1, le=10_000)  # keeps the most recent ``max_length`` ids (the tail)

    @model_validator(mode="after")
    def _user_side_only(self) -> SequenceFeature:
        if self.side != "user":
            raise ValueError(f"sequence {self.name!r} must be on the user side, not {self.side!r}")
        return self

    @property
    def is_fitted(self) -> bool:
        return True  # its vocabulary is the item feature's


Feature = Annotated[
    CategoricalFeature | NumericFeature | SequenceFeature | BucketizedFeature,
    Field(discriminator="kind"),
]
# Features whose values land in a ``*_cat`` column (an index into an embedding table) ...
CategoricalColumn = CategoricalFeature | BucketizedFeature
# ... and in a ``*_num`` column (a scaled number).
NumericColumn = NumericFeature | BucketizedFeature


class FeatureSpec(BaseModel):
    """All features of a model, in the order their columns appear in the model arrays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    features: list[Feature]

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names {duplicates}: each name must be unique")
        by_name = {f.name: f for f in self.features}
        for seq in self.sequences():
            target = by_name.get(seq.item_feature)
            if not (isinstance(target, CategoricalFeature) and target.side == "item"):
                raise ValueError(
                    f"sequence {seq.name!r}: item_feature {seq.item_feature!r} must name an item "
                    "categorical feature of this spec"
                )
        return self

    @property
    def is_fitted(self) -> bool:
        return all(f.is_fitted for f in self.features)

    def feature(
        self, name: str
    ) -> CategoricalFeature | NumericFeature | SequenceFeature | BucketizedFeature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature {name!r} in spec {self.name!r}")

    @overload
    def features_of(self, side: Side, kind: Literal["categorical"]) -> list[CategoricalFeature]: ...
    @overload
    def features_of(self, side: Side, kind: Literal["numeric"]) -> list[NumericFeature]: ...
    @overload
    def features_of(self, side: Side, kind: Literal["sequence"]) -> list[SequenceFeature]: ...
    @overload
    def features_of(self, side: Side, kind: Literal["bucketized"]) -> list[BucketizedFeature]: ...
    def features_of(
        self, side: Side, kind: Kind
    ) -> (
        list[CategoricalFeature]
        | list[NumericFeature]
        | list[SequenceFeature]
        | list[BucketizedFeature]
    ):
        """Features of one side and kind, in spec order."""
        if kind == "categorical":
            return [
                f for f in self.features if isinstance(f, CategoricalFeature) and f.side == side
            ]
        if kind == "numeric":
            return [f for f in self.features if isinstance(f, NumericFeature) and f.side == side]
        if kind == "sequence":
            return [f for f in self.features if isinstance(f, SequenceFeature) and f.side == side]
        if kind == "bucketized":
            return [f for f in self.features if isinstance(f, BucketizedFeature) and f.side == side]
        raise ValueError(
            f"unknown feature kind {kind!r}: use categorical, numeric, sequence or bucketized"
        )

    def categorical_columns(self, side: Side) -> list[CategoricalColumn]:
        """The features of ``side`` behind its ``*_cat`` columns, in column (spec) order:
        categorical features and the bucket index of bucketized ones."""
        return [
            f
            for f in self.features
            if isinstance(f, CategoricalFeature | BucketizedFeature) and f.side == side
        ]

    def numeric_columns(self, side: Side) -> list[NumericColumn]:
        """The features of ``side`` behind its ``*_num`` columns, in column (spec) order:
        numeric features and the scaled value of bucketized ones with ``keep_value``."""
        return [
            f
            for f in self.features
            if f.side == side
            and (
                isinstance(f, NumericFeature) or (isinstance(f, BucketizedFeature) and f.keep_value)
            )
        ]

    def cardinalities(self, side: Side) -> list[int]:
        """Cardinality of each categorical column of ``side`` (the ``*_cat`` columns, in order)."""
        return [f.cardinality for f in self.categorical_columns(side)]

    def names(self, side: Side) -> list[str]:
        """Raw feature names of one side, in spec order (the keys a request sends for it)."""
        return [f.name for f in self.features if f.side == side]

    def numeric_names(self, side: Side) -> list[str]:
        """The feature behind each ``*_num`` column of ``side``, in column order."""
        return [f.name for f in self.numeric_columns(side)]

    def sequences(self) -> list[SequenceFeature]:
        """The behaviour sequences (user side), in the order of ``user_seq``'s S axis."""
        return [f for f in self.features if isinstance(f, SequenceFeature)]

    def item_feature_of(self, sequence: SequenceFeature) -> CategoricalFeature:
        """The item categorical feature whose encoding and embedding table ``sequence`` shares."""
        target = self.feature(sequence.item_feature)
        assert isinstance(target, CategoricalFeature)  # checked by the validator
        return target

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        """Read and validate a YAML spec; errors name the file."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a feature spec must be a mapping with 'name' and 'features'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid feature spec: {exc}") from exc
