"""Schemathesis against the service's own OpenAPI schema (issue 5): zero 5xx, the one error body.

Runs in-process on the tiny contract model (ASGI; Schemathesis starts the app's lifespan once), with a
bounded, derandomised number of Hypothesis examples per operation and generation mode, so that it is part
of the test command. Both modes run for every operation in the schema: positive (schema-valid requests,
including random multipart files and text, and random JSON bodies) and negative (schema-violating ones).

Schemathesis's pytest plugin (``schema.parametrize``) is not compatible with pytest 9, so the cases are
drawn with ``operation.as_strategy`` under Hypothesis's ``@given`` inside an ordinary test. The plugin
still ends every ASGI lifespan it started when a test finishes, hence a fresh app per test.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from app.config import Settings
from app.main import create_app

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 150


@pytest.fixture
def fuzz_schema(model_dir: Path) -> Any:
    settings = Settings(
        model_dir=model_dir,
        providers=["CPUExecutionProvider"],
        max_batch_size=4,
        max_wait_ms=1,
        preprocess_workers=2,
        intra_op_threads=1,
        warmup=False,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings=settings))


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_has_the_expected_operations(fuzz_schema: Any) -> None:
    labels = {op.label for op in _operations(fuzz_schema)}
    assert {"GET /healthz", "GET /readyz", "GET /v1/models", "POST /v1/predict"} <= labels


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_openapi_fuzz_never_5xx_and_errors_keep_the_schema(fuzz_schema: Any, mode: GenerationMode) -> None:
    statuses: Counter[tuple[str, int]] = Counter()
    media_types: Counter[str] = Counter()
    for operation in _operations(fuzz_schema):
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # nothing to violate: no parameters, no body

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call()
            statuses[(case.operation.label, response.status_code)] += 1
            media_types[str(case.media_type)] += 1
            assert response.status_code < 500, response.text[:300]
            case.validate_response(
                response, checks=(not_a_server_error, content_type_conformance, response_schema_conformance)
            )
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body

        run()
    logging.getLogger(__name__).info(
        "schemathesis %s: %s; media types %s", mode.value, dict(statuses), dict(media_types)
    )
    assert sum(n for (label, _), n in statuses.items() if label == "POST /v1/predict") > 100, statuses
    if mode is GenerationMode.POSITIVE:
        assert {"multipart/form-data", "application/json"} <= set(media_types), media_types
        assert statuses[("POST /v1/predict", 200)] > 0, statuses
    assert not [key for key in statuses if key[1] >= 500]
