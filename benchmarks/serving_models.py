"""Models, request bodies and in-process measurements for the serving comparison.

``prepare`` generates simulator data, trains, publishes and exports the one-graph ONNX of a preset
into a work directory (each step skipped when its output exists). ``bodies`` builds /rank bodies
from the simulator's user and item tables. ``floor`` times onnxruntime on prepared arrays (user graph
once + candidate graph), ``candidate_flops`` counts the candidate graph's multiply-adds and
``sgemm_gflops`` measures this machine's single-core sgemm through onnxruntime's own kernel.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pyarrow.parquet as pq
from onnx import TensorProto, helper
from serving_apps import LIMITS, USER_GROUPS, Unsplit

from service.json_body import parse_rank_request
from service.model_store import ModelStore
from service.scoring.assembly import stored_rows
from service.scoring.onnx_model import session_options
from service.scoring.registry import LoadedModel, ModelRegistry

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Prepared:
    name: str
    data: Path
    run: Path
    store: Path
    unsplit: Path
    history_length: int


def _cli(*args: str) -> None:
    command = [sys.executable, "-m", "training", *args]
    print("$ python -m training " + " ".join(args), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def prepare(
    work: Path, name: str, preset: str, history: int, rows: int, epochs: int | None
) -> Prepared:
    folder = work / name
    data, run, store = folder / "data", folder / "run", folder / "store"
    if not (data / "dataset.yaml").is_file():
        _cli("generate", "simulator", "--rows", str(rows), "--seed", "0", "--out", str(data),
             "--history-length", str(history), "--no-progress")  # fmt: skip
    if not (run / "checkpoint.pt").is_file():
        extra = [] if epochs is None else ["--epochs", str(epochs)]
        _cli("train", "--preset", preset, "--data", str(data), "--out", str(run), "--no-progress",
             *extra)  # fmt: skip
    if not store.is_dir():
        _cli("publish", str(run), "--store", str(store), "--model", "feed")
    unsplit = folder / "unsplit.onnx"
    if not unsplit.is_file():
        from split_vs_unsplit import export_unsplit

        from training.export.run_inputs import inputs_from_run

        inputs = inputs_from_run(run, rows=64)
        export_unsplit(inputs.ranker, dict(inputs.arrays), unsplit)
    return Prepared(name, data, run, store, unsplit, history)


def bodies(prepared: Prepared, n: int) -> dict[str, bytes]:
    """``{"list": ..., "columnar": ...}``: one user (history filled to its full length), the
    simulator's context, ``n`` candidates cycling through the item table under unique ids."""
    users = pq.read_table(prepared.data / "users.parquet").to_pylist()
    items = pq.read_table(prepared.data / "items.parquet").to_pylist()
    user = max(users, key=lambda u: len(u["history"]))
    history = list(user["history"])
    history += [items[k % len(items)]["item_id"] for k in range(prepared.history_length)]
    user["history"] = history[: prepared.history_length]
    rows = [items[k % len(items)] for k in range(n)]
    ids = [f"{row['item_id']}-{k}" for k, row in enumerate(rows)]
    head = {
        "request_id": "bench",
        "user": {"id": str(user["user_id"]), "features": user},
        "context": {"hour": 20, "device": "ios"},
    }
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    return {
        "list": orjson.dumps(
            {
                **head,
                "candidates": [{"id": i, "features": r} for i, r in zip(ids, rows, strict=True)],
            }
        ),
        "columnar": orjson.dumps({**head, "candidates": {"ids": ids, "features": columns}}),
    }


def load(prepared: Prepared) -> LoadedModel:
    return ModelRegistry(ModelStore(prepared.store), "feed").load()


def median_ms(run: Callable[[], object], repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def prepared_arrays(model: LoadedModel, body: bytes) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The graphs' inputs for a /rank body, as the server builds them: (user arrays, candidate
    arrays, number of candidates)."""
    request = parse_rank_request(body, LIMITS).input
    n = len(request.candidate_ids)
    user = model.assembler.user_arrays(request.user_features, None)
    return user, model.assembler.candidate_arrays(request, stored_rows(None, n)[1]), n


def floor(model: LoadedModel, body: bytes, repeat: int, unsplit: Path) -> dict[str, float]:
    """Milliseconds of onnxruntime alone on this body's prepared arrays (median of ``repeat``):
    the user graph, the candidate graph, both, and the one-graph export over repeated user rows."""
    user, arrays, n = prepared_arrays(model, body)
    sessions = model.sessions
    rep = sessions.user_rep(user)
    user_ms = median_ms(lambda: sessions.user_rep(user), repeat)
    candidate_ms = median_ms(lambda: sessions.score(rep, arrays, n), repeat)
    both_ms = median_ms(lambda: sessions.score(sessions.user_rep(user), arrays, n), repeat)
    whole = Unsplit(unsplit)
    feed = {
        k: np.repeat(user[k], n, axis=0) if k in USER_GROUPS else arrays[k] for k in whole.inputs
    }
    unsplit_ms = median_ms(lambda: whole.session.run(None, feed), repeat)
    return {
        "user_graph": user_ms,
        "candidate_graph": candidate_ms,
        "graphs": both_ms,
        "unsplit_graph": unsplit_ms,
    }


def candidate_flops(path: Path) -> int:
    """Floating-point operations per candidate in the candidate graph's matrix products."""
    graph = onnx.load(str(path)).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    total = 0
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            weight = shapes.get(node.input[1])
            if weight is not None and len(weight) == 2:
                total += 2 * weight[0] * weight[1]
    return total


_VECTORS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))


def cpu_description() -> str:
    """This host's CPU as ``/proc/cpuinfo`` names it, its core count and widest vector extension:
    the ratio of the request path to its graphs moves with it (the graphs gain more from wider
    vectors than the interpreter does)."""
    model, flags = "unknown CPU", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the model and vectors stay unknown
        pass
    vectors = next((name for flag, name in _VECTORS if flag in flags), "no AVX")
    return f"{model}, {os.cpu_count()} cores, {vectors}"


def sgemm_gflops(size: int = 1024, repeat: int = 5) -> float:
    """Single-thread sgemm of two size x size matrices through onnxruntime's MatMul kernel."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [size, size])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sgemm.onnx"
        onnx.save(model, str(path))
        session = ort.InferenceSession(str(path), session_options(1))
    rng = np.random.default_rng(0)
    feed: dict[str, Any] = {
        "a": rng.random((size, size), dtype=np.float32),
        "b": rng.random((size, size), dtype=np.float32),
    }
    ms = median_ms(lambda: session.run(None, feed), repeat)
    return 2 * size**3 / (ms * 1e-3) / 1e9
