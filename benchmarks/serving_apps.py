"""The services the serving comparison runs beside mtrank, each a process on its own port.

    python benchmarks/serving_apps.py naive --run RUN_DIR --store STORE --port 8001
    python benchmarks/serving_apps.py unsplit --store STORE --unsplit unsplit.onnx --port 8002
    python benchmarks/serving_apps.py litserve --store STORE [--unsplit unsplit.onnx] --port 8003

* ``naive``: what a team writes first. FastAPI with a pydantic body, the trained PyTorch model in
  eager mode (one torch thread), the user's features copied into every candidate row, the training
  transform over those rows, dicts out (FastAPI's JSON encoder).
* ``unsplit``: mtrank's own request path (orjson fast path, shared transform, fusion, the byte
  encoder) with the model as ONE ONNX graph fed the user's arrays repeated per candidate: what the
  split saves, everything else equal.
* ``litserve``: a generic Python model server (LitServe) serving the split pair (or, with
  ``--unsplit``, the one graph) behind mtrank's parse and transform, configured as its documentation
  advises for CPU: ``accelerator="cpu"``, one inference worker per core given (``--workers``),
  ``fast_queue=True`` (ZeroMQ between the API server and the workers).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from service.contracts.fusion import FusionSpec, derive_objectives, fuse
from service.json_body import BodyLimits, parse_rank_request
from service.model_store import ModelStore
from service.routers.rank import encode_response
from service.scoring.assembly import RankInput, stored_rows
from service.scoring.onnx_model import session_options
from service.scoring.ranker import RankOutput, choose_fusion, score_request
from service.scoring.registry import LoadedModel, ModelRegistry
from service.scoring.topk import top_k

LIMITS = BodyLimits(max_candidates=100_000, max_sequence_length=10_000)
USER_GROUPS = ("user_cat", "user_num", "user_seq")


class NaiveUser(BaseModel):
    id: str | None = None
    features: dict[str, Any] = {}


class NaiveCandidate(BaseModel):
    id: str
    features: dict[str, Any] = {}


class NaiveBody(BaseModel):
    """The naive service's body: the same JSON as /rank's list form, validated loosely."""

    request_id: str | None = None
    user: NaiveUser
    context: dict[str, Any] = {}
    candidates: list[NaiveCandidate]
    top_k: int | None = None
    explain: bool = False


def load_model(store: Path) -> LoadedModel:
    model_store = ModelStore(store)
    registry = ModelRegistry(model_store, model_store.models()[0])
    return registry.load()


class Unsplit:
    """The whole model as one ONNX graph over N rows (user arrays repeated per row)."""

    def __init__(self, path: Path) -> None:
        self.session = ort.InferenceSession(str(path), session_options(1))
        self.inputs = [i.name for i in self.session.get_inputs()]

    def score(self, model: LoadedModel, request: RankInput) -> RankOutput:
        n = len(request.candidate_ids)
        _, items = stored_rows(None, n)
        arrays = model.assembler.user_arrays(request.user_features, None)
        arrays |= model.assembler.candidate_arrays(request, items)
        feed = {
            k: np.repeat(arrays[k], n, axis=0) if k in USER_GROUPS else arrays[k]
            for k in self.inputs
        }
        scores: npt.NDArray[np.float32] = self.session.run(None, feed)[0]  # (N, T)
        tasks = {t.id: scores[:, k].astype(np.float64) for k, t in enumerate(model.manifest.tasks)}
        return finish(model, request, derive_objectives(tasks, model.manifest.derived))


def finish(
    model: LoadedModel, request: RankInput, objectives: dict[str, npt.NDArray[np.float64]]
) -> RankOutput:
    name, spec = choose_fusion(model, request)
    fused = fuse(spec, objectives)
    return _output(model, request, name, spec, objectives, fused, top_k(fused, request.top_k))


def _output(
    model: LoadedModel,
    request: RankInput,
    name: str,
    spec: FusionSpec,
    objectives: dict[str, npt.NDArray[np.float64]],
    fused: npt.NDArray[np.float64],
    order: npt.NDArray[np.intp],
) -> RankOutput:
    return RankOutput(
        model=model.name,
        version=model.version,
        fusion_name=name,
        fusion=spec,
        candidate_ids=request.candidate_ids,
        order=order,
        timings={},
        feature_fetch=None,
        user_cache="disabled",
        objective_scores=objectives,
        fused_scores=fused,
    )


def split_score(model: LoadedModel, request: RankInput) -> RankOutput:
    """mtrank's own scoring stage (transform, user graph once, candidate graph, fusion, top-k)."""
    name, spec = choose_fusion(model, request)
    scored = score_request(model, request, None, None, spec)
    return _output(model, request, name, spec, scored.objectives, scored.fused, scored.order)


