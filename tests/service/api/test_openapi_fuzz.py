"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis).

Schemathesis generates requests for every operation from ``/openapi.json``, valid ones and invalid
ones, sends them to a real uvicorn process with the admin token, and checks each answer: no 5xx, a
status the document lists for that operation, the documented content type, headers and body schema,
and every schema-invalid request refused. Bounded and derandomized (a fixed seed), so CI runs the
same cases each time in a few seconds.

One check is left out: ``positive_data_acceptance`` (a schema-valid request must be accepted).
Feature names and kinds, objectives and preset names depend on the model being served, which a
static document cannot know; the schema states every rule that does not, and
``test_rank_fuzz.py`` builds bodies from the served model's feature spec to reach 200s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fixtures.published_model import PublishedModel
from tests.fixtures.uvicorn_server import running_service

pytestmark = pytest.mark.slow  # starts a server process

TOKEN = "fuzz-admin-token"
EXAMPLES = 100  # per generation mode, over all operations


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


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_conforms_to_the_openapi_document(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    @given(case=api_schema.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answer_conforms(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {TOKEN}"},
            excluded_checks=[positive_data_acceptance],
        )

    answer_conforms()
