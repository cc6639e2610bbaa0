"""Request and response bodies of the HTTP API (``RankRequest``, ``RankResponse``, admin bodies).

Feature values are strict: a string, an integer, a finite number, a list of string/integer ids (a
behaviour sequence) or null. Booleans, NaN, Infinity and numbers past float range (``1e309``) are refused:
pydantic's JSON parser accepts the last three by default, so floats carry ``allow_inf_nan=False``.
Unions are tagged by a callable discriminator (tags like ``<float>``, which error paths leave out) so a
wrong value gets one error naming its field, and validation stays in pydantic-core.
An integer past int64 is a number, not an id; an integral float (``42.0``) is an integer where one
is expected (``top_k``, sequence ids), as in JSON Schema, so the published schema and these models agree.
Checks that depend on settings (sizes, uniqueness, column lengths) are in ``service/json_body.py``;
the schema ``/openapi.json`` serves states them and the served model's rules
(``service/request_schema.py``).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    GetJsonSchemaHandler,
    StrictBool,
    StrictStr,
    Tag,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from service.contracts.fusion import FusionSpec

FLOAT_MAX = sys.float_info.max
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-FLOAT_MAX, le=FLOAT_MAX)]
Int64 = Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]


def _integral_float_as_int(value: Any) -> Any:
    """JSON Schema's ``integer`` includes 42.0: take it as 42 (4.2 stays a float and is refused)."""
    return int(value) if type(value) is float and value.is_integer() else value


IntegralInt64 = Annotated[Int64, BeforeValidator(_integral_float_as_int)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=256)]


def _value_tag(value: Any) -> str | None:
    kind = type(value)  # exact types: bool is a subclass of int and must not pass as one
    if kind is str:
        return "<str>"
    if kind is int:  # past int64 an integer is no id, but still a number (the schema's `number`)
        return "<int>" if -(2**63) <= value < 2**63 else "<float>"
    if kind is float:
        return "<float>"
    if kind is list:
        return "<list>"
    if value is None:
        return "<null>"
    return None


def _id_tag(value: Any) -> str | None:
    kind = type(value)
    if kind is float and value.is_integer():  # 42.0 is the id 42, as JSON Schema's `integer` says
        return "<int>"
    return "<str>" if kind is str else "<int>" if kind is int else None


class _OverlappingBranches:
    """JSON Schema of a union whose branches overlap (an integer is also a number): ``anyOf``, since
    ``oneOf`` would refuse every integer that pydantic accepts."""

    @staticmethod
    def __get_pydantic_json_schema__(
        core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if "oneOf" in schema:
            schema["anyOf"] = schema.pop("oneOf")
        return schema


SequenceId = Annotated[
    Annotated[StrictStr, Tag("<str>")] | Annotated[IntegralInt64, Tag("<int>")],
    Discriminator(
        _id_tag,
        custom_error_type="id_type",
        custom_error_message="a sequence element must be a string or integer id",
    ),
]
FeatureValue = Annotated[
    Annotated[StrictStr, Tag("<str>")]
    | Annotated[Int64, Tag("<int>")]
    | Annotated[FiniteFloat, Tag("<float>")]
    | Annotated[list[SequenceId], Tag("<list>")]
    | Annotated[None, Tag("<null>")],
    Discriminator(
        _value_tag,
        custom_error_type="feature_type",
        custom_error_message=(
            "a feature value must be a string, an integer, a finite number, a list of ids or null "
            "(booleans and objects are refused)"
        ),
    ),
    _OverlappingBranches,
]
Features = dict[str, FeatureValue]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserPart(_Body):
    """The user: an id (features fetched from the store) and/or request features."""

    model_config = ConfigDict(  # the rule of ``_id_or_features``, stated in the schema
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["id"], "properties": {"id": {"type": "string"}}},
                {"required": ["features"], "properties": {"features": {"minProperties": 1}}},
            ]
        },
    )

    id: Id | None = Field(None, description="user id; stored features are fetched by it")
    features: Features = Field(
        default_factory=dict,
        description="user features, e.g. the behaviour sequence `history: [item ids]`",
    )

    @model_validator(mode="after")
    def _id_or_features(self) -> UserPart:
        if self.id is None and not self.features:
            raise PydanticCustomError("user_empty", "give the user an `id`, `features`, or both")
        return self


class Candidate(_Body):
    id: Id
    features: Features = Field(default_factory=dict)


