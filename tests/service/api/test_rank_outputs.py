"""/rank's scores are the model's: pinned to onnxruntime run directly, whichever parse path ran.

The request path is tuned for speed (msgspec fast path, response written from the score arrays);
these tests hold its output to what the model computes on the shared transform's arrays, within
1e-6, and to the pydantic path's answer byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from service import rank_items
from service.contracts.fusion import FUSION_FILE, FusionConfig, derive_objectives, fuse
from service.contracts.transform import FeatureTransform
from service.json_body import BodyLimits, parse_rank_request, validate_rank_request
from service.model_store import ModelStore
from service.rank_body import ParsedRank, from_request
from service.rank_items import SAME_FLOATS_BELOW
from service.routers.rank import encode_response
from service.scoring.ranker import Ranker, RankOutput
from service.scoring.registry import ModelRegistry
from tests.fixtures.published_model import PublishedModel, raw_items, raw_user
from tests.service.api.conftest import AppClient

N = 40
LIMITS = BodyLimits(max_candidates=100, max_sequence_length=100)


def _body(columnar: bool) -> dict[str, Any]:
    items = raw_items(N, seed=3)
    ids = [f'item "{k}" é' for k in range(N)]  # ids that need escaping in JSON
    candidates: Any = (
        {"ids": ids, "features": items}
        if columnar
        else [{"id": i, "features": {n: v[k] for n, v in items.items()}} for k, i in enumerate(ids)]
    )
    return {
        "request_id": "pin",
        "user": {"id": "u3", "features": raw_user(3)},
        "context": {"hour": "9"},
        "candidates": candidates,
        "explain": False,
    }


def _onnxruntime_scores(store_dir: Path, model: str, version: str) -> dict[str, np.ndarray]:
    """Every objective per candidate, from the store's ONNX files run by onnxruntime directly."""
    manifest = ModelStore(store_dir).read_manifest(model, version)
    folder = store_dir / model / version
    transform = FeatureTransform(manifest.feature_spec, strict=True)
    body = _body(columnar=True)
    user = transform.transform_columns(
        {k: [v] for k, v in body["user"]["features"].items()}, 1, ["user"]
    )
    arrays = transform.transform_columns(body["candidates"]["features"], N, ["item"])
    context = transform.transform_columns({"hour": ["9"]}, 1, ["context"])
    arrays |= {k: np.repeat(v, N, axis=0) for k, v in context.items()}
    user_session = ort.InferenceSession(str(folder / manifest.graphs.user.file))
    candidates = ort.InferenceSession(str(folder / manifest.graphs.candidates.file))
    rep = user_session.run(None, {t.name: user[t.name] for t in manifest.graphs.user.inputs})[0]
    feed = {t.name: arrays[t.name] for t in manifest.graphs.candidates.inputs[1:]}
    outputs = candidates.run(None, {"user_rep": rep, **feed})
    tasks = {
        t.id: outputs[manifest.graphs.candidates.output_names().index(t.output)].astype(np.float64)
        for t in manifest.tasks
    }
    return derive_objectives(tasks, manifest.derived)


@pytest.mark.parametrize("columnar", [False, True], ids=["rows", "columns"])
def test_scores_equal_onnxruntime_run_directly_within_1e6(
    client: AppClient, published_store: PublishedModel, columnar: bool
) -> None:
    version = published_store.versions[0]
    expected = _onnxruntime_scores(published_store.store_dir, published_store.model, version)
    response = client.post("/rank", content=orjson.dumps(_body(columnar)))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"]["version"] == version
    position = {f'item "{k}" é': k for k in range(N)}
    for item in result["items"]:
        for name, values in expected.items():
            assert item["objectives"][name] == pytest.approx(values[position[item["id"]]], abs=1e-6)
    folder = published_store.store_dir / published_store.model / version
    presets = FusionConfig.load(folder / FUSION_FILE).presets
    fused = fuse(presets[result["fusion"]["name"]], expected)
    assert [item["score"] for item in result["items"]] == pytest.approx(
        sorted(fused, reverse=True), abs=1e-6
    )
    assert [position[item["id"]] for item in result["items"]] == list(
        np.lexsort((np.arange(N), -fused))
    )


