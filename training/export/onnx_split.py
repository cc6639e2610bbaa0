"""Export a ranker as two ONNX graphs: the DUPN split.

* user graph (batch 1): ``user_cat (1, Cu)``, ``user_num (1, Nu)``, ``user_seq (1, S, L)`` ->
  ``user_rep (1, D)``; D includes the user half ``W_u·u + b`` of every first layer fed by [u; i].
* candidate graph (N dynamic): ``user_rep (1, D)``, ``item_cat (N, Ci)``, ``item_num (N, Ni)``,
  ``context_cat (N, Cc)``, ``context_num (N, Nc)`` -> one ``(N,)`` output per task, named by task id.

Only non-empty input groups become graph inputs; the signature recorded for the manifest is read back
from the exported files, so it is exactly what onnxruntime will see.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import Tensor, nn

from service.contracts.manifest import USER_REP, GraphSpec, TensorSpec
from training.export.external_data import EXTERNAL_DATA_BYTES, store_weights
from training.export.graph_cleanup import skip_stacked_gathers_in_file

logger = logging.getLogger(__name__)

OPSET = 17
USER_FILE = "user.onnx"
CANDIDATES_FILE = "candidates.onnx"
USER_INPUTS = ("user_cat", "user_num", "user_seq")
CANDIDATE_INPUTS = ("item_cat", "item_num", "context_cat", "context_num")
INPUT_DTYPES: dict[str, Any] = {
    "user_cat": np.int64,
    "user_num": np.float32,
    "user_seq": np.int64,
    "item_cat": np.int64,
    "item_num": np.float32,
    "context_cat": np.int64,
    "context_num": np.float32,
}
_ONNX_DTYPES = {onnx.TensorProto.INT64: "int64", onnx.TensorProto.FLOAT: "float32"}
ModelArrays = Mapping[str, npt.NDArray[Any]]


class SplitRanker(Protocol):
    """What the exporter needs from a model (``MultiTaskRanker`` provides it)."""

    def user_representation(
        self, user_cat: Tensor, user_num: Tensor, user_seq: Tensor
    ) -> Tensor: ...

    def score_candidates(
        self,
        user_rep: Tensor,
        item_cat: Tensor,
        item_num: Tensor,
        context_cat: Tensor,
        context_num: Tensor,
    ) -> Tensor: ...


@dataclass(frozen=True)
class SplitExport:
    """The two exported files and their signatures (as the manifest records them)."""

    user: GraphSpec
    candidates: GraphSpec
    opset: int
    files: tuple[str, ...] = (USER_FILE, CANDIDATES_FILE)  # with external weights, if any


def present_inputs(arrays: ModelArrays, names: Sequence[str]) -> list[str]:
    """The input groups with at least one column (an empty group is not a graph input)."""
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"model arrays lack {missing}; pass every array the transform produces")
    return [n for n in names if int(np.prod(arrays[n].shape[1:])) > 0]


def _tensor(array: npt.NDArray[Any], name: str) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=INPUT_DTYPES[name]))


class _UserGraph(nn.Module):
    """Feeds the present user inputs, constant empty tensors for the others."""

    def __init__(self, ranker: nn.Module, present: list[str], empty: dict[str, Tensor]) -> None:
        super().__init__()
        self.ranker = ranker
        self.present = present
        self.empty = empty

    def forward(self, *inputs: Tensor) -> Tensor:
        args = {**self.empty, **dict(zip(self.present, inputs, strict=True))}
        rep = cast(SplitRanker, self.ranker).user_representation(**args)  # (1, D)
        return rep


class _CandidateGraph(nn.Module):
    """Scores N candidates and splits the (N, T) output into T named (N,) outputs."""

    def __init__(self, ranker: nn.Module, present: list[str], n_tasks: int) -> None:
        super().__init__()
        self.ranker = ranker
        self.present = present
        self.n_tasks = n_tasks

    def forward(self, user_rep: Tensor, *inputs: Tensor) -> tuple[Tensor, ...]:
        given = dict(zip(self.present, inputs, strict=True))
        anchor = given[self.present[0]]  # (N, ...): empty groups get N rows and 0 columns
        args = {}
        for name in CANDIDATE_INPUTS:
            if name in given:
                args[name] = given[name]
            else:
                dtype = torch.int64 if INPUT_DTYPES[name] is np.int64 else torch.float32
                args[name] = anchor.reshape(anchor.shape[0], -1)[:, :0].to(dtype)  # (N, 0)
        scores = cast(SplitRanker, self.ranker).score_candidates(user_rep, **args)  # (N, T)
        # checked eagerly only; verify_split checks the exported graph's shapes
        tracing = torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
        if not tracing and (scores.dim() != 2 or int(scores.shape[1]) != self.n_tasks):
            raise ValueError(
                f"score_candidates must return (N, {self.n_tasks}), got {tuple(scores.shape)}"
            )
        return tuple(scores[:, k] for k in range(self.n_tasks))


def graph_spec(path: Path) -> GraphSpec:
    """Read a graph's input/output names, dtypes and shapes back from the ONNX file."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def specs(values: Any) -> list[TensorSpec]:
        out = []
        for value in values:
            ttype = value.type.tensor_type
            if ttype.elem_type not in _ONNX_DTYPES:
                raise ValueError(
                    f"{path.name}: {value.name} has unsupported element type {ttype.elem_type}"
                )
            shape: list[int | str] = [
                d.dim_param if d.HasField("dim_param") else int(d.dim_value)
                for d in ttype.shape.dim
            ]
            out.append(
                TensorSpec(name=value.name, dtype=_ONNX_DTYPES[ttype.elem_type], shape=shape)
            )
        return out

    return GraphSpec(file=path.name, inputs=specs(graph.input), outputs=specs(graph.output))


