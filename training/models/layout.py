"""InputLayout: the shapes of the model arrays a ranker consumes (torch-free).

Built from a fitted feature spec (``InputLayout.from_spec``) or directly in tests. It fixes, per
group (user / item / context / training), the categorical cardinalities with their embedding dims and
the number of numeric columns, plus the behaviour sequences and the item column whose embedding table
each sequence shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

SIDES = ("user", "item", "context", "training")


def default_embedding_dim(cardinality: int) -> int:
    """Rule of thumb 6 * cardinality^0.25, capped at 16 (e.g. 2 -> 7, 100 -> 16)."""
    scaled: float = 6.0 * float(cardinality) ** 0.25
    return max(1, min(16, round(scaled)))


@dataclass(frozen=True)
class GroupLayout:
    """One input group: categorical columns (cardinality, embedding dim) and numeric columns."""

    cardinalities: tuple[int, ...] = ()
    embedding_dims: tuple[int, ...] = ()  # empty: default_embedding_dim of each cardinality
    n_numeric: int = 0

    def __post_init__(self) -> None:
        if not self.embedding_dims and self.cardinalities:
            dims = tuple(default_embedding_dim(c) for c in self.cardinalities)
            object.__setattr__(self, "embedding_dims", dims)
        if len(self.embedding_dims) != len(self.cardinalities):
            raise ValueError(
                f"{len(self.embedding_dims)} embedding dims for {len(self.cardinalities)} "
                "categorical columns: give one dim per column or none"
            )
        if any(c < 1 for c in self.cardinalities):
            raise ValueError(f"cardinalities {self.cardinalities} must all be >= 1")
        if any(d < 1 for d in self.embedding_dims):
            raise ValueError(f"embedding dims {self.embedding_dims} must all be >= 1")
        if self.n_numeric < 0:
            raise ValueError(f"n_numeric = {self.n_numeric} must be >= 0")

    @property
    def n_categorical(self) -> int:
        return len(self.cardinalities)

    @property
    def width(self) -> int:
        """Width of the encoded group: concatenated embeddings then numerics."""
        return sum(self.embedding_dims) + self.n_numeric

    @property
    def is_empty(self) -> bool:
        return self.width == 0


@dataclass(frozen=True)
class InputLayout:
    """Shapes of ``user_cat/user_num/user_seq``, ``item_*``, ``context_*`` and ``train_*``."""

    user: GroupLayout = field(default_factory=GroupLayout)
    item: GroupLayout = field(default_factory=GroupLayout)
    context: GroupLayout = field(default_factory=GroupLayout)
    training: GroupLayout = field(default_factory=GroupLayout)
    # One entry per sequence S: the item_cat column whose embedding table the sequence uses.
    sequence_columns: tuple[int, ...] = ()
    max_length: int = 0  # L of user_seq (B, S, L)

    def __post_init__(self) -> None:
        for s, column in enumerate(self.sequence_columns):
            if not 0 <= column < self.item.n_categorical:
                raise ValueError(
                    f"sequence {s} shares item_cat column {column}, but the item side has "
                    f"{self.item.n_categorical} categorical columns"
                )
        if self.sequence_columns and self.max_length < 1:
            raise ValueError(f"max_length = {self.max_length}: sequences need a length >= 1")
        if self.item.is_empty and self.context.is_empty:
            raise ValueError("a ranker needs at least one item or context feature to score items")

    @property
    def n_sequences(self) -> int:
        return len(self.sequence_columns)

    @classmethod
    def from_spec(cls, spec: FeatureSpecLike) -> InputLayout:
        """The layout of a fitted spec's model arrays (spec order, as the transform emits them)."""
        if not spec.is_fitted:
            raise ValueError(
                f"feature spec {spec.name!r} is not fitted: fit it on training data first"
            )
        groups = {side: _group(spec, side) for side in SIDES}
        item_names = [f.name for f in spec.features_of("item", "categorical")]
        columns, lengths = [], []
        for seq in spec.sequences():
            if seq.item_feature not in item_names:
                raise ValueError(
                    f"sequence {seq.name!r} uses item feature {seq.item_feature!r}, which is not "
                    f"an item categorical feature ({item_names})"
                )
            columns.append(item_names.index(seq.item_feature))
            lengths.append(int(seq.max_length))
        return cls(
            user=groups["user"],
            item=groups["item"],
            context=groups["context"],
            training=groups["training"],
            sequence_columns=tuple(columns),
            max_length=max(lengths, default=0),
        )


def _group(spec: FeatureSpecLike, side: str) -> GroupLayout:
    cards = tuple(int(c) for c in spec.cardinalities(side))
    features = spec.categorical_columns(side)  # categorical and bucketized, in column order
    dims = tuple(
        int(f.embedding_dim) if f.embedding_dim is not None else default_embedding_dim(c)
        for f, c in zip(features, cards, strict=True)
    )
    return GroupLayout(cards, dims, len(spec.numeric_names(side)))


class FeatureSpecLike(Protocol):
    """The part of ``service.contracts.feature_spec.FeatureSpec`` a layout reads."""

    @property
    def name(self) -> str: ...

    @property
    def is_fitted(self) -> bool: ...

    def features_of(self, side: Any, kind: Any) -> Sequence[Any]: ...

    def categorical_columns(self, side: Any) -> Sequence[Any]: ...

    def cardinalities(self, side: Any) -> list[int]: ...

    def numeric_names(self, side: Any) -> list[str]: ...

    def sequences(self) -> Sequence[Any]: ...
