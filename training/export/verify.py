"""Checks an exported split before anything is published (optimum-style: names, shapes, values).

1. names: the onnxruntime sessions' inputs and outputs equal the manifest's graph specs, in order;
2. shapes: declared shapes equal the specs, and every output has shape (N,) for N candidates;
3. sanity: outputs are finite and binary-task probabilities lie in [0, 1];
4. parity: user graph + candidate graph (onnxruntime, one row at a time) equal the PyTorch unsplit
   reference on every held-out row: binary tasks by max absolute difference <= ``atol``, regression
   tasks by max ``|onnx - torch| / max(|torch|, 1)`` <= ``rtol_regression`` (natural units can be large);
5. batch: scoring ``batch_size`` candidates at once equals scoring them one by one (same tolerances).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
from torch import Tensor

from service.contracts.manifest import GraphSpec, Verification
from service.contracts.tasks import TaskSpec
from training.export.onnx_split import CANDIDATE_INPUTS, INPUT_DTYPES, USER_INPUTS, ModelArrays

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float64]
# Maps the full model arrays of B rows (torch tensors) to the (B, T) serving-space predictions.
Reference = Callable[[dict[str, Tensor]], Tensor]


class VerificationError(Exception):
    """An exported pair failed a check; nothing may be published."""

    def __init__(self, check: str, detail: str, measured: float | None = None) -> None:
        self.check = check
        self.measured = measured
        super().__init__(f"verification check '{check}' failed: {detail}")


@dataclass(frozen=True)
class Tolerances:
    atol: float = 1e-5  # binary probabilities: max |onnx - torch|
    rtol_regression: float = 1e-5  # regression: max |onnx - torch| / max(|torch|, 1)


def unsplit_reference(ranker: Any) -> Reference:
    """The reference prediction: the ranker's ``forward_unsplit`` (concatenated first-layer weights)."""

    def reference(arrays: dict[str, Tensor]) -> Tensor:
        out: Tensor = ranker.forward_unsplit(**arrays)
        return out

    return reference


