"""The MMoE paper's synthetic data with controlled task correlation (Ma et al., KDD 2018, seed 002).

Section 3.2, eqs. 2-4:

1. orthogonal unit vectors u1, u2 in R^d;
2. w1 = c·u1, w2 = c·(ρ·u1 + sqrt(1-ρ²)·u2), so cos(w1, w2) = ρ;
3. x ~ N(0, I_d);
4. y_k = w_kᵀx + Σ_{i=1..m} sin(α_i·w_kᵀx + β_i) + ε_k, ε_k ~ N(0, 0.01) (variance 0.01).

The MMoE paper leaves c, m, α and β open; we follow the PLE paper (Tang et al., RecSys 2020): c = 1,
m = 10, α_i, β_i ~ N(0, 1) drawn once per data set and shared by both tasks. The paper's input
dimension is 100 (PLE uses 512). Everything is drawn from one seeded generator.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from service.contracts.feature_spec import FeatureSpec
from service.contracts.tasks import TaskSpec
from training.data.datacard import DataCardAccumulator, write_data_card
from training.data.dataset import DatasetConfig, write_dataset

FloatArray = npt.NDArray[np.float64]

DEFAULT_DIM = 100
NOISE_STD = 0.1  # ε ~ N(0, 0.01): variance 0.01


def generate_synthetic(
    rho: float,
    rows: int,
    seed: int,
    dim: int = DEFAULT_DIM,
    *,
    c: float = 1.0,
    m: int = 10,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Draw ``rows`` examples: returns (X (rows, dim), y1 (rows,), y2 (rows,))."""
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"rho = {rho} is a correlation: it must lie in [-1, 1]")
    if rows < 1 or dim < 2 or m < 0:
        raise ValueError(f"need rows >= 1, dim >= 2 and m >= 0 (got rows={rows}, dim={dim}, m={m})")
    rng = np.random.default_rng(seed)
    # Orthonormal u1, u2: QR of a Gaussian (dim, 2) matrix.
    q, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    u1, u2 = q[:, 0], q[:, 1]
    w1 = c * u1  # eq. 2
    w2 = c * (rho * u1 + math.sqrt(1.0 - rho * rho) * u2)
    alpha = rng.standard_normal(m)
    beta = rng.standard_normal(m)
    x = rng.standard_normal((rows, dim))  # (rows, dim)
    y1 = _labels(x @ w1, alpha, beta) + NOISE_STD * rng.standard_normal(rows)  # eq. 3
    y2 = _labels(x @ w2, alpha, beta) + NOISE_STD * rng.standard_normal(rows)  # eq. 4
    return x, y1, y2


def _labels(projection: FloatArray, alpha: FloatArray, beta: FloatArray) -> FloatArray:
    """wᵀx + Σ_i sin(α_i·wᵀx + β_i), without noise."""
    waves = np.sin(projection[:, None] * alpha[None, :] + beta[None, :])  # (rows, m)
    result: FloatArray = projection + waves.sum(axis=1)
    return result


def synthetic_spec(dim: int) -> FeatureSpec:
    """Unfitted spec: x0..x{dim-1}, numeric, item side (each example is one scored row)."""
    features = [
        {"name": f"x{i}", "side": "item", "kind": "numeric", "clip": None} for i in range(dim)
    ]
    return FeatureSpec.model_validate({"name": "synthetic", "features": features})


TASKS = [TaskSpec(id="y1", type="regression"), TaskSpec(id="y2", type="regression")]


def write_synthetic(out: Path, rho: float, rows: int, seed: int, dim: int = DEFAULT_DIM) -> Path:
    """Write a training data directory with tasks ``y1`` and ``y2``; returns its dataset.yaml."""
    x, y1, y2 = generate_synthetic(rho, rows, seed, dim)
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"x{i}" for i in range(dim)])
    frame["y1"] = y1.astype(np.float32)
    frame["y2"] = y2.astype(np.float32)
    meta = DatasetConfig(name=f"synthetic_rho{rho:g}", tasks=TASKS)
    write_dataset(out, meta, synthetic_spec(dim), frame)
    card = DataCardAccumulator(meta.name, TASKS)
    card.update({"y1": y1, "y2": y2})
    extra = {"generator": "mmoe_synthetic", "rho": rho, "seed": seed, "dim": dim, "c": 1.0, "m": 10}
    write_data_card(card.card(extra), Path(out) / (meta.data_card or "data_card.json"))
    return Path(out) / "dataset.yaml"
