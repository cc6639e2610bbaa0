"""onnxruntime sessions for one model version's split graphs (DUPN: user graph + candidate graph).

Sessions are created once per version with options for this workload: a request is one small user
graph run plus one candidate graph run over N rows, many requests run concurrently on a few cores, so
each session uses few intra-op threads (``ort_threads``), one inter-op thread and sequential
execution; full graph optimisation and the memory-pattern planner pay off because shapes repeat.
Inputs are fed by the manifest's graph input names (only the non-empty groups are graph inputs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.contracts.manifest import USER_REP, Graphs, GraphSpec

logger = logging.getLogger(__name__)

_ORT_TYPES = {"int64": "tensor(int64)", "float32": "tensor(float)"}
_NUMPY_TYPES: dict[str, Any] = {"int64": np.int64, "float32": np.float32}
Arrays = Mapping[str, npt.NDArray[Any]]


class GraphMismatchError(ValueError):
    """An ONNX file's inputs or outputs differ from what the manifest declares."""


def session_options(threads: int) -> ort.SessionOptions:
    """Options tuned for many small concurrent runs on a few cores."""
    if threads < 1:
        raise ValueError(f"ort threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = True
    options.enable_cpu_mem_arena = True
    return options


def _check_io(label: str, session: ort.InferenceSession, spec: GraphSpec) -> None:
    for kind, actual, declared in (
        ("inputs", session.get_inputs(), spec.inputs),
        ("outputs", session.get_outputs(), spec.outputs),
    ):
        got = [(t.name, t.type) for t in actual]
        want = [(t.name, _ORT_TYPES[t.dtype]) for t in declared]
        if got != want:
            raise GraphMismatchError(
                f"{label} graph {spec.file} has {kind} {got}, the manifest declares {want}; "
                "republish the version"
            )


class SplitSessions:
    """The user and candidate sessions of one version, checked against the manifest at load."""

    def __init__(self, folder: Path, graphs: Graphs, *, threads: int = 1) -> None:
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        self.graphs = graphs
        self.user = ort.InferenceSession(
            str(folder / graphs.user.file), options, providers=providers
        )
        self.candidates = ort.InferenceSession(
            str(folder / graphs.candidates.file), options, providers=providers
        )
        _check_io("user", self.user, graphs.user)
        _check_io("candidates", self.candidates, graphs.candidates)
        self._user_inputs = [(t.name, _NUMPY_TYPES[t.dtype]) for t in graphs.user.inputs]
        self._cand_inputs = [(t.name, _NUMPY_TYPES[t.dtype]) for t in graphs.candidates.inputs[1:]]
        self.outputs = graphs.candidates.output_names()

    def user_rep(self, arrays: Arrays) -> npt.NDArray[np.float32]:
        """Run the user graph on one user's arrays; returns ``user_rep`` (1, D)."""
        feed = {name: np.ascontiguousarray(arrays[name], dtype=t) for name, t in self._user_inputs}
        rep: npt.NDArray[np.float32] = self.user.run([USER_REP], feed)[0]
        return rep

    def score(
        self,
        user_rep: npt.NDArray[np.float32],
        arrays: Arrays,
        n_rows: int,
        *,
        chunk: int | None = None,
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Run the candidate graph over ``n_rows`` candidates; one (N,) array per task output.

        ``chunk``: score at most this many rows per run (None: all at once).
        """
        feed: dict[str, npt.NDArray[Any]] = {USER_REP: np.ascontiguousarray(user_rep, np.float32)}
        for name, dtype in self._cand_inputs:
            feed[name] = np.ascontiguousarray(arrays[name], dtype=dtype)
        if chunk is None or n_rows <= chunk:
            return dict(zip(self.outputs, self.candidates.run(self.outputs, feed), strict=True))
        parts: list[list[npt.NDArray[np.float32]]] = []
        for start in range(0, n_rows, chunk):
            part = {k: (v if k == USER_REP else v[start : start + chunk]) for k, v in feed.items()}
            parts.append(self.candidates.run(self.outputs, part))
        return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(self.outputs)}
