"""Structure-aware fuzzing of ``POST /rank`` against a real uvicorn process.

A generic fuzzer almost never reaches a 200 on /rank: it does not know the model's feature names,
kinds, vocabularies, objectives or presets. These strategies build bodies from the served version's
own manifest (feature spec, objectives, fusion presets): valid names on the right side, extreme and
unknown values of the right kind, missing features, rows and columnar candidates, preset and custom
fusion, top_k. Every such body must be ranked (200, a consistent and finite answer); a body with one
value of the wrong type must get a 422 naming exactly that value. Bounded and derandomized.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.contracts.feature_spec import (
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    SequenceFeature,
    Side,
)
from service.contracts.fusion import FUSION_FILE, FusionConfig
from service.model_store import ModelStore
from tests.fixtures.published_model import PublishedModel
from tests.fixtures.uvicorn_server import uvicorn_service

__all__ = ["uvicorn_service"]

pytestmark = pytest.mark.slow  # starts a server process

MAX_CANDIDATES = 50  # the uvicorn_service fixture's MTRANK_MAX_CANDIDATES
INT64 = 2**63 - 1
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
Body = dict[str, Any]


class ServedModel:
    """What the strategies need to know about the served version."""

    def __init__(self, published: PublishedModel) -> None:
        store = ModelStore(published.store_dir)
        version = published.versions[0]
        manifest = store.read_manifest(published.model, version)
        self.spec: FeatureSpec = manifest.feature_spec
        self.objectives = manifest.objective_ids()
        folder = store.version_dir(published.model, version)
        self.presets = sorted(FusionConfig.load(folder / FUSION_FILE).presets)


def _ids() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=40),
        st.integers(-INT64 - 1, INT64),
        st.sampled_from([0, -1, INT64, -INT64 - 1]),
    )


def _value(spec: FeatureSpec, name: str) -> st.SearchStrategy[Any]:
    """Any value a request may send for feature ``name``, known or not, ordinary or extreme."""
    feature = spec.feature(name)
    if isinstance(feature, NumericFeature):
        extremes = st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 2.0**53, -(2.0**63)])
        numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-INT64 - 1, INT64)
        return st.none() | extremes | numbers
    if isinstance(feature, SequenceFeature):
        item = spec.item_feature_of(feature)
        known = st.sampled_from(item.vocabulary) if item.vocabulary else _ids()
        return st.none() | st.lists(known | _ids(), max_size=2 * feature.max_length)
    assert isinstance(feature, CategoricalFeature)
    integral = st.integers(-(2**52), 2**52).map(float)  # 42.0 is the id 42
    values = st.none() | _ids() | integral
    return values | st.sampled_from(feature.vocabulary) if feature.vocabulary else values


def _features(spec: FeatureSpec, side: Side) -> st.SearchStrategy[dict[str, Any]]:
    names = spec.names(side)
    return st.fixed_dictionaries({}, optional={name: _value(spec, name) for name in names})


@st.composite
def _user(draw: st.DrawFn, spec: FeatureSpec) -> dict[str, Any]:
    user: dict[str, Any] = {"features": draw(_features(spec, "user"))}
    if draw(st.booleans()) or not user["features"]:
        user["id"] = draw(st.text(min_size=1, max_size=256))
    return user


@st.composite
def _candidates(draw: st.DrawFn, spec: FeatureSpec) -> Any:
    ids = draw(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=30, unique=True))
    rows = [draw(_features(spec, "item")) for _ in ids]
    if draw(st.booleans()):
        return [{"id": i, "features": r} for i, r in zip(ids, rows, strict=True)]
    names = sorted({n for r in rows for n in r})
    return {"ids": ids, "features": {n: [r.get(n) for r in rows] for n in names}}


@st.composite
def _fusion(draw: st.DrawFn, model: ServedModel) -> dict[str, Any]:
    choice = draw(st.sampled_from(["default", "preset", "spec"]))
    if choice == "preset":
        return {"fusion_preset": draw(st.sampled_from(model.presets))}
    if choice == "default":
        return {}
    kind = draw(st.sampled_from(["weighted_sum", "power_product"]))
    transforms = ["identity", "log1p", "minmax", "rank"] + (
        ["zscore"] if kind != "power_product" else []
    )
    terms = draw(
        st.dictionaries(
            st.sampled_from(model.objectives),
            st.fixed_dictionaries(
                {"weight": st.floats(-1e3, 1e3), "transform": st.sampled_from(transforms)}
            ),
            min_size=1,
        )
    )
    return {"fusion": {"kind": kind, "terms": terms}}


@st.composite
def rank_bodies(draw: st.DrawFn, model: ServedModel) -> Body:
    body: Body = {
        "request_id": draw(st.text(max_size=128)),
        "user": draw(_user(model.spec)),
        "context": draw(_features(model.spec, "context")),
        "candidates": draw(_candidates(model.spec)),
        "explain": draw(st.booleans()),
        **draw(_fusion(model)),
    }
    if draw(st.booleans()):
        body["top_k"] = draw(st.integers(1, MAX_CANDIDATES + 5))
    return body


def _overflowing_power_product(body: Body, response: httpx.Response) -> bool:
    """A power product with extreme weights overflows for some scores: the service answers 422
    naming ``fusion`` rather than rank by infinities."""
    if body.get("fusion", {}).get("kind") != "power_product" or response.status_code != 422:
        return False
    error = response.json()["error"]
    return error["field"] == "fusion" and "non-finite" in error["message"]


def _candidate_ids(body: Body) -> list[str]:
    candidates = body["candidates"]
    return (
        list(candidates["ids"]) if isinstance(candidates, dict) else [c["id"] for c in candidates]
    )


@pytest.fixture(scope="module")
def served(published_store: PublishedModel) -> ServedModel:
    return ServedModel(published_store)


@pytest.fixture(scope="module")
def http(uvicorn_service: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=uvicorn_service, timeout=30) as client:
        yield client


def test_bodies_built_from_the_feature_spec_are_ranked(
    http: httpx.Client, served: ServedModel
) -> None:
    @given(body=rank_bodies(served))
    @SETTINGS
    def ranked(body: Body) -> None:
        response = http.post("/rank", json=body)
        if _overflowing_power_product(body, response):
            return  # a documented refusal, naming the fusion spec
        assert response.status_code == 200, response.text
        result = response.json()
        ids = _candidate_ids(body)
        items = result["items"]
        assert result["request_id"] == body["request_id"]
        assert len(items) == min(body.get("top_k", len(ids)), len(ids))
        assert [item["rank"] for item in items] == list(range(1, len(items) + 1))
        assert len({item["id"] for item in items}) == len(items)
        assert {item["id"] for item in items} <= set(ids)
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)
        for item in items:
            assert set(item["objectives"]) == set(served.objectives)
        assert ("explain" in result) == body["explain"]

    ranked()


WRONG_TYPES = st.sampled_from([True, False, {"a": 1}, [[1]], [True], [1.5]])


@st.composite
def broken_bodies(draw: st.DrawFn, model: ServedModel) -> tuple[Body, str]:
    """A valid body with one feature value replaced by a value of no accepted type, and its path."""
    body = draw(rank_bodies(model))
    bad = draw(WRONG_TYPES)
    where = draw(st.sampled_from(["user", "context", "candidate"]))
    side: Side = "item" if where == "candidate" else "user" if where == "user" else "context"
    name = draw(st.sampled_from(model.spec.names(side)))
    path = f"{where}.features.{name}" if where == "user" else f"context.{name}"
    if where == "user":
        body["user"]["features"][name] = bad
    elif where == "context":
        body["context"][name] = bad
    else:
        candidates = body["candidates"]
        row = draw(st.integers(0, len(_candidate_ids(body)) - 1))
        if isinstance(candidates, list):
            candidates[row]["features"][name] = bad
            path = f"candidates[{row}].features.{name}"
        else:
            column = candidates["features"].setdefault(name, [None] * len(candidates["ids"]))
            column[row] = bad
            path = f"candidates.features.{name}[{row}]"
    if isinstance(bad, list):
        path += "[0]"  # a list is a sequence: its first element is the wrong one
    return body, path


def test_one_value_of_a_wrong_type_gets_a_422_naming_it(
    http: httpx.Client, served: ServedModel
) -> None:
    @given(case=broken_bodies(served))
    @SETTINGS
    def refused(case: tuple[Body, str]) -> None:
        body, path = case
        response = http.post("/rank", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == path

    refused()