def export_split(
    ranker: nn.Module,
    sample: ModelArrays,
    task_ids: Sequence[str],
    out_dir: Path,
    *,
    opset: int = OPSET,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> SplitExport:
    """Export ``ranker`` (put in eval mode) to ``out_dir/user.onnx`` and ``out_dir/candidates.onnx``.

    ``sample`` holds model arrays of at least 2 rows (held-out rows): row 0 traces the user graph and
    the first rows trace the candidate graph with its dynamic dimension ``N``.
    """
    rows = int(sample["item_cat"].shape[0]) if "item_cat" in sample else 0
    if rows < 2:
        raise ValueError(f"export needs at least 2 sample rows to trace a dynamic N, got {rows}")
    user_present = present_inputs(sample, USER_INPUTS)
    cand_present = present_inputs(sample, CANDIDATE_INPUTS)
    if not cand_present:
        raise ValueError("the candidate graph needs at least one item or context feature")
    if not user_present:
        raise ValueError("the user graph needs at least one user feature")
    ranker.eval()
    empty = {
        n: _tensor(sample[n][:1], n) for n in USER_INPUTS if n not in user_present
    }  # (1, 0) or (1, 0, L)
    user_args = tuple(_tensor(sample[n][:1], n) for n in user_present)
    n = min(rows, 8)
    cand_args = tuple(_tensor(sample[name][:n], name) for name in cand_present)
    user_module = _UserGraph(ranker, user_present, empty).eval()
    cand_module = _CandidateGraph(ranker, cand_present, len(task_ids)).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    with torch.no_grad():
        user_rep = user_module(*user_args)
        if user_rep.dim() != 2 or user_rep.shape[0] != 1:
            raise ValueError(f"user_representation must return (1, D), got {tuple(user_rep.shape)}")
        before = {p.name for p in out_dir.iterdir()}
        torch.onnx.export(
            user_module,
            user_args,
            str(out_dir / USER_FILE),
            input_names=user_present,
            output_names=[USER_REP],
            opset_version=opset,
            dynamo=False,
        )
        skip_stacked_gathers_in_file(out_dir / USER_FILE)
        files += store_weights(out_dir / USER_FILE, before, external_data_bytes)
        scores = cand_module(user_rep, *cand_args)
        if scores[0].shape != (n,):
            raise ValueError(
                f"score_candidates must return ({n}, T), got {tuple(scores[0].shape)} per task"
            )
        dynamic = {name: {0: "N"} for name in cand_present} | {t: {0: "N"} for t in task_ids}
        before = {p.name for p in out_dir.iterdir()}
        torch.onnx.export(
            cand_module,
            (user_rep, *cand_args),
            str(out_dir / CANDIDATES_FILE),
            input_names=[USER_REP, *cand_present],
            output_names=list(task_ids),
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
        skip_stacked_gathers_in_file(out_dir / CANDIDATES_FILE)  # one node per task, not three
        files += store_weights(out_dir / CANDIDATES_FILE, before, external_data_bytes)
    export = SplitExport(
        user=graph_spec(out_dir / USER_FILE),
        candidates=graph_spec(out_dir / CANDIDATES_FILE),
        opset=opset,
        files=tuple(files),
    )
    logger.info(
        "exported user graph %s and candidate graph %s",
        export.user.input_names(),
        export.candidates.input_names(),
    )
    return export
