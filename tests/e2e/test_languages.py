"""The text rows of ../shared/cases/turn2/README.md through HTTP and the REAL committed model: "I am very
happy today, this is wonderful" in Arabic, Chinese and Hindi (tests/data/cases/text_*.txt) is not used,
reason ``unsupported_language``, with the detected language (before the gate: text "neutral" 0.97–0.998).

Asserts only on the text modality: what the fused label of a request with nothing usable is belongs to the
fusion, not to the gate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.e2e.test_real_model import MODEL_FILE, MODEL_ROOT
from tests.media import face_jpeg

pytestmark = pytest.mark.skipif(not MODEL_FILE.is_file(), reason=f"{MODEL_FILE} not committed yet")

CASES = Path(__file__).resolve().parents[1] / "data" / "cases"


@pytest.fixture(scope="module")
def real_client() -> Iterator[TestClient]:
    settings = Settings(model_dir=MODEL_ROOT, providers=["CPUExecutionProvider"], max_batch_size=4)
    with TestClient(create_app(settings=settings), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    ("file", "language"), [("text_arabic.txt", "ar"), ("text_chinese.txt", "zh"), ("text_hindi.txt", "hi")]
)
def test_case_text_in_an_unsupported_language(real_client: TestClient, file: str, language: str) -> None:
    text = (CASES / file).read_text(encoding="utf-8")
    for request in ({"json": {"text": text}}, {"data": {"text": text}}):
        r = real_client.post("/v1/predict", **request)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        result = r.json()["modalities"]["text"]
        assert result["used"] is False and result["reason"] == "unsupported_language"
        assert result["probabilities"] is None
        assert result["language"] == language and result["language_confidence"] >= 0.5


def test_with_a_face_the_answer_is_the_face_alone(real_client: TestClient) -> None:
    text = (CASES / "text_arabic.txt").read_text(encoding="utf-8")
    face = {"image": ("face.jpg", face_jpeg(), "image/jpeg")}
    mixed = real_client.post("/v1/predict", data={"text": text}, files=face).json()
    alone = real_client.post("/v1/predict", files=face).json()
    assert not mixed["modalities"]["text"]["used"] and mixed["modalities"]["image"]["used"]
    for label, p in alone["probabilities"].items():
        assert math.isclose(mixed["probabilities"][label], p, abs_tol=1e-5)


def test_the_same_sentence_in_english_is_used_and_positive(real_client: TestClient) -> None:
    r = real_client.post("/v1/predict", json={"text": "I am very happy today, this is wonderful"})
    result = r.json()["modalities"]["text"]
    assert result["used"] and result["language"] == "en"
    assert max(result["probabilities"], key=result["probabilities"].get) == "positive"
