"""Raw feature values -> canonical ids, floats and id lists, with what was missing or wrong.

Shared by ``FeatureTransform`` and ``fit_spec`` so that fitting and transforming read values the same
way. Typed numpy columns are converted in one numpy call; object columns (JSON lists, pandas
``to_numpy()``) are split by element type with C-level passes (``map(type, ...)``), never a Python
loop per row. Ids are canonical strings: ``str`` as is, ``int`` in decimal, integral floats as ints
(``42``, ``42.0`` and ``"42"`` are one id); ``bool`` is never an id nor a number.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

Column = Sequence[Any] | npt.NDArray[Any]


@dataclass(frozen=True)
class Ids:
    """A column's categorical values as canonical ids: integers kept as numbers, others as strings."""

    source: Column  # the column as given, for error messages
    rows: npt.NDArray[np.intp]  # row of each valid entry
    missing: npt.NDArray[np.bool_]  # (n,) None, pandas NA, NaN
    invalid: npt.NDArray[np.bool_]  # (n,) bool, inf or non-integral float, any other type
    # Canonical id of each valid entry: ``integers`` (int64/uint64) when every valid entry is an
    # integer (hashed and looked up without building strings), else ``text`` (str or object array).
    text: npt.NDArray[Any] | None = None
    integers: npt.NDArray[np.integer] | None = None

    @cached_property
    def strings(self) -> npt.NDArray[Any]:
        """Canonical id strings of the valid entries (integers in decimal)."""
        if self.text is not None:
            return self.text
        if self.integers is None:
            return np.array([], dtype=np.str_)
        return self.integers.astype(np.str_)


@dataclass(frozen=True)
class Numbers:
    source: Column  # the column as given, for error messages
    values: npt.NDArray[np.float64]  # (n,) NaN where not a finite number
    missing: npt.NDArray[np.bool_]  # None, pandas NA
    invalid: npt.NDArray[np.bool_]  # wrong type (str, bool, list, ...)
    nonfinite: npt.NDArray[np.bool_]  # NaN, +-Inf


@dataclass(frozen=True)
class Sequences:
    source: Column  # the column as given, for error messages
    lengths: npt.NDArray[np.intp]  # (n,) 0 for missing or invalid rows
    elements: Ids  # over the concatenated elements, row after row
    missing: npt.NDArray[np.bool_]
    invalid: npt.NDArray[np.bool_]  # not a list/tuple/array (a string is not a list of ids)


def describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _as_array(column: Column) -> npt.NDArray[Any]:
    if isinstance(column, np.ndarray):
        return column
    return np.fromiter(column, dtype=object, count=len(column))


def _kind(t: type) -> str:
    if issubclass(t, bool | np.bool_):
        return "bool"
    if issubclass(t, str):
        return "str"
    if issubclass(t, int | np.integer):
        return "int"
    if issubclass(t, float | np.floating):
        return "float"
    if t is type(None) or t.__name__ in ("NAType", "NaTType"):
        return "missing"
    if issubclass(t, list | tuple | np.ndarray):
        return "list"
    return "other"


def _by_kind(array: npt.NDArray[Any]) -> dict[str, npt.NDArray[np.bool_]]:
    """Masks of an object array's elements per kind, from C-level passes over element types."""
    types = list(map(type, array.tolist()))
    distinct = set(types)
    if len(distinct) == 1:
        return {_kind(distinct.pop()): np.ones(len(types), dtype=np.bool_)}
    kinds = sorted({_kind(t) for t in distinct})
    code_of = {t: kinds.index(_kind(t)) for t in distinct}
    codes = np.fromiter(map(code_of.__getitem__, types), dtype=np.int8, count=len(types))
    return {kind: codes == code for code, kind in enumerate(kinds)}


def _float_ids(
    x: npt.NDArray[np.float64],
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]
]:
    """Integral floats as ints; NaN = missing; Inf, 3.5, huge = invalid."""
    nan = np.isnan(x)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & (np.abs(x) < 2.0**63) & (x == np.floor(x))
    return x[ok].astype(np.int64), ok, nan, ~ok & ~nan


