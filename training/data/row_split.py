"""The train/validation split of a streamed log: a row's side depends on its seed and its global
row index only, so any reader of any part of the log (a rank, ``evaluate``, ``publish``) agrees
on it without holding a permutation of every row.

Each row gets ``u(seed, i)`` in [0, 1): the top 53 bits of SplitMix64 (Steele et al., 2014) over
``seed * 0x9E3779B97F4A7C15 + i``. Validation rows are ``u < val_fraction``, test rows
``val_fraction <= u < val_fraction + test_fraction``, training rows the rest. Each share is its
fraction up to binomial noise (sd ``sqrt(f (1 - f) / n)``): 20% of 10M rows lands within +-0.04
percentage points. In-memory runs keep ``training.data.splits``' exact permutation; a run records
which rule it used (``config.streaming.mode``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    result: npt.NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return result


def row_uniforms(seed: int, start: int, n: int) -> npt.NDArray[np.float64]:
    """(n,) ``u`` of global rows ``start .. start + n - 1``."""
    with np.errstate(over="ignore"):
        base = np.uint64(seed % 2**64) * _GOLDEN
        index = np.arange(start, start + n, dtype=np.uint64)
        u: npt.NDArray[np.float64] = (_splitmix64(base + index) >> np.uint64(11)).astype(
            np.float64
        ) / 2.0**53
    return u


def validation_rows(seed: int, start: int, n: int, val_fraction: float) -> npt.NDArray[np.bool_]:
    """(n,) True for the validation rows among global rows ``start .. start + n - 1``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction = {val_fraction} must be strictly between 0 and 1")
    mask: npt.NDArray[np.bool_] = row_uniforms(seed, start, n) < val_fraction
    return mask
