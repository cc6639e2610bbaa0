"""The OpenAPI document says every status a route can answer, each error with the one error body.

FastAPI documents what the routes declare; the front door (``service/front_door.py``) answers some
statuses before any route runs (401/403 under ``/admin``; 400, 408, 413, 415 on any request with a
body), and every error is ``{"error": {"code", "message", "field"}}`` rather than FastAPI's default
``{"detail": [...]}``. :func:`document_error_responses` adds both to the generated document, for the
routes that exist when it is first served (so routers added later are covered too).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from service.admin_auth import is_admin_path

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
BODY_STATUSES = {
    "400": "body is not valid JSON (or not valid gzip)",
    "408": "body not received within MTRANK_BODY_TIMEOUT_SECONDS",
    "413": "body larger than the limit (MTRANK_MAX_BODY_BYTES; MTRANK_MAX_ADMIN_BODY_BYTES under "
    "/admin), counted after decoding",
    "415": "content type is not JSON, or a content encoding other than gzip",
}
ADMIN_STATUSES = {
    "401": "missing or wrong bearer token",
    "403": "admin API disabled (no MTRANK_ADMIN_TOKEN or MTRANK_ADMIN_TOKEN_FILE)",
}
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="machine-readable reason, e.g. `invalid_input`")
    message: str = Field(description="what is wrong and what to do")
    field: str | None = Field(description="the offending input, e.g. `candidates[2].id`")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


def document_error_responses(app: FastAPI) -> None:
    """Make ``app.openapi()`` list the front door's statuses and the error body on every route."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        if "ErrorResponse" not in schema.get("components", {}).get("schemas", {}):
            _complete(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            added = dict(BODY_STATUSES) if method in ("post", "put", "patch") else {}
            if is_admin_path(path):
                added.update(ADMIN_STATUSES)
            for status, description in added.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = {"application/json": {"schema": ERROR_REF}}
    if "HTTPValidationError" not in str(schema.get("paths")):
        for name in _FASTAPI_VALIDATION_SCHEMAS:
            components.pop(name, None)
