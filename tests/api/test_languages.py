"""Text in a language the text expert was not trained on, through HTTP (tiny model, bundled tokenizer):
not used, reason ``unsupported_language``, the detected language in the response; the setting
``SENTIMENT_LANGUAGE_GATE=false`` turns the gate off. The real model: tests/e2e/test_languages.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.schemas import PredictResponse
from tests.media import face_jpeg

ARABIC = "أنا سعيد جدا اليوم، هذا رائع"
GERMAN = "Vielen Dank für die tollen Geburtstagswünsche, ihr seid die Besten"


@pytest.fixture(scope="module")
def ungated_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings=settings.model_copy(update={"language_gate": False}))) as c:
        yield c


@pytest.mark.parametrize(("text", "language"), [(ARABIC, "ar"), (GERMAN, "de")])
def test_unsupported_language_is_not_used_and_named(client: TestClient, text: str, language: str) -> None:
    r = client.post("/v1/predict", json={"text": text})
    assert r.status_code == 200, r.text
    PredictResponse.model_validate(r.json())
    result = r.json()["modalities"]["text"]
    assert not result["used"] and result["probabilities"] is None
    assert result["reason"] == "unsupported_language"
    assert result["language"] == language and 0.5 <= result["language_confidence"] <= 1
    assert result["tokens"] >= 3 and result["characters"] == len(text)


def test_english_is_used_and_reports_its_language(client: TestClient) -> None:
    r = client.post("/v1/predict", data={"text": "What a wonderful day, I really love this place"})
    result = r.json()["modalities"]["text"]
    assert result["used"] and result["reason"] is None and result["language"] == "en"


def test_english_is_used_even_when_the_detector_guesses_otherwise(client: TestClient) -> None:
    # py3langid's top guess for this short text is not English (Shona, p < 0.5): not confident → used.
    r = client.post("/v1/predict", data={"text": "Had the best sushi in Shibuya, arigato Tanaka-san!"})
    result = r.json()["modalities"]["text"]
    assert result["used"] and result["reason"] is None and result["language"] != "en"


def test_the_other_modalities_still_count(client: TestClient) -> None:
    r = client.post(
        "/v1/predict", data={"text": ARABIC}, files={"image": ("face.jpg", face_jpeg(), "image/jpeg")}
    )
    body = r.json()["modalities"]
    assert not body["text"]["used"] and body["image"]["used"]


def test_the_gate_can_be_switched_off(ungated_client: TestClient) -> None:
    result = ungated_client.post("/v1/predict", json={"text": ARABIC}).json()["modalities"]["text"]
    assert result["used"] and result["reason"] is None and result["language"] is None


def test_batch_items_are_gated_one_by_one(client: TestClient) -> None:
    r = client.post("/v1/predict/batch", json={"items": [{"text": ARABIC}, {"text": "I love this!"}]})
    assert r.status_code == 200, r.text
    texts = [item["result"]["modalities"]["text"] for item in r.json()["results"]]
    assert [t["used"] for t in texts] == [False, True]


def test_the_abstention_is_counted_by_reason(client: TestClient) -> None:
    client.post("/v1/predict", json={"text": ARABIC})
    metrics = client.get("/metrics").text
    assert 'expert="text",reason="unsupported_language"' in metrics


def test_openapi_documents_the_language_fields(client: TestClient) -> None:
    text = client.get("/openapi.json").json()["components"]["schemas"]["TextResult"]
    assert {"language", "language_confidence"} <= set(text["properties"])