@pytest.mark.parametrize("columnar", [False, True], ids=["rows", "columns"])
def test_fast_and_pydantic_paths_answer_byte_for_byte_alike(
    published_store: PublishedModel, columnar: bool
) -> None:
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    registry.load()
    ranker = Ranker(registry)
    body = orjson.dumps({**_body(columnar), "top_k": 7})
    fast = parse_rank_request(body, LIMITS)
    slow = from_request(validate_rank_request(body, LIMITS))
    assert fast == slow
    answers = [encode_response(p, asyncio.run(ranker.rank(p.input))) for p in (fast, slow)]
    assert answers[0] == answers[1]
    output = asyncio.run(ranker.rank(fast.input))
    items = orjson.loads(encode_response(fast, output))["items"]
    assert items == [dataclasses.asdict(item) for item in output.items]
    assert [item["rank"] for item in items] == list(range(1, 8))


def test_zero_inference_threads_scores_on_the_event_loop_alike(
    make_app: Any, client: AppClient
) -> None:
    body = orjson.dumps(_body(columnar=False))
    with AppClient(make_app(inference_threads=0)) as inline:
        assert inline.app.state.mtrank.ranker.inline
        answer = inline.post("/rank", content=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == client.post("/rank", content=body).json()["items"]


def _plain_json(parsed: ParsedRank, output: RankOutput) -> bytes:
    """The answer written the simple way: every item as a dict, one ``orjson.dumps``."""
    answer: dict[str, Any] = {
        "request_id": parsed.request_id,
        "model": {"name": output.model, "version": output.version},
        "fusion": {"name": output.fusion_name, "spec": output.fusion.model_dump(mode="json")},
        "items": [dataclasses.asdict(item) for item in output.items],
    }
    if parsed.explain:
        assert output.feature_fetch is None  # no store here
        answer["explain"] = {
            "timings": output.timings,
            "feature_fetch": None,
            "user_cache": output.user_cache,
        }
    return orjson.dumps(answer)


@pytest.mark.parametrize(
    "ids",
    [
        [f"i{k}" for k in range(N)],
        [f'item "{k}" é' for k in range(N)],
        [f"a,b:{k}" if k % 2 else f'x","{k}' for k in range(N)],
        ["é日本", *(f"{k}" for k in range(1, N))],
    ],
    ids=["plain", "escaped", "separators", "unicode"],
)
@pytest.mark.parametrize("writer", ["c", "python"])
def test_answer_is_byte_for_byte_the_plain_dumps(
    published_store: PublishedModel, ids: list[str], writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if writer == "c":
        pytest.importorskip("service._speedups", reason="built without a C compiler")
    else:  # as installed without a C compiler: the msgspec and token writers
        monkeypatch.setattr(rank_items, "_speedups", None)
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    registry.load()
    ranker = Ranker(registry)
    for top_k in (N, 3, 25, 1):  # rank tokens are kept from larger lists: reused when shorter
        body = _body(columnar=True)
        body["candidates"]["ids"] = ids
        explain = top_k in (N, 1)  # the answer with and without what follows the items
        parsed = parse_rank_request(
            orjson.dumps({**body, "top_k": top_k, "explain": explain}), LIMITS
        )
        assert parsed.explain is explain
        output = asyncio.run(ranker.rank(parsed.input))
        assert encode_response(parsed, output) == _plain_json(parsed, output)
        # scores from 1e16 on: msgspec would write 1e16 where orjson writes 1e+16
        for scale in (1e17, -1e20, 1e300):  # with 1e17, some scores stay below 1e16
            large = dataclasses.replace(output, fused_scores=output.fused_scores * scale)
            assert b"e+" in encode_response(parsed, large)
            assert encode_response(parsed, large) == _plain_json(parsed, large)


def test_msgspec_writes_every_float_below_1e16_as_orjson_does() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.random(20_000),
            rng.random(5_000).astype(np.float32).astype(np.float64),
            np.exp(rng.normal(0.0, 15.0, 20_000)) * rng.choice([-1.0, 1.0], 20_000),
            [0.0, -0.0, 1.0, 1e-5, 1e-7, 5e-324, 2.0**53, 1e15, 9999999999999998.0],
        ]
    )
    below = values[np.abs(values) < SAME_FLOATS_BELOW].tolist()
    assert len(below) > 40_000
    assert msgspec.json.encode(below) == orjson.dumps(below)
    assert msgspec.json.encode(1e16) != orjson.dumps(1e16)  # why the limit is there