class _Pair:
    """The two onnxruntime sessions of an exported split."""

    def __init__(self, user: GraphSpec, candidates: GraphSpec, folder: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.user_spec, self.cand_spec = user, candidates
        self.user = ort.InferenceSession(
            str(folder / user.file), options, providers=["CPUExecutionProvider"]
        )
        self.cand = ort.InferenceSession(
            str(folder / candidates.file), options, providers=["CPUExecutionProvider"]
        )

    def user_rep(self, arrays: ModelArrays, row: int) -> npt.NDArray[np.float32]:
        feed = {
            n: arrays[n][row : row + 1].astype(INPUT_DTYPES[n])
            for n in self.user_spec.input_names()
        }
        rep: npt.NDArray[np.float32] = self.user.run(None, feed)[0]
        return rep

    def score(
        self, rep: npt.NDArray[np.float32], arrays: ModelArrays, start: int, stop: int
    ) -> Floats:
        feed: dict[str, Any] = {"user_rep": rep}
        for name in self.cand_spec.input_names()[1:]:
            feed[name] = arrays[name][start:stop].astype(INPUT_DTYPES[name])
        outputs = self.cand.run(None, feed)
        n = stop - start
        for spec, out in zip(self.cand_spec.outputs, outputs, strict=True):
            if out.shape != (n,):
                raise VerificationError(
                    "shapes", f"output {spec.name} has shape {out.shape}, expected ({n},)"
                )
        return np.stack(outputs, axis=1).astype(np.float64)  # (N, T)


def _check_names(pair: _Pair) -> None:
    for label, session, spec in (
        ("user", pair.user, pair.user_spec),
        ("candidates", pair.cand, pair.cand_spec),
    ):
        for kind, actual, expected in (
            ("inputs", [i.name for i in session.get_inputs()], spec.input_names()),
            ("outputs", [o.name for o in session.get_outputs()], spec.output_names()),
        ):
            if actual != expected:
                raise VerificationError(
                    "names", f"{label} graph {kind} are {actual}, manifest says {expected}"
                )


def _check_declared_shapes(pair: _Pair) -> None:
    for label, session, spec in (
        ("user", pair.user, pair.user_spec),
        ("candidates", pair.cand, pair.cand_spec),
    ):
        declared = [list(t.shape) for t in (*session.get_inputs(), *session.get_outputs())]
        expected = [t.shape for t in (*spec.inputs, *spec.outputs)]
        if declared != expected:
            raise VerificationError(
                "shapes", f"{label} graph declares {declared}, manifest says {expected}"
            )


def _deviation(
    onnx_out: Floats, torch_out: Floats, binary: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    """(max abs diff over binary columns, max relative diff over regression columns)."""
    diff = np.abs(onnx_out - torch_out)
    abs_max = float(diff[:, binary].max(initial=0.0))
    rel = diff[:, ~binary] / np.maximum(np.abs(torch_out[:, ~binary]), 1.0)
    return abs_max, float(rel.max(initial=0.0))


def _check_sanity(scores: Floats, tasks: Sequence[TaskSpec], binary: npt.NDArray[np.bool_]) -> None:
    bad = ~np.isfinite(scores)
    if bad.any():
        names = sorted({tasks[int(k)].id for k in np.nonzero(bad)[1]})
        raise VerificationError("finite", f"{int(bad.sum())} non-finite outputs in tasks {names}")
    probs = scores[:, binary]
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        raise VerificationError(
            "range", f"binary outputs span [{probs.min():.6g}, {probs.max():.6g}], outside [0, 1]"
        )


def verify_split(
    folder: Path,
    user: GraphSpec,
    candidates: GraphSpec,
    tasks: Sequence[TaskSpec],
    arrays: ModelArrays,
    reference: Reference,
    *,
    tolerances: Tolerances | None = None,
    batch_size: int = 32,
) -> Verification:
    """Run every check on the files in ``folder``; raise VerificationError at the first failure."""
    tol = tolerances or Tolerances()
    rows = int(arrays[candidates.input_names()[-1]].shape[0])
    if rows < 2:
        raise VerificationError("rows", f"need at least 2 held-out rows, got {rows}")
    binary = np.array([t.type == "binary" for t in tasks])
    pair = _Pair(user, candidates, folder)
    _check_names(pair)
    _check_declared_shapes(pair)
    if candidates.output_names() != [t.id for t in tasks]:
        raise VerificationError("names", f"candidate outputs {candidates.output_names()} != tasks")

    onnx_out = np.concatenate(
        [pair.score(pair.user_rep(arrays, i), arrays, i, i + 1) for i in range(rows)]
    )
    _check_sanity(onnx_out, tasks, binary)
    with torch.no_grad():
        tensors = {
            n: torch.from_numpy(np.asarray(arrays[n], dtype=INPUT_DTYPES[n]))
            for n in (*USER_INPUTS, *CANDIDATE_INPUTS)
        }
        torch_out = reference(tensors).double().numpy()
    if torch_out.shape != onnx_out.shape:
        raise VerificationError(
            "shapes", f"PyTorch reference gives {torch_out.shape}, onnx {onnx_out.shape}"
        )
    max_abs, max_rel = _deviation(onnx_out, torch_out, binary)
    logger.info(
        "parity on %d rows: max abs diff %.3g (binary), max rel diff %.3g (regression)",
        rows,
        max_abs,
        max_rel,
    )
    per_task = np.abs(onnx_out - torch_out).max(axis=0) * binary  # binary columns only
    worst = tasks[int(per_task.argmax())].id
    if max_abs > tol.atol:
        raise VerificationError(
            "parity",
            f"max |onnx - torch| = {max_abs:.3g} > atol {tol.atol:g} on {rows} rows (worst task {worst})",
            max_abs,
        )
    if max_rel > tol.rtol_regression:
        raise VerificationError(
            "parity",
            f"regression max relative diff = {max_rel:.3g} > rtol {tol.rtol_regression:g}",
            max_rel,
        )

    n = min(batch_size, rows)
    rep = pair.user_rep(arrays, 0)
    batch = pair.score(rep, arrays, 0, n)
    single = np.concatenate([pair.score(rep, arrays, i, i + 1) for i in range(n)])
    _check_sanity(batch, tasks, binary)
    batch_abs, batch_rel = _deviation(batch, single, binary)
    if batch_abs > tol.atol or batch_rel > tol.rtol_regression:
        raise VerificationError(
            "batch",
            f"scoring {n} candidates at once differs from one by one: abs {batch_abs:.3g}, rel {batch_rel:.3g}",
            max(batch_abs, batch_rel),
        )
    return Verification(
        rows=rows,
        max_abs_diff=max_abs,
        atol=tol.atol,
        max_rel_diff_regression=max_rel if (~binary).any() else None,
        rtol_regression=tol.rtol_regression if (~binary).any() else None,
        batch_vs_single_max_abs_diff=max(batch_abs, batch_rel),
        batch_size=n,
        onnxruntime_version=ort.__version__,
        torch_version=torch.__version__,
    )
