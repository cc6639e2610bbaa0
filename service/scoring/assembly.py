"""Assemble one request's model arrays: request features, then stored rows, then spec defaults.

Precedence per value: a value sent in the request wins; a missing one (absent or ``None``) is taken
from the online feature store's row for that user or item; what is still missing gets the spec's
default inside the shared transform (``FeatureTransform(strict=True)``, the code training used).
Context features are encoded once and tiled per candidate.

A stored value the strict transform refuses (garbage written to the store) never fails the request:
that value is dropped (then the feature's whole stored column, if it fails again) and the default is
used, with a warning. A refused request value is the client's error: ``InvalidInput`` naming the
field, e.g. ``user.features.age``, ``candidates[3].features.price`` or ``context.hour``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.contracts.feature_spec import FeatureSpec, Side
from service.contracts.fusion import FusionSpec
from service.contracts.transform import FeatureTransform, FeatureValueError
from service.errors import InvalidInput, RankError
from service.store.ports import FeatureFetch

try:
    from service import _speedups
except ImportError:  # built without a C compiler: numpy checks the indices
    _speedups = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

USER_PREFIX = "user.features"
ITEM_PREFIX = "candidates.features"
CONTEXT_PREFIX = "context"
Arrays = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class RankInput:
    """One ranking request, already parsed and checked for limits by the HTTP layer."""

    user_id: str | None
    user_features: dict[str, Any]  # raw values from the request (sequence = list of ids)
    context: dict[str, Any]
    candidate_ids: list[str]  # unique, non-empty
    candidate_features: dict[str, list[Any]]  # columnar, each list len N; None = not given
    fusion: FusionSpec | None = None  # per-request override, validated against the model here
    fusion_preset: str | None = None
    top_k: int | None = None
    candidates_columnar: bool = False  # the request sent ``{ids, features}``: names error fields


def _rename_field(field: str, row: int | None, prefix: str) -> str:
    """``candidates.features.price`` + row 3 -> ``candidates[3].features.price``."""
    if prefix == ITEM_PREFIX and row is not None and field.startswith(ITEM_PREFIX + "."):
        return f"candidates[{row}].features.{field[len(ITEM_PREFIX) + 1 :]}"
    return field


def _feature_of(field: str, prefix: str) -> str:
    """The feature name inside a transform field (``user.features.history[3]`` -> ``history``)."""
    return field[len(prefix) + 1 :].split("[", 1)[0] if field.startswith(prefix + ".") else field


class FeatureAssembler:
    """Merges request and stored values and runs the strict transform for one model's spec."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.transform = FeatureTransform(spec, strict=True)
        self.names: dict[Side, list[str]] = {
            side: spec.names(side) for side in ("user", "item", "context")
        }
        self._cards = {
            "user": np.array(spec.cardinalities("user"), dtype=np.int64),
            "item": np.array(spec.cardinalities("item"), dtype=np.int64),
            "context": np.array(spec.cardinalities("context"), dtype=np.int64),
        }
        self._seq_cards = np.array(
            [spec.item_feature_of(s).cardinality for s in spec.sequences()], dtype=np.int64
        )
        # a bound per cell of a user_seq row, (S, L) flattened: its sequence's item table size
        self._seq_bounds = np.repeat(self._seq_cards, self.transform.max_length)

    # --- public ------------------------------------------------------------------------------

    def check_feature_names(self, request: RankInput) -> None:
        """Refuse a feature this model does not take on that side (a typo would silently become
        the spec's default, a wrong score): ``InvalidInput`` naming the field and the valid names."""
        user = [n for n in request.user_features if n not in self.names["user"]]
        if user:
            raise self._unknown(user[0], "user", f"{USER_PREFIX}.{user[0]}")
        context = [n for n in request.context if n not in self.names["context"]]
        if context:
            raise self._unknown(context[0], "context", f"{CONTEXT_PREFIX}.{context[0]}")
        for name, column in request.candidate_features.items():
            if name in self.names["item"]:
                continue
            if request.candidates_columnar:
                raise self._unknown(name, "item", f"{ITEM_PREFIX}.{name}")
            row = next((k for k, value in enumerate(column) if value is not None), None)
            if row is not None:
                raise self._unknown(name, "item", f"candidates[{row}].features.{name}")

    def user_arrays(self, features: Mapping[str, Any], stored: Mapping[str, Any] | None) -> Arrays:
        """``user_cat`` (1, Cu), ``user_num`` (1, Nu), ``user_seq`` (1, S, L)."""
        columns: dict[str, list[Any]] = {}
        from_store: dict[str, npt.NDArray[np.bool_]] = {}
        for name in self.names["user"]:
            value = features.get(name)
            if value is None and stored is not None and stored.get(name) is not None:
                value = stored[name]
                from_store[name] = np.ones(1, dtype=np.bool_)
            if value is not None:
                columns[name] = [value]
        arrays = self._run(columns, from_store, 1, "user", USER_PREFIX)
        self._check_indices(arrays, "user")
        return arrays

    def candidate_arrays(
        self, request: RankInput, stored: Sequence[Mapping[str, Any] | None]
    ) -> Arrays:
        """``item_cat``, ``item_num``, ``context_cat``, ``context_num`` with one row per candidate."""
        n = len(request.candidate_ids)
        columns, from_store = self._item_columns(request.candidate_features, stored, n)
        arrays = self._run(columns, from_store, n, "item", ITEM_PREFIX)
        context = {
            name: [request.context[name]]
            for name in self.names["context"]
            if request.context.get(name) is not None
        }
        one = self._run(context, {}, 1, "context", CONTEXT_PREFIX)
        for key, value in one.items():
            arrays[key] = np.repeat(value, n, axis=0)  # (N, C): context tiled per candidate
        self._check_indices(arrays, "item")
        self._check_indices(arrays, "context")
        return arrays

    # --- internals ---------------------------------------------------------------------------

    def _unknown(self, name: str, side: Side, field: str) -> InvalidInput:
        where = {
            "user": "user.features",
            "item": "candidates[].features",
            "context": "context",
        }
        known = {f.name: f.side for f in self.spec.features}
        other = known.get(name)
        if other == "training":
            hint = "it is a training-only feature (e.g. display position) and is not served"
        elif other is not None:
            hint = f"it is a{'n' if other == 'item' else ''} {other} feature: send it in {where[other]}"
        else:
            hint = f"{side} features of this model: {', '.join(self.names[side]) or '(none)'}"
        return InvalidInput(
            f"{field}: {name!r} is not a{'n' if side == 'item' else ''} {side} feature of this "
            f"model; {hint} (MTRANK_UNKNOWN_FEATURES=ignore drops unknown features instead)",
            field=field,
        )

    def _item_columns(
        self,
        given: Mapping[str, list[Any]],
        stored: Sequence[Mapping[str, Any] | None],
        n: int,
    ) -> tuple[dict[str, list[Any]], dict[str, npt.NDArray[np.bool_]]]:
        columns: dict[str, list[Any]] = {}
        from_store: dict[str, npt.NDArray[np.bool_]] = {}
        # nothing stored (no feature store, or every lookup missed): one C-level count, no loop
        rows = [] if stored.count(None) == len(stored) else [r for r in stored if r is not None]
        for name in self.names["item"]:
            column = given.get(name)
            if column is not None and len(column) != n:
                raise InvalidInput(
                    f"candidates.features.{name} has {len(column)} values for {n} candidates",
                    field=f"candidates.features.{name}",
                )
            if not rows or not any(name in row for row in rows):
                if column is not None:
                    columns[name] = column
                continue
            values = [None if row is None else row.get(name) for row in stored]
            if column is None:
                merged, used = values, [v is not None for v in values]
            else:
                merged = [g if g is not None else v for g, v in zip(column, values, strict=True)]
                used = [g is None and v is not None for g, v in zip(column, values, strict=True)]
            columns[name] = merged
            from_store[name] = np.array(used, dtype=np.bool_)
        return columns, from_store

    def _run(
        self,
        columns: dict[str, list[Any]],
        from_store: dict[str, npt.NDArray[np.bool_]],
        n: int,
        side: Side,
        prefix: str,
    ) -> Arrays:
        """Strict transform; a refused stored value is dropped (row, then column) and retried."""
        failures: dict[str, int] = {}
        for _attempt in range(2 * len(self.names[side]) + 1):
            try:
                return self.transform.transform_columns(columns, n, (side,), prefix)
            except FeatureValueError as exc:
                name = _feature_of(exc.field, prefix)
                stored = from_store.get(name)
                if stored is None or exc.row is None or not stored[exc.row]:
                    raise InvalidInput(
                        f"{_rename_field(exc.field, exc.row, prefix)}: {exc.problem}",
                        field=_rename_field(exc.field, exc.row, prefix),
                    ) from None
                failures[name] = failures.get(name, 0) + 1
                drop = stored if failures[name] > 1 else (np.arange(n) == exc.row)
                logger.warning(
                    "stored %s value refused (%s); using the default for %d row(s)",
                    name,
                    exc.problem,
                    int(drop.sum()),
                )
                columns[name] = [None if d else v for v, d in zip(columns[name], drop, strict=True)]
                from_store[name] = stored & ~drop
        raise RankError(f"could not assemble {side} features after dropping refused stored values")

    def _check_indices(self, arrays: Arrays, group: str) -> None:
        """Every categorical index in [0, cardinality): a negative id would silently read the
        last embedding row in onnxruntime and one past the table fails the whole batch."""
        cat = arrays[f"{group}_cat"]
        cards = self._cards[group]
        if self._within_in_c(cat, cards, arrays.get("user_seq") if group == "user" else None):
            return
        # one pass per test over the whole (N, C) block: a max along axis 0 of a few columns
        # costs several times more in numpy than comparing every cell
        if cat.size and (cat.min() < 0 or bool((cat >= cards).any())):
            column = int(np.argmax((cat.max(axis=0) >= cards) | (cat.min(axis=0) < 0)))
            raise RankError(
                f"{group}_cat column {column} holds an index outside [0, {int(cards[column])}): "
                "the feature transform is broken; report this bug"
            )
        if group == "user" and arrays["user_seq"].size:
            seq = arrays["user_seq"]
            if seq.min() < 0 or bool((seq.max(axis=(0, 2)) >= self._seq_cards).any()):
                raise RankError(
                    "user_seq holds an index outside its item table: the transform is broken"
                )

    def _within_in_c(
        self, cat: npt.NDArray[np.int64], cards: npt.NDArray[np.int64], seq: npt.NDArray[Any] | None
    ) -> bool:
        """True when the C extension finds every index in range (one pass per block); False
        when one is not, or the extension is missing or declines: numpy then decides."""
        if _speedups is None or not _speedups.indices_within(cat, cards):
            return False
        if seq is None:
            return True
        rows = seq.reshape(seq.shape[0], seq.shape[1] * seq.shape[2])  # (1, S * L)
        return bool(_speedups.indices_within(rows, self._seq_bounds))


def stored_rows(
    fetch: FeatureFetch | None, n: int
) -> tuple[dict[str, Any] | None, list[dict[str, Any] | None]]:
    """(user row, item rows aligned with the candidates) from a fetch, or nothing."""
    if fetch is None or len(fetch.items) != n:
        return (None if fetch is None else fetch.user), [None] * n
    return fetch.user, fetch.items