def unsplit_app(store: Path, unsplit: Path) -> Any:
    model, graph = load_model(store), Unsplit(unsplit)
    app = FastAPI()

    @app.post("/rank")
    async def rank(request: Request) -> Response:
        parsed = parse_rank_request(await request.body(), LIMITS)
        output = graph.score(model, parsed.input)
        return Response(encode_response(parsed, output), media_type="application/json")

    return app


def naive_app(run: Path, store: Path) -> Any:
    import torch

    from service.contracts.fusion import FUSION_FILE, FusionConfig
    from service.contracts.transform import FeatureTransform
    from training.train.checkpoint import load_run

    torch.set_num_threads(1)
    loaded = load_run(run)
    transform = FeatureTransform(loaded.spec, strict=True)
    model_store = ModelStore(store)
    name = model_store.models()[0]
    version = model_store.current(name) or model_store.versions(name)[-1]
    fusion = FusionConfig.load(model_store.version_dir(name, version) / FUSION_FILE)
    spec = fusion.presets[fusion.default]
    names = [
        "user_cat",
        "user_num",
        "user_seq",
        "item_cat",
        "item_num",
        "context_cat",
        "context_num",
    ]

    app = FastAPI()

    @app.post("/rank")
    def rank(body: NaiveBody) -> dict[str, Any]:
        rows = [{**body.user.features, **body.context, **c.features} for c in body.candidates]
        arrays = transform.transform_records(rows, ("user", "item", "context"))
        with torch.no_grad():
            scores = loaded.model.forward_unsplit(
                **{k: torch.from_numpy(arrays[k]) for k in names}
            ).numpy()
        tasks = {t.id: scores[:, k].astype(np.float64) for k, t in enumerate(loaded.tasks)}
        objectives = derive_objectives(tasks, loaded.derived)
        fused = fuse(spec, objectives)
        order = top_k(fused, body.top_k).tolist()
        return {
            "request_id": body.request_id,
            "items": [
                {
                    "id": body.candidates[i].id,
                    "rank": r,
                    "score": float(fused[i]),
                    "objectives": {k: float(v[i]) for k, v in objectives.items()},
                }
                for r, i in enumerate(order, start=1)
            ],
        }

    return app


class RankAPI(ls.LitAPI):  # type: ignore[misc]
    """mtrank's parse, transform and scoring as a LitServe API (split pair, or one graph)."""

    def __init__(self, store: Path, unsplit: Path | None) -> None:
        super().__init__(api_path="/rank")
        self.store, self.unsplit = store, unsplit

    def setup(self, device: str) -> None:
        del device
        self.model = load_model(self.store)
        self.graph = Unsplit(self.unsplit) if self.unsplit is not None else None

    def decode_request(self, request):  # type: ignore[no-untyped-def]  # LitServe reads a bare name as the JSON body
        return parse_rank_request(orjson.dumps(request), LIMITS).input

    def predict(self, request: RankInput) -> RankOutput:
        if self.graph is not None:
            return self.graph.score(self.model, request)
        return split_score(self.model, request)

    def encode_response(self, output: RankOutput) -> dict[str, Any]:
        return {"items": [dataclasses.asdict(item) for item in output.items]}


def run_litserve(store: Path, unsplit: Path | None, port: int, workers: int) -> None:
    server = ls.LitServer(
        RankAPI(store, unsplit), accelerator="cpu", workers_per_device=workers, fast_queue=True
    )
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=("naive", "unsplit", "litserve"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--run", type=Path, help="naive: the training run directory")
    parser.add_argument("--store", type=Path, help="the model store holding one model")
    parser.add_argument("--unsplit", type=Path, help="the one-graph ONNX export")
    parser.add_argument("--workers", type=int, default=1, help="litserve: inference workers")
    args = parser.parse_args(argv)
    if args.kind == "litserve":
        run_litserve(args.store, args.unsplit, args.port, args.workers)
        return 0
    import uvicorn

    app = (
        naive_app(args.run, args.store)
        if args.kind == "naive"
        else unsplit_app(args.store, args.unsplit)
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
