"""JSON numbers beyond Python's integer-conversion limit are a client error, not a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": 1' + b"0" * 5000 + b"}",  # the number is the field
        b'{"text": "hi", "n": 9' + b"9" * 4400 + b"}",  # in an unknown field
    ],
)
def test_json_integer_over_the_conversion_limit_is_422(client: TestClient, body: bytes) -> None:
    r = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "validation_error"
