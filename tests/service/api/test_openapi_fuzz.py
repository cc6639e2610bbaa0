"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis).

Schemathesis generates requests for every operation from ``/openapi.json``, valid ones and invalid
ones, sends them to a real uvicorn process with the admin token, and checks each answer: no 5xx, a
status the document lists for that operation, the documented content type, headers and body schema,
and every schema-invalid request refused. Bounded and derandomized (a fixed seed), so CI runs the
same cases each time in a few seconds.

``/rank`` is also held to ``positive_data_acceptance``: a schema-valid body must be ranked. The
document this process serves states its limits and its model's feature names and kinds, objectives
and presets (``service/request_schema.py``), so that holds except for the rules no JSON Schema can
state, which the route documents as 422s (``UNSTATED_RULES``); bodies breaking one are skipped
(:func:`breaks_unstated_rule`). That test runs first, while the presets are still the ones the
document was read with (admin operations fuzzed later may replace them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fixtures.published_model import PublishedModel
from tests.fixtures.uvicorn_server import running_service

pytestmark = pytest.mark.slow  # starts a server process

TOKEN = "fuzz-admin-token"
EXAMPLES = 100  # per generation mode, over all operations
RANK_EXAMPLES = 150  # schema-valid /rank bodies that must be ranked
OBJECTIVE_BOUND = 1e6  # far above any objective of the test model (probabilities, a watch time)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def api_schema(published_store: PublishedModel) -> Iterator[schemathesis.BaseSchema]:
    env = {
        "MTRANK_MODELS_DIR": str(published_store.store_dir),
        "MTRANK_MODEL": published_store.model,
        "MTRANK_ADMIN_TOKEN": TOKEN,
        "MTRANK_INFERENCE_THREADS": "1",
    }
    with running_service(env) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


def breaks_unstated_rule(body: Any) -> bool:
    """Whether ``body`` breaks a rule of ``/rank`` that its schema cannot state (a documented 422):
    repeated candidate ids, a column not as long as the ids, a power product that may overflow."""
    if not isinstance(body, dict):
        return False
    candidates = body.get("candidates")
    if isinstance(candidates, list):
        ids = [row.get("id") for row in candidates if isinstance(row, dict)]
        if len(set(ids)) != len(ids):
            return True
    if isinstance(candidates, dict):
        n = len(candidates.get("ids", []))
        if any(len(column) != n for column in candidates.get("features", {}).values()):
            return True
    fusion = body.get("fusion")
    if isinstance(fusion, dict) and fusion.get("kind") == "power_product":
        # |log(g + epsilon)| is at most max(-log epsilon, log(1 + bound)) for every term
        per_weight = max(-math.log(fusion.get("epsilon", 1e-6)), math.log1p(OBJECTIVE_BOUND))
        weights = sum(abs(term["weight"]) for term in fusion["terms"].values())
        return bool(weights * per_weight >= math.log(1e300))
    return False


def test_rank_accepts_every_schema_valid_body(api_schema: schemathesis.BaseSchema) -> None:
    rank = api_schema.include(path="/rank")
    accepted: list[int] = []

    @given(case=rank.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(SETTINGS, max_examples=RANK_EXAMPLES)
    def ranked(case: schemathesis.Case[Any]) -> None:
        assume(not breaks_unstated_rule(case.body))
        response = case.call_and_validate(checks=[positive_data_acceptance])
        accepted.append(response.status_code)

    ranked()
    assert accepted.count(200) >= RANK_EXAMPLES // 2, accepted  # the run reached the model


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_conforms_to_the_openapi_document(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    @given(case=api_schema.as_strategy(generation_mode=mode))
    @SETTINGS
    def answer_conforms(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {TOKEN}"},
            excluded_checks=[positive_data_acceptance],  # /rank's is the test above
        )

    answer_conforms()