class ColumnarCandidates(_Body):
    """Large candidate lists: the ids and one array per feature, each as long as ``ids``."""

    ids: list[Id] = Field(min_length=1, json_schema_extra={"uniqueItems": True})
    features: dict[str, list[FeatureValue]] = Field(default_factory=dict)


def _candidates_tag(value: Any) -> str | None:
    return "<rows>" if isinstance(value, list) else "<columns>" if isinstance(value, dict) else None


CandidatesField = Annotated[
    Annotated[list[Candidate], Field(min_length=1), Tag("<rows>")]
    | Annotated[ColumnarCandidates, Tag("<columns>")],
    Discriminator(
        _candidates_tag,
        custom_error_type="candidates_type",
        custom_error_message="candidates must be a list of {id, features} or {ids, features}",
    ),
]

EXAMPLE_ROWS: dict[str, Any] = {
    "request_id": "req-42",
    "user": {"id": "u123", "features": {"user_age": "25-34", "history": ["i9", "i17", "i3"]}},
    "context": {"hour": 21, "device": "ios"},
    "candidates": [
        {"id": "i1", "features": {"item_price": 12.5, "category": "shoes"}},
        {"id": "i2", "features": {"item_price": 3.0}},
        {"id": "i3", "features": {}},
    ],
    "top_k": 2,
    "explain": True,
}
EXAMPLE_COLUMNS: dict[str, Any] = {
    "user": {"id": "u123"},
    "context": {"hour": 21},
    "candidates": {
        "ids": ["i1", "i2", "i3"],
        "features": {"item_price": [12.5, 3.0, None], "category": ["shoes", None, "bags"]},
    },
    "fusion": {
        "kind": "weighted_sum",
        "terms": {"click": {"weight": 1.0}, "ctcvr": {"weight": 4.0}},
    },
}


class RankRequest(_Body):
    """One user, a context, candidates: rank the candidates by the fused multi-objective score."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [EXAMPLE_ROWS, EXAMPLE_COLUMNS],
            "not": {  # a fusion spec or a preset name, not both (``check_limits``)
                "required": ["fusion", "fusion_preset"],
                "properties": {"fusion": {"type": "object"}, "fusion_preset": {"type": "string"}},
            },
        },
    )

    request_id: Annotated[StrictStr, Field(max_length=128)] | None = Field(
        None, description="echoed in the response and the logs"
    )
    user: UserPart
    context: Features = Field(default_factory=dict, description="request context, e.g. hour")
    candidates: CandidatesField = Field(
        description="a list of {id, features}, or columnar {ids, features: {name: [values]}}"
    )
    fusion: FusionSpec | None = Field(
        None, description="fusion override; objectives are checked against the model"
    )
    fusion_preset: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        None, description="a preset of the model's fusion.yaml; default: the model's default preset"
    )
    top_k: (
        Annotated[int, Field(strict=True, ge=1), BeforeValidator(_integral_float_as_int)] | None
    ) = Field(None, description="return only the best k items")
    explain: StrictBool = Field(False, description="add stage timings and feature-store outcome")

    def candidate_ids(self) -> list[str]:
        if isinstance(self.candidates, ColumnarCandidates):
            return list(self.candidates.ids)
        return [c.id for c in self.candidates]

    def candidate_columns(self) -> dict[str, list[Any]]:
        """Candidate features as columns, each as long as the candidate list; None = not given."""
        if isinstance(self.candidates, ColumnarCandidates):
            return {name: list(values) for name, values in self.candidates.features.items()}
        rows = self.candidates
        names = dict.fromkeys(name for c in rows for name in c.features)
        return {name: [c.features.get(name) for c in rows] for name in names}


class ModelRef(_Body):
    name: str
    version: str


class FusionUsed(_Body):
    name: str = Field(description="preset name, or `request` for a per-request override")
    spec: FusionSpec


class RankedItemOut(_Body):
    id: str
    rank: int = Field(description="1 = best")
    score: float = Field(description="fused score")
    objectives: dict[str, float] = Field(description="every task and derived objective")


class FeatureFetchOut(_Body):
    status: str
    hits: int
    misses: int


class Explanation(_Body):
    timings: dict[str, float] = Field(description="seconds per stage")
    feature_fetch: FeatureFetchOut | None = None
    user_cache: str


class RankResponse(_Body):
    request_id: str | None
    model: ModelRef
    fusion: FusionUsed
    items: list[RankedItemOut]
    explain: Explanation | None = None


class LoadModelRequest(_Body):
    version: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        None, description="version to activate; default: the store's current version"
    )


class HealthOut(_Body):
    status: Literal["ok", "not_ready"]
    model: ModelRef | None = None
