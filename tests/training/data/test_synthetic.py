"""The MMoE paper's synthetic data (eqs. 2-4): correlation follows rho, seeded, loadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.contracts.fitting import fit_spec
from training.data.dataset import load_dataset
from training.data.synthetic import generate_synthetic, write_synthetic
from training.models.layout import InputLayout


def test_label_correlation_rises_with_rho() -> None:
    correlations = []
    for rho in (-0.5, 0.0, 0.5, 0.9, 1.0):
        _, y1, y2 = generate_synthetic(rho=rho, rows=4000, seed=3, dim=20)
        correlations.append(float(np.corrcoef(y1, y2)[0, 1]))
    assert correlations == sorted(correlations)
    assert correlations[0] < 0 < correlations[-1]
    assert correlations[-1] > 0.98  # rho = 1: the same function, only the noise differs


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate_synthetic(rho=0.3, rows=50, seed=11, dim=10)
    b = generate_synthetic(rho=0.3, rows=50, seed=11, dim=10)
    c = generate_synthetic(rho=0.3, rows=50, seed=12, dim=10)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(a[1], c[1])


def test_shapes_and_standard_normal_inputs() -> None:
    x, y1, y2 = generate_synthetic(rho=0.0, rows=3000, seed=0, dim=100)
    assert x.shape == (3000, 100)
    assert y1.shape == y2.shape == (3000,)
    assert abs(x.mean()) < 0.01
    assert abs(x.std() - 1.0) < 0.01


def test_rho_outside_minus_one_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="rho"):
        generate_synthetic(rho=1.5, rows=10, seed=0)


def test_written_directory_has_item_side_inputs_and_two_regression_tasks(tmp_path: Path) -> None:
    write_synthetic(tmp_path, rho=0.5, rows=300, seed=0, dim=6)
    data = load_dataset(tmp_path)
    assert [t.id for t in data.tasks] == ["y1", "y2"]
    assert all(t.type == "regression" for t in data.tasks)
    assert [f.name for f in data.spec.features] == [f"x{i}" for i in range(6)]
    assert {f.side for f in data.spec.features} == {"item"}
    fitted = fit_spec(data.spec, {c: data.frame[c].to_numpy() for c in data.frame.columns})
    layout = InputLayout.from_spec(fitted)
    assert layout.user.is_empty
    assert layout.item.n_numeric == 6
