"""Bad input never gets a 500: each case answers a 4xx whose JSON error names the field.

Every case starts from a valid body (the model's warm-up example, five candidates) and breaks one thing.
Raw-text cases (NaN, Infinity, 1e309) are spliced into the JSON text because ``json.dumps`` would not
write them. The app runs with max_candidates=50 and max_sequence_length=40.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.service.api.conftest import AppClient

Body = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Body], Body]:
    """A mutation setting ``a.b[0].c`` (created if absent) to ``value``."""

    def mutate(body: Body) -> Body:
        target: Any = body
        keys: list[str | int] = []
        for part in path.replace("]", "").replace("[", ".").split("."):
            keys.append(int(part) if part.isdigit() else part)
        for key in keys[:-1]:
            if isinstance(key, str) and key not in target:
                target[key] = {}
            target = target[key]
        target[keys[-1]] = value
        return body

    return mutate


def _drop(key: str) -> Callable[[Body], Body]:
    def mutate(body: Body) -> Body:
        body.pop(key)
        return body

    return mutate


def _columnar(body: Body) -> Body:
    ids = [c["id"] for c in body["candidates"]]
    names = sorted({n for c in body["candidates"] for n in c.get("features", {})})
    columns = {n: [c.get("features", {}).get(n) for c in body["candidates"]] for n in names}
    body["candidates"] = {"ids": ids, "features": columns}
    return body


def _then(*steps: Callable[[Body], Body]) -> Callable[[Body], Body]:
    def mutate(body: Body) -> Body:
        for step in steps:
            body = step(body)
        return body

    return mutate


MARK = "__RAW__"
# (case id, mutation, raw JSON replacing the "__RAW__" marker or None, status, error field)
CASES: list[tuple[str, Callable[[Body], Body], str | None, int, str | None]] = [
    ("nan_in_context", _set("context.x_num", MARK), "NaN", 422, "context.x_num"),
    ("infinity_in_candidate", _set("candidates[0].features.x", MARK), "Infinity", 422, "candidates[0].features.x"),
    ("minus_infinity_in_candidate", _set("candidates[2].features.x", MARK), "-Infinity", 422, "candidates[2].features.x"),
    ("1e309_in_user_feature", _set("user.features.x", MARK), "1e309", 422, "user.features.x"),
    ("minus_1e309_in_context", _set("context.x", MARK), "-1e309", 422, "context.x"),
    ("nan_in_fusion_weight", _set("fusion", {"kind": "weighted_sum", "terms": {"click": {"weight": MARK}}}), "NaN", 422, "fusion.terms.click.weight"),
    ("nan_in_columnar_column", _then(_columnar, _set("candidates.features.x", [1.0, MARK, 1.0, 1.0, 1.0])), "NaN", 422, "candidates.features.x[1]"),
    ("bool_as_context_feature", _set("context.x", True), None, 422, "context.x"),
    ("bool_as_candidate_feature", _set("candidates[1].features.x", False), None, 422, "candidates[1].features.x"),
    ("bool_in_sequence", _set("user.features.seq", ["a", True]), None, 422, "user.features.seq[1]"),
    ("float_in_sequence", _set("user.features.seq", [1.5]), None, 422, "user.features.seq[0]"),
    ("nested_list_in_sequence", _set("user.features.seq", [["a"]]), None, 422, "user.features.seq[0]"),
    ("int_beyond_int64_in_sequence", _set("user.features.seq", [2**64]), None, 422, "user.features.seq[0]"),
    ("object_as_feature", _set("context.x", {"a": 1}), None, 422, "context.x"),
    ("features_as_list", _set("candidates[0].features", [1, 2]), None, 422, "candidates[0].features"),
    ("context_as_list", _set("context", []), None, 422, "context"),
    ("missing_user", _drop("user"), None, 422, "user"),
    ("user_null", _set("user", None), None, 422, "user"),
    ("user_without_id_or_features", _set("user", {}), None, 422, "user"),
    ("user_id_as_int", _set("user", {"id": 7}), None, 422, "user.id"),
    ("unknown_user_field", _set("user.name", "bob"), None, 422, "user.name"),
    ("missing_candidates", _drop("candidates"), None, 422, "candidates"),
    ("empty_candidates", _set("candidates", []), None, 422, "candidates"),
    ("empty_columnar_ids", _set("candidates", {"ids": []}), None, 422, "candidates.ids"),
    ("candidates_as_string", _set("candidates", "i1,i2"), None, 422, "candidates"),
    ("too_many_candidates", _set("candidates", [{"id": f"c{i}"} for i in range(51)]), None, 422, "candidates"),
    ("too_many_columnar_candidates", _set("candidates", {"ids": [f"c{i}" for i in range(51)]}), None, 422, "candidates.ids"),
    ("duplicate_ids", _set("candidates[3].id", "item-1"), None, 422, "candidates[3].id"),
    ("duplicate_columnar_ids", _set("candidates", {"ids": ["a", "b", "a"]}), None, 422, "candidates.ids[2]"),
    ("columnar_length_mismatch", _set("candidates", {"ids": ["a", "b"], "features": {"x": [1]}}), None, 422, "candidates.features.x"),
    ("candidate_without_id", _set("candidates[0]", {"features": {}}), None, 422, "candidates[0].id"),
    ("candidate_id_empty", _set("candidates[0].id", ""), None, 422, "candidates[0].id"),
    ("candidate_id_as_int", _set("candidates[4].id", 5), None, 422, "candidates[4].id"),
    ("unknown_candidate_field", _set("candidates[0].score", 1.0), None, 422, "candidates[0].score"),
    ("sequence_too_long", _set("user.features.seq", [f"i{i}" for i in range(41)]), None, 422, "user.features.seq"),
    ("top_k_zero", _set("top_k", 0), None, 422, "top_k"),
    ("top_k_negative", _set("top_k", -3), None, 422, "top_k"),
    ("top_k_as_string", _set("top_k", "5"), None, 422, "top_k"),
    ("top_k_as_float", _set("top_k", 2.5), None, 422, "top_k"),
    ("explain_as_string", _set("explain", "yes"), None, 422, "explain"),
    ("request_id_as_int", _set("request_id", 42), None, 422, "request_id"),
    ("unknown_top_level_field", _set("bogus", 1), None, 422, "bogus"),
    ("fusion_and_preset_together", _then(_set("fusion", {"kind": "weighted_sum", "terms": {"click": {"weight": 1.0}}}), _set("fusion_preset", "balanced")), None, 422, "fusion_preset"),
    ("fusion_unknown_kind", _set("fusion", {"kind": "max", "terms": {"click": {"weight": 1.0}}}), None, 422, "fusion.kind"),
    ("fusion_no_terms", _set("fusion", {"kind": "weighted_sum", "terms": {}}), None, 422, "fusion.terms"),
    ("fusion_unknown_transform", _set("fusion", {"kind": "weighted_sum", "terms": {"click": {"weight": 1.0, "transform": "sqrt"}}}), None, 422, "fusion.terms.click.transform"),
    ("fusion_unknown_objective", _set("fusion", {"kind": "weighted_sum", "terms": {"no_such_objective": {"weight": 1.0}}}), None, 422, "fusion.terms.no_such_objective"),
    ("unknown_user_feature", _set("user.features.user_agee", "25-34"), None, 422, "user.features.user_agee"),
    ("item_feature_sent_as_user_feature", _set("user.features.item_price", 3.0), None, 422, "user.features.item_price"),
    ("unknown_context_feature", _set("context.weekday", "mon"), None, 422, "context.weekday"),
    ("training_only_feature_in_candidate", _set("candidates[2].features.position", 1), None, 422, "candidates[2].features.position"),
    ("unknown_columnar_feature", _then(_columnar, _set("candidates.features.colour", ["red"] * 5)), None, 422, "candidates.features.colour"),
]  # fmt: skip


def _post(client: AppClient, body: Body, raw: str | None) -> Any:
    text = json.dumps(body)
    if raw is not None:
        text = text.replace(json.dumps(MARK), raw)
    return client.post("/rank", content=text, headers={"content-type": "application/json"})


def _assert_error(response: Any, status: int, field: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert error["code"]
    assert error["message"]


@pytest.mark.parametrize(
    ("mutate", "raw", "status", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_body_gets_4xx_naming_the_field(
    client: AppClient,
    example: Body,
    mutate: Callable[[Body], Body],
    raw: str | None,
    status: int,
    field: str | None,
) -> None:
    _assert_error(_post(client, mutate(example), raw), status, field)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"user": {"id": "u"}, "candidates": [', "application/json", 400),
        (b"", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b'"just a string"', "application/json", 422),
        (b"user=u&candidates=a", "application/x-www-form-urlencoded", 415),
        (b"{}", "text/plain", 415),
    ],
    ids=[
        "not_json",
        "truncated_json",
        "empty_body",
        "top_level_array",
        "top_level_string",
        "form_body",
        "text_plain",
    ],
)
def test_unparseable_or_non_json_bodies_get_a_json_error(
    client: AppClient, content: bytes, content_type: str, status: int
) -> None:
    response = client.post("/rank", content=content, headers={"content-type": content_type})
    _assert_error(response, status, None)


def test_oversized_body_is_refused_with_413_before_parsing(make_app: Any, example: Body) -> None:
    with AppClient(make_app(max_body_bytes=2048)) as small:
        example["context"]["padding"] = "x" * 4096
        response = small.post("/rank", json=example)
        _assert_error(response, 413, None)
        assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_fusion_preset_is_a_client_error(client: AppClient, example: Body) -> None:
    example["fusion_preset"] = "no-such-preset"
    response = client.post("/rank", json=example)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["field"] == "fusion_preset"


def test_error_responses_are_counted_by_reason(client: AppClient, example: Body) -> None:
    client.post("/rank", json={**example, "top_k": 0})
    client.post("/rank", content=b"{", headers={"content-type": "application/json"})
    metrics = client.get("/metrics").text
    assert 'mtrank_errors_total{reason="invalid_input"} 1.0' in metrics
    assert 'mtrank_errors_total{reason="malformed_body"} 1.0' in metrics


def test_unknown_feature_errors_say_where_the_feature_belongs(
    client: AppClient, example: Body
) -> None:
    body = _set("user.features.item_price", 3.0)(json.loads(json.dumps(example)))
    message = _post(client, body, None).json()["error"]["message"]
    assert "item feature: send it in candidates[].features" in message
    body = _set("user.features.user_agee", "25-34")(json.loads(json.dumps(example)))
    message = _post(client, body, None).json()["error"]["message"]
    assert "user_age" in message  # lists the model's user features, so the typo is obvious
    assert "MTRANK_UNKNOWN_FEATURES=ignore" in message
