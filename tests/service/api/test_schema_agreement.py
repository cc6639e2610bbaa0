"""The published request schema and the validator agree: what one refuses, the other refuses.

Each body below is refused by ``/rank`` (422) for a rule that does not depend on the served model; the
OpenAPI schema must refuse it too, so a client validating against ``/openapi.json`` learns of the rule
before sending. And the body the service accepts must be schema-valid (integers included).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest

from tests.service.api.conftest import AppClient

Body = dict[str, Any]


@pytest.fixture
def is_schema_valid(client: AppClient) -> Callable[[Body], bool]:
    doc = client.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/RankRequest", "components": doc["components"]}
    validator = jsonschema_rs.Draft202012Validator(schema)
    return lambda body: bool(validator.is_valid(body))


def _fusion(**spec: Any) -> Callable[[Body], None]:
    def mutate(body: Body) -> None:
        body["fusion"] = spec

    return mutate


REFUSED_BY_BOTH: list[tuple[str, Callable[[Body], None]]] = [
    ("user_without_id_or_features", lambda b: b.update(user={})),
    ("user_with_null_id_only", lambda b: b.update(user={"id": None})),
    ("user_with_empty_features_only", lambda b: b.update(user={"features": {}})),
    (
        "fusion_and_fusion_preset",
        lambda b: b.update(fusion={"terms": {"click": {"weight": 1.0}}}, fusion_preset="balanced"),
    ),
    ("fusion_term_not_an_objective_id", _fusion(terms={"Click!": {"weight": 1.0}})),
    (
        "power_product_with_zscore",
        _fusion(kind="power_product", terms={"click": {"weight": 1.0, "transform": "zscore"}}),
    ),
    ("duplicate_columnar_ids", lambda b: b.update(candidates={"ids": ["a", "b", "a"]})),
]


@pytest.mark.parametrize(
    "mutate", [case[1] for case in REFUSED_BY_BOTH], ids=[case[0] for case in REFUSED_BY_BOTH]
)
def test_a_body_the_service_refuses_is_refused_by_the_schema(
    client: AppClient,
    example: Body,
    is_schema_valid: Callable[[Body], bool],
    mutate: Callable[[Body], None],
) -> None:
    body = copy.deepcopy(example)
    mutate(body)
    assert client.post("/rank", json=body).status_code == 422
    assert not is_schema_valid(body)


def test_bodies_the_service_ranks_are_schema_valid(
    client: AppClient, example: Body, is_schema_valid: Callable[[Body], bool]
) -> None:
    with_integers = copy.deepcopy(example)
    with_integers["context"] = {"hour": 16}  # an integer matches both integer and number
    with_integers["candidates"][0]["features"]["item_price"] = 12
    columnar = copy.deepcopy(example)
    columnar["candidates"] = {"ids": ["a", "b"], "features": {"item_price": [1, 2.5]}}
    for body in (example, with_integers, columnar, {**example, "fusion_preset": "balanced"}):
        assert client.post("/rank", json=body).status_code == 200
        assert is_schema_valid(body), body
