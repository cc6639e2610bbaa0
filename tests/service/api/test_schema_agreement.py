"""The published request schema and the validator agree: what one refuses, the other refuses.

Each body below is refused by ``/rank`` (422); the OpenAPI schema this process serves must refuse it
too, so a client validating against ``/openapi.json`` learns of the rule before sending. That holds
for the rules of the request model, of the settings (limits) and of the served version (feature
names per side and kinds, objectives, presets). And the bodies the service accepts must be
schema-valid (integers, integral floats, nulls for unknown names included).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest

from tests.service.api.conftest import ADMIN_TOKEN, AppClient, MakeApp

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

Body = dict[str, Any]


def schema_validator(client: AppClient) -> Callable[[Body], bool]:
    doc = client.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/RankRequest", "components": doc["components"]}
    validator = jsonschema_rs.Draft202012Validator(schema)
    return lambda body: bool(validator.is_valid(body))


@pytest.fixture
def is_schema_valid(client: AppClient) -> Callable[[Body], bool]:
    return schema_validator(client)


def _set(path: str, value: Any) -> Callable[[Body], None]:
    """Set ``value`` at a dotted ``path`` (list indices as numbers), creating objects on the way."""

    def mutate(body: Body) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[int(last) if last.isdigit() else last] = value

    return mutate


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
    # the settings' limits (the client fixture: 50 candidates, sequences of 40)
    ("too_many_candidates", lambda b: b.update(candidates=[{"id": str(i)} for i in range(51)])),
    ("too_many_columnar_ids", lambda b: b.update(candidates={"ids": [str(i) for i in range(51)]})),
    ("sequence_over_the_limit", _set("user.features.history", ["i1"] * 41)),
    # the served version's features, objectives and presets
    ("unknown_user_feature", _set("user.features.colour", "red")),
    ("unknown_user_feature_even_null", _set("user.features.colour", None)),
    ("item_feature_sent_as_context", _set("context.item_price", 3.0)),
    ("training_only_feature", _set("candidates.0.features.position", "1")),
    ("unknown_columnar_column", lambda b: b.update(
        candidates={"ids": ["a"], "features": {"colour": [None]}})),
    ("string_for_a_numeric_feature", _set("candidates.0.features.item_price", "cheap")),
    ("fraction_for_a_categorical_feature", _set("user.features.user_age", 2.5)),
    ("id_past_int64_for_a_categorical_feature", _set("context.hour", 2**63)),
    ("list_for_a_categorical_feature", _set("candidates.0.features.item_category", ["news"])),
    ("scalar_for_a_sequence", _set("user.features.history", "i1")),
    ("fusion_term_the_model_lacks", _fusion(terms={"likes": {"weight": 1.0}})),
    ("fusion_preset_the_model_lacks", lambda b: b.update(fusion_preset="no-such-preset")),
]  # fmt: skip


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
    columnar["candidates"] = {"ids": ["a", "b"], "features": {"item_price": [1, None]}}
    loose = copy.deepcopy(example)  # what JSON Schema's `integer` and `number` take
    loose.update(top_k=2.0, context={"hour": 21.0})
    loose["user"]["features"] = {"history": ["i1", 7, 8.0], "user_activity": 2**64}
    loose["candidates"][1]["features"] = {"position": None, "item_price": None}  # null: not given
    bodies = (example, with_integers, columnar, loose, {**example, "fusion_preset": "balanced"})
    for body in bodies:
        assert client.post("/rank", json=body).status_code == 200, body
        assert is_schema_valid(body), body


def test_the_schema_follows_the_unknown_features_setting(make_app: MakeApp, example: Body) -> None:
    body = copy.deepcopy(example)
    body["user"]["features"]["colour"] = "red"
    with AppClient(make_app(unknown_features="ignore")) as client:
        assert client.post("/rank", json=body).status_code == 200
        assert schema_validator(client)(body)


def test_the_schema_follows_the_served_version(client: AppClient, model_name: str) -> None:
    def served() -> str:
        return str(
            client.get("/openapi.json").json()["components"]["schemas"]["RankRequest"][
                "description"
            ]
        )

    versions = client.get("/admin/models", headers=ADMIN).json()["available"]
    assert served().endswith(f"Served here: {model_name}/{versions[0]}.")
    answer = client.post("/admin/models/load", json={"version": versions[1]}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert served().endswith(f"Served here: {model_name}/{versions[1]}.")
