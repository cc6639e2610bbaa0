"""The ``/rank`` request schema this process enforces: its settings' limits and its model's features.

``RankRequest``'s JSON Schema states the rules pydantic checks. The other rules depend on the process,
and ``/openapi.json`` is served per process, so they are written into its components too: the limits
of its settings (``MTRANK_MAX_CANDIDATES``, ``MTRANK_MAX_SEQUENCE_LENGTH``) and, once a version is
served, that version's feature names per side (unknown names refused with
``MTRANK_UNKNOWN_FEATURES=reject``, the default), the kind of value each feature takes, its
objectives (fusion terms) and its fusion presets. The document follows the served version: it is
rewritten when a swap changes it.

What no JSON Schema can state stays a 422 documented on the route (:data:`UNSTATED_RULES`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.contracts.feature_spec import FeatureSpec, SequenceFeature, Side
from service.schemas import FLOAT_MAX
from service.scoring.registry import LoadedModel
from service.settings import Settings

Schema = dict[str, Any]
UNSTATED_RULES = (
    "candidate ids are unique (rows: `candidates[].id`)",
    "every columnar feature column is as long as `candidates.ids`",
    "a feature the model marks required has a value, from the request or the feature store",
    "a `power_product` fusion stays finite on this request's scores",
    "with a canary or shadow version of other features, a routed user is checked against it",
)
"""Rules of ``/rank`` that no JSON Schema states: each is a 422 naming its field."""

INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
ID = {"anyOf": [{"type": "string"}, INT64]}
NUMBER = {"type": "number", "minimum": -FLOAT_MAX, "maximum": FLOAT_MAX}
NULL = {"type": "null"}


def install_rank_schema(
    app: FastAPI,
    settings: Settings,
    served: Callable[[], LoadedModel | None],
    *models: type[BaseModel],
) -> None:
    """Make ``app.openapi()`` carry ``models`` (bodies read raw are not seen by FastAPI's
    generator) and the ``/rank`` rules of ``settings`` and of the version ``served()`` returns."""
    base: Schema | None = None
    written_for: tuple[str, ...] | None = None

    def openapi() -> Schema:
        nonlocal base, written_for
        if base is None:
            base = _with_models(app, models)
        model = served()
        key = None if model is None else _written_from(model)
        if app.openapi_schema is None or key != written_for:
            schema = copy.deepcopy(base)
            components: dict[str, Schema] = schema["components"]["schemas"]
            state_limits(components, settings)
            if model is not None:
                state_model(components, model, settings.max_sequence_length,
                            reject_unknown=settings.unknown_features == "reject")  # fmt: skip
                _model_examples(schema, model)
            app.openapi_schema, written_for = schema, key
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _written_from(model: LoadedModel) -> tuple[str, ...]:
    """What the document takes from ``model``: a swap or replaced presets rewrite it."""
    return (model.name, model.version, *sorted(model.fusion.presets))


def _with_models(app: FastAPI, models: tuple[type[BaseModel], ...]) -> Schema:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        spec = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in spec.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = spec
    return schema


def _model_examples(schema: Schema, model: LoadedModel) -> None:
    """The generic examples name features this model may not have: show its own warm-up request
    instead (ranked when the version loaded), as rows and as columns; none if it has no warm-up."""
    rows: Schema | None = None
    if model.manifest.warmup:
        rows = model.manifest.warmup[0].model_dump(exclude_defaults=True)
        rows["candidates"] = rows["candidates"][:3]
    body = schema["paths"]["/rank"]["post"]["requestBody"]["content"]["application/json"]
    if rows is None:
        schema["components"]["schemas"]["RankRequest"]["examples"], body["examples"] = [], {}
        return
    candidates = rows["candidates"]
    names = list(dict.fromkeys(n for c in candidates for n in c.get("features", {})))
    columns = {
        **rows,
        "candidates": {
            "ids": [c["id"] for c in candidates],
            "features": {n: [c.get("features", {}).get(n) for c in candidates] for n in names},
        },
    }
    schema["components"]["schemas"]["RankRequest"]["examples"] = [rows, columns]
    served = f"{model.name}/{model.version}"
    body["examples"] = {
        "rows": {"summary": f"candidates as a list ({served})", "value": rows},
        "columnar": {"summary": f"candidates as columns ({served})", "value": columns},
    }


def state_limits(components: dict[str, Schema], settings: Settings) -> None:
    """The candidate and sequence limits of ``settings`` (checked by ``json_body.check_limits``)."""
    rank, columnar = components["RankRequest"], components["ColumnarCandidates"]
    rows = next(b for b in rank["properties"]["candidates"]["oneOf"] if b.get("type") == "array")
    rows["maxItems"] = settings.max_candidates
    columnar["properties"]["ids"]["maxItems"] = settings.max_candidates
    columnar["properties"]["features"]["additionalProperties"]["maxItems"] = settings.max_candidates
    user = components["UserPart"]["properties"]["features"]
    for features in (user, rank["properties"]["context"]):
        for branch in features["additionalProperties"]["anyOf"]:
            if branch.get("type") == "array":
                branch["maxItems"] = settings.max_sequence_length


def state_model(
    components: dict[str, Schema], model: LoadedModel, max_sequence: int, *, reject_unknown: bool
) -> None:
    """The served version's features, objectives and presets."""
    spec, rank = model.spec, components["RankRequest"]
    _name_features(components["UserPart"]["properties"]["features"], spec, "user", max_sequence,
                   reject_unknown)  # fmt: skip
    _name_features(rank["properties"]["context"], spec, "context", max_sequence, reject_unknown)
    row = components["Candidate"]["properties"]["features"]
    _name_features(row, spec, "item", max_sequence, reject_unknown)
    if reject_unknown:  # a row may name an unknown feature with null (``check_feature_names``)
        row["additionalProperties"] = NULL
    columns = components["ColumnarCandidates"]["properties"]["features"]
    column = columns.pop("additionalProperties")
    columns["properties"] = {
        name: {**column, "items": value} for name, value in row["properties"].items()
    }
    columns["additionalProperties"] = False if reject_unknown else column
    terms = components["FusionSpec"]["properties"]["terms"]
    terms["propertyNames"] = {"enum": list(model.objectives)}
    preset = next(b for b in rank["properties"]["fusion_preset"]["anyOf"] if b != NULL)
    preset["enum"] = sorted(model.fusion.presets)
    rank["description"] += f" Served here: {model.name}/{model.version}."


def _name_features(
    features: Schema, spec: FeatureSpec, side: Side, max_sequence: int, reject_unknown: bool
) -> None:
    """``features`` (an object of feature values) lists the names of ``side``, each with the
    values its kind takes; other names are refused (or ignored, with their generic schema)."""
    features["properties"] = {
        name: feature_value(spec, name, max_sequence) for name in spec.names(side)
    }
    if reject_unknown:
        features["additionalProperties"] = False


def feature_value(spec: FeatureSpec, name: str, max_sequence: int) -> Schema:
    """What the strict transform takes for feature ``name``; null = not given."""
    feature = spec.feature(name)
    if isinstance(feature, SequenceFeature):
        ids = {"type": "array", "items": ID, "maxItems": max_sequence}
        return {"anyOf": [ids, NULL], "description": f"sequence of {feature.item_feature} ids"}
    if feature.kind == "categorical":  # an integral number is the id it spells (42.0 is 42)
        return {"anyOf": [{"type": "string"}, INT64, NULL], "description": "categorical id"}
    return {"anyOf": [NUMBER, NULL], "description": f"{feature.kind} value"}
