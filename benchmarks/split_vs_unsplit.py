"""What the DUPN split buys: scoring N candidates with the split pair against one unsplit graph.

    python benchmarks/split_vs_unsplit.py --run runs/sim-default [--candidates 100 500 1000 2000]

Exports a trained run twice with onnxruntime sessions configured as the service configures them:

* ``split``: what mtrank serves, ``user.onnx`` once (batch 1) then ``candidates.onnx`` over N rows;
* ``unsplit``: the whole model as one graph (``forward_unsplit``) with the user's features copied
  to every candidate row, which is what serving the trained model as it is (a generic model server,
  a hand-written Flask app) does.

Both are compared first (max |diff| / max(|value|, 1) over every output, printed). Prints median milliseconds per request and
the ratio unsplit / split for each N.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
from torch import Tensor, nn
from torch.jit import TracerWarning  # type: ignore[attr-defined]

from service.scoring.onnx_model import session_options
from training.export.graph_cleanup import skip_stacked_gathers_in_file
from training.export.onnx_split import CANDIDATE_INPUTS, USER_INPUTS, export_split, present_inputs
from training.export.run_inputs import inputs_from_run

Arrays = dict[str, npt.NDArray[Any]]


class _Unsplit(nn.Module):
    """The ranker's reference forward as one graph: (N rows of every input) -> (N, T)."""

    def __init__(self, ranker: nn.Module, names: list[str], empty: dict[str, Tensor]) -> None:
        super().__init__()
        self.ranker, self.names, self.empty = ranker, names, empty

    def forward(self, *inputs: Tensor) -> Tensor:
        given = dict(zip(self.names, inputs, strict=True))
        n = inputs[0].shape[0]
        for name, value in self.empty.items():
            given[name] = value.expand(n, *value.shape[1:])
        forward: Callable[..., Tensor] = getattr(self.ranker, "forward_unsplit")  # noqa: B009
        out: Tensor = forward(**given)
        return out


def export_unsplit(ranker: nn.Module, arrays: Arrays, path: Path) -> list[str]:
    names = present_inputs(arrays, (*USER_INPUTS, *CANDIDATE_INPUTS))
    empty = {
        n: torch.from_numpy(arrays[n][:1])
        for n in (*USER_INPUTS, *CANDIDATE_INPUTS)
        if n in arrays and n not in names
    }
    module = _Unsplit(ranker, names, empty).eval()
    sample = tuple(torch.from_numpy(arrays[n][:8]) for n in names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", TracerWarning)  # the model's eager-only checks
        torch.onnx.export(
            module,
            sample,
            str(path),
            input_names=names,
            output_names=["scores"],
            dynamic_axes={n: {0: "N"} for n in [*names, "scores"]},
            opset_version=17,
            dynamo=False,
        )
    skip_stacked_gathers_in_file(path)  # as the split export does: like for like
    return names


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--run", type=Path, required=True, help="run directory written by train")
    parser.add_argument("--candidates", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args(argv)

    inputs = inputs_from_run(args.run, rows=max(args.candidates))
    arrays = {k: np.ascontiguousarray(v) for k, v in inputs.arrays.items()}
    rows = int(arrays["item_cat"].shape[0])
    options = session_options(args.threads)
    with tempfile.TemporaryDirectory(prefix="mtrank-split-bench-") as tmp:
        folder = Path(tmp)
        split = export_split(inputs.ranker, arrays, [t.id for t in inputs.tasks], folder)
        names = export_unsplit(inputs.ranker, arrays, folder / "unsplit.onnx")
        user = ort.InferenceSession(str(folder / split.user.file), options)
        cand = ort.InferenceSession(str(folder / split.candidates.file), options)
        whole = ort.InferenceSession(str(folder / "unsplit.onnx"), options)

        user_names = split.user.input_names()
        cand_names = split.candidates.input_names()[1:]
        print(f"{args.run}: {inputs.architecture}, {len(inputs.tasks)} tasks, {rows} held-out rows")
        print(
            f"{'N':>6} {'split ms':>9} {'unsplit ms':>11} {'unsplit/split':>14} {'max rel diff':>13}"
        )
        for n in args.candidates:
            n = min(n, rows)
            user_feed = {k: arrays[k][:1] for k in user_names}
            cand_feed = {k: arrays[k][:n] for k in cand_names}
            whole_feed = {
                k: np.repeat(arrays[k][:1], n, axis=0) if k in USER_INPUTS else arrays[k][:n]
                for k in names
            }

            def run_split(
                user_feed: Arrays = user_feed, cand_feed: Arrays = cand_feed
            ) -> npt.NDArray[np.float32]:
                rep = user.run(None, user_feed)[0]
                return np.stack(cand.run(None, {"user_rep": rep} | cand_feed), axis=1)

            def run_whole(whole_feed: Arrays = whole_feed) -> npt.NDArray[np.float32]:
                out: npt.NDArray[np.float32] = whole.run(None, whole_feed)[0]
                return out

            expected = run_whole()
            diff = float((np.abs(run_split() - expected) / np.maximum(np.abs(expected), 1)).max())
            split_ms = median_ms(run_split, args.repeat)
            whole_ms = median_ms(run_whole, args.repeat)
            print(
                f"{n:>6} {split_ms:>9.2f} {whole_ms:>11.2f} {whole_ms / split_ms:>13.2f}x {diff:>13.2g}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
