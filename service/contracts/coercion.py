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
from typing import Any

import numpy as np
import numpy.typing as npt

Column = Sequence[Any] | npt.NDArray[Any]


@dataclass(frozen=True)
class Ids:
    """A column's categorical values as canonical strings."""

    source: npt.NDArray[Any]  # the column as a 1-D array, for error messages
    strings: npt.NDArray[Any]  # canonical id of each valid entry (str array or object array of str)
    rows: npt.NDArray[np.intp]  # row of each valid entry
    missing: npt.NDArray[np.bool_]  # (n,) None, pandas NA, NaN
    invalid: npt.NDArray[np.bool_]  # (n,) bool, inf or non-integral float, any other type


@dataclass(frozen=True)
class Numbers:
    source: npt.NDArray[Any]
    values: npt.NDArray[np.float64]  # (n,) NaN where not a finite number
    missing: npt.NDArray[np.bool_]  # None, pandas NA
    invalid: npt.NDArray[np.bool_]  # wrong type (str, bool, list, ...)
    nonfinite: npt.NDArray[np.bool_]  # NaN, +-Inf


@dataclass(frozen=True)
class Sequences:
    source: npt.NDArray[Any]
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
    npt.NDArray[np.str_], npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]
]:
    """Integral floats as int strings; NaN = missing; Inf, 3.5, huge = invalid."""
    nan = np.isnan(x)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & (np.abs(x) < 2.0**63) & (x == np.floor(x))
    return x[ok].astype(np.int64).astype(np.str_), ok, nan, ~ok & ~nan


def ids_of(column: Column) -> Ids:
    """Canonical id strings: str as is, ints in decimal, integral floats as ints."""
    array = _as_array(column)
    if array.ndim != 1:
        raise ValueError(f"a categorical column must be 1-D, got shape {array.shape}")
    n = array.shape[0]
    none = np.zeros(n, dtype=np.bool_)
    everything = np.arange(n)
    kind = array.dtype.kind
    if kind in "iu":
        return Ids(array, array.astype(np.str_), everything, none, none)
    if kind in "US":
        strings = np.strings.decode(array, "utf-8") if kind == "S" else array
        return Ids(array, strings.astype(np.str_), everything, none, none)
    if kind == "f":
        strings, ok, missing, invalid = _float_ids(array.astype(np.float64))
        return Ids(array, strings, everything[ok], missing, invalid)
    if kind != "O":
        return Ids(array, np.array([], dtype=np.str_), everything[:0], none, ~none)
    masks = _by_kind(array)
    if masks.keys() == {"str"}:
        return Ids(array, array, everything, none, none)
    parts, rows = [np.array([], dtype=np.str_)], [everything[:0]]
    missing, invalid = masks.get("missing", none).copy(), none.copy()
    if "str" in masks:
        parts.append(array[masks["str"]])  # object array of str: kept as Python strings
        rows.append(everything[masks["str"]])
    if "int" in masks:
        parts.append(array[masks["int"]].astype(np.str_))
        rows.append(everything[masks["int"]])
    if "float" in masks:
        strings, ok, nan, bad = _float_ids(array[masks["float"]].astype(np.float64))
        float_rows = everything[masks["float"]]
        parts.append(strings)
        rows.append(float_rows[ok])
        missing[float_rows[nan]] = True
        invalid[float_rows[bad]] = True
    for k in ("bool", "list", "other"):
        invalid |= masks.get(k, none)
    order = np.concatenate(rows)
    return Ids(array, np.concatenate(parts), order, missing, invalid)


def numbers_of(column: Column) -> Numbers:
    """Floats of a numeric column; ints and floats only (a numeric string is a wrong type)."""
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