def _python_ints(array: npt.NDArray[Any]) -> npt.NDArray[np.int64] | None:
    """An object array of Python ints as int64; None when one lies outside int64."""
    try:
        return array.astype(np.int64)
    except OverflowError:
        return None


_NUMBER_TYPES = frozenset({int, float})
_INT_TYPE = frozenset({int})
_LIST_TYPE = frozenset({list})


def _plain_list(column: Column, types: frozenset[type]) -> bool:
    """``column`` is a list whose elements are all of ``types`` (exact types: a bool is no int)."""
    return type(column) is list and set(map(type, column)) <= types


def ids_of(column: Column) -> Ids:
    """Canonical ids: str as is, ints in decimal, integral floats as ints."""
    if _plain_list(column, _INT_TYPE) and column:  # a JSON list of integer ids: the common case
        try:
            ints = np.array(column, dtype=np.int64)
        except OverflowError:  # beyond int64: the general path keeps them as decimal strings
            pass
        else:
            none = np.zeros(ints.shape[0], dtype=np.bool_)
            return Ids(column, np.arange(ints.shape[0]), none, none, integers=ints)
    array = _as_array(column)
    if array.ndim != 1:
        raise ValueError(f"a categorical column must be 1-D, got shape {array.shape}")
    n = array.shape[0]
    none = np.zeros(n, dtype=np.bool_)
    everything = np.arange(n)
    kind = array.dtype.kind
    if kind in "iu":
        return Ids(array, everything, none, none, integers=array)
    if kind in "US":
        strings = np.strings.decode(array, "utf-8") if kind == "S" else array
        return Ids(array, everything, none, none, text=strings.astype(np.str_))
    if kind == "f":
        ints, ok, missing, invalid = _float_ids(array.astype(np.float64))
        return Ids(array, everything[ok], missing, invalid, integers=ints)
    if kind != "O":
        return Ids(array, everything[:0], none, ~none, text=np.array([], dtype=np.str_))
    masks = _by_kind(array)
    if masks.keys() == {"str"}:
        return Ids(array, everything, none, none, text=array)
    missing, invalid = masks.get("missing", none).copy(), none.copy()
    for k in ("bool", "list", "other"):
        invalid |= masks.get(k, none)
    int_rows = everything[masks["int"]] if "int" in masks else everything[:0]
    python_ints = _python_ints(array[int_rows]) if "int" in masks else None
    if "str" not in masks and (python_ints is not None or "int" not in masks):
        return _integer_ids(array, masks, python_ints, int_rows, missing, invalid)
    parts, rows = [np.array([], dtype=np.str_)], [everything[:0]]
    if "str" in masks:
        parts.append(array[masks["str"]])  # object array of str: kept as Python strings
        rows.append(everything[masks["str"]])
    if "int" in masks:
        parts.append(array[int_rows].astype(np.str_))
        rows.append(int_rows)
    if "float" in masks:
        floats, float_rows = _floats_of(array, masks, missing, invalid)
        parts.append(floats.astype(np.str_))
        rows.append(float_rows)
    return Ids(array, np.concatenate(rows), missing, invalid, text=np.concatenate(parts))


