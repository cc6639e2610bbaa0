"""Top-k by partial sort with deterministic ties: higher score first, then earlier input position."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def top_k(scores: npt.NDArray[np.float64], k: int | None) -> npt.NDArray[np.intp]:
    """Indices of the ``k`` best scores (all when None or k >= N), ordered best first.

    ``np.argpartition`` finds the k-th best score in O(N); every score above it is kept and the ties
    at the boundary are filled by input order, so equal scores never reorder between runs.
    """
    n = int(scores.shape[0])
    if k is not None and k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    if k is None or k >= n:
        chosen = np.arange(n)
    else:
        kth = np.argpartition(-scores, k - 1)[k - 1]
        threshold = scores[kth]
        above = np.flatnonzero(scores > threshold)
        ties = np.flatnonzero(scores == threshold)[: k - above.shape[0]]
        chosen = np.concatenate([above, ties])
    order = np.lexsort((chosen, -scores[chosen]))  # last key is primary: score desc, then index
    result: npt.NDArray[np.intp] = chosen[order]
    return result