def _floats_of(
    array: npt.NDArray[Any],
    masks: dict[str, npt.NDArray[np.bool_]],
    missing: npt.NDArray[np.bool_],
    invalid: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """The integral floats of an object column as ints and their rows; marks NaN and bad floats."""
    float_rows = np.flatnonzero(masks["float"])
    ints, ok, nan, bad = _float_ids(array[float_rows].astype(np.float64))
    missing[float_rows[nan]] = True
    invalid[float_rows[bad]] = True
    return ints, float_rows[ok]


def _integer_ids(
    array: npt.NDArray[Any],
    masks: dict[str, npt.NDArray[np.bool_]],
    ints: npt.NDArray[np.int64] | None,
    int_rows: npt.NDArray[np.intp],
    missing: npt.NDArray[np.bool_],
    invalid: npt.NDArray[np.bool_],
) -> Ids:
    """Ids of an object column without strings: Python ints and integral floats as int64."""
    parts = [np.array([], dtype=np.int64) if ints is None else ints]
    rows = [int_rows]
    if "float" in masks:
        floats, float_rows = _floats_of(array, masks, missing, invalid)
        parts.append(floats)
        rows.append(float_rows)
    if len(parts) == 1:
        return Ids(array, rows[0], missing, invalid, integers=parts[0])
    return Ids(array, np.concatenate(rows), missing, invalid, integers=np.concatenate(parts))


def numbers_of(column: Column) -> Numbers:
    """Floats of a numeric column; ints and floats only (a numeric string is a wrong type)."""
    if _plain_list(column, _NUMBER_TYPES):  # a JSON list of numbers: the common case
        try:
            values = np.array(column, dtype=np.float64)
        except OverflowError:  # a Python int beyond float range: the general path marks it
            pass
        else:
            none = np.zeros(values.shape[0], dtype=np.bool_)
            return Numbers(column, values, none, none, ~np.isfinite(values))
    array = _as_array(column)
    if array.ndim != 1:
        raise ValueError(f"a numeric column must be 1-D, got shape {array.shape}")
    n = array.shape[0]
    none = np.zeros(n, dtype=np.bool_)
    values = np.full(n, np.nan)
    invalid = none.copy()
    if array.dtype.kind in "iuf":
        values = array.astype(np.float64)
    elif array.dtype.kind == "O":
        masks = _by_kind(array)
        for k in ("int", "float"):
            if k in masks:
                try:
                    values[masks[k]] = array[masks[k]].astype(np.float64)
                except OverflowError:  # Python ints beyond float range
                    invalid |= masks[k]
        for k in ("str", "bool", "list", "other"):
            invalid |= masks.get(k, none)
        none = masks.get("missing", none)
    else:
        invalid = ~none
    nonfinite = ~np.isfinite(values) & ~none & ~invalid
    return Numbers(array, values, none, invalid, nonfinite)


def sequences_of(column: Column) -> Sequences:
    """Lists of ids per row (list, tuple or numpy array; a 2-D array = one row per line)."""
    if _plain_list(column, _LIST_TYPE):  # JSON lists of ids: the common case
        n = len(column)
        none = np.zeros(n, dtype=np.bool_)
        lengths = np.fromiter(map(len, column), dtype=np.intp, count=n)
        return Sequences(
            column, lengths, ids_of(list(itertools.chain.from_iterable(column))), none, none
        )
    array = _as_array(column)
    n = array.shape[0]
    none = np.zeros(n, dtype=np.bool_)
    if array.ndim == 2 and array.dtype.kind != "O":
        lengths = np.full(n, array.shape[1], dtype=np.intp)
        return Sequences(array, lengths, ids_of(array.reshape(-1)), none, none)
    if array.ndim != 1 or array.dtype.kind != "O":
        return Sequences(array, np.zeros(n, dtype=np.intp), ids_of([]), none, ~none)
    masks = _by_kind(array)
    lists = masks.get("list", none)
    missing = masks.get("missing", none).copy()
    if "float" in masks:  # pandas marks a missing list with NaN
        floats = masks["float"]
        missing[floats] = np.isnan(array[floats].astype(np.float64))
    invalid = ~lists & ~missing
    rows = array[lists].tolist()
    lengths = np.zeros(n, dtype=np.intp)
    lengths[lists] = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
    return Sequences(array, lengths, ids_of(_flatten(rows, int(lengths.sum()))), missing, invalid)


def _flatten(rows: list[Any], total: int) -> npt.NDArray[Any]:
    """All elements of ``rows``, in order; typed numpy rows (pandas) are concatenated in C."""
    if rows and set(map(type, rows)) == {np.ndarray}:
        try:
            flat: npt.NDArray[Any] = np.concatenate(rows)
        except (ValueError, TypeError):  # mixed dtypes or dimensions: take the general path
            pass
        else:
            if flat.ndim == 1 and flat.shape[0] == total and flat.dtype.kind != "O":
                return flat
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=object, count=total)
