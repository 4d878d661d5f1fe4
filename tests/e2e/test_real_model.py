"""End-to-end: the REAL committed model (models/fused-sentiment) through HTTP with the app's lifespan.

Skipped only while ``models/fused-sentiment/1/model.onnx`` is not committed yet.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import REPO_ROOT, Settings
from app.contract import HOP_LENGTH
from app.inference.collate import collate
from app.inference.predictor import ModelOutput, Predictor
from app.main import create_app
from app.preprocessing.pipeline import RawInput
from tests.media import face_jpeg, no_face_png, speech_wav

# SENTIMENT_E2E_MODEL_DIR points these tests at another model repository (e.g. a candidate model).
MODEL_ROOT = Path(os.environ.get("SENTIMENT_E2E_MODEL_DIR", REPO_ROOT / "models"))
MODEL_FILE = MODEL_ROOT / "fused-sentiment" / "1" / "model.onnx"

pytestmark = pytest.mark.skipif(not MODEL_FILE.is_file(), reason=f"{MODEL_FILE} not committed yet")

LABELS = ("negative", "neutral", "positive")


@pytest.fixture(scope="module")
def real_settings() -> Settings:
    # Default providers (CUDA first): on a CPU-only machine this also exercises the honest fallback.
    return Settings(model_dir=MODEL_ROOT, max_batch_size=8)


@pytest.fixture(scope="module")
def real_client(real_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings=real_settings), raise_server_exceptions=False) as c:
        yield c


def _valid(p: dict[str, float]) -> None:
    assert set(p) == set(LABELS)
    assert all(0 <= v <= 1 for v in p.values())
    assert math.isclose(sum(p.values()), 1.0, abs_tol=1e-4)


def test_ready_and_provider_reported(real_client: TestClient) -> None:
    ready = real_client.get("/readyz")
    assert ready.status_code == 200, ready.text
    info = real_client.get("/v1/models").json()["models"][0]
    assert info["execution_provider"] == info["active_providers"][0]
    assert info["execution_provider"] in ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_all_three_modalities_give_valid_probabilities(real_client: TestClient) -> None:
    r = real_client.post(
        "/v1/predict",
        data={"text": "I am so happy today, this is wonderful!"},
        files={
            "image": ("face.jpg", face_jpeg(), "image/jpeg"),
            "audio": ("speech.wav", speech_wav(), "audio/wav"),
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    _valid(body["probabilities"])
    for name in ("text", "image", "audio"):
        assert body["modalities"][name]["used"], name
        _valid(body["modalities"][name]["probabilities"])
    assert body["modalities"]["image"]["faces"] == 1


def test_image_without_face_and_audio_only(real_client: TestClient) -> None:
    r = real_client.post("/v1/predict", files={"image": ("x.png", no_face_png(), "image/png")})
    assert r.status_code == 200 and r.json()["modalities"]["image"]["faces"] == 0
    _valid(r.json()["probabilities"])
    r = real_client.post("/v1/predict", files={"audio": ("a.wav", speech_wav(1, 44100, 2), "audio/wav")})
    assert r.status_code == 200
    _valid(r.json()["probabilities"])


PAIRS = [
    (
        "I love this, it is absolutely wonderful and makes me so happy!",
        "I hate this, it is awful and makes me miserable.",
    ),
    (
        "What a fantastic, brilliant day. Best experience ever!",
        "What a terrible, horrible day. Worst experience ever!",
    ),
    ("Thank you so much, this is great news.", "This is a disaster, I am furious and disgusted."),
]


@pytest.mark.parametrize(("positive", "negative"), PAIRS)
def test_clearly_positive_text_beats_clearly_negative_text(
    real_client: TestClient, positive: str, negative: str
) -> None:
    pos = real_client.post("/v1/predict", json={"text": positive}).json()["probabilities"]
    neg = real_client.post("/v1/predict", json={"text": negative}).json()["probabilities"]
    assert pos["positive"] > neg["positive"]
    assert neg["negative"] > pos["negative"]


def test_real_model_padding_and_masks_do_not_change_outputs(real_settings: Settings) -> None:
    """Padding/masks (text to the batch's longest, audio to a bucket) must not change any output (1e-5);
    a mixed batch must match single requests up to ONNX Runtime's batch-size numerics (see below)."""
    predictor = Predictor(real_settings.model_copy(update={"providers": ["CPUExecutionProvider"]}))
    predictor.load()
    raws = [
        RawInput(text="short"),
        RawInput(text="a much longer sentence that needs many more tokens than the first one does " * 2),
        RawInput(image=face_jpeg(), audio=speech_wav()),
        RawInput(text="mixed", audio=speech_wav(2, 44100)),
    ]
    items = [predictor.prepare(r) for r in raws]
    assert predictor.model is not None
    contract = predictor.model.contract
    batch_feeds = collate(items, contract=contract, text_multiple=1, audio_buckets=predictor.audio_buckets)
    audio_in = contract.expert("audio").inputs[0].name  # waveform [B, N] (samples) or log-mel [B, T, 64]
    length, audio_len = batch_feeds["input_ids"].shape[1], batch_feeds[audio_in].shape[1]
    # the padded bucket, in 10-ms hops for samples (7 hops past the batch's longest clip)
    frames = -(-audio_len // HOP_LENGTH) + 7 if audio_in == "waveform" else audio_len
    together = predictor.run_batch(items)
    for item, row in zip(items, together, strict=True):
        assert predictor.model is not None
        tight = predictor.model.run(collate([item], contract=contract))  # batch of 1, no padding at all
        padded = predictor.model.run(
            collate([item], contract=contract, text_multiple=length, audio_buckets=[frames])
        )
        np.testing.assert_allclose(padded[0], tight[0], atol=1e-5, rtol=0)
        np.testing.assert_allclose(padded[1], tight[1], atol=1e-5, rtol=0)
        assert isinstance(row, ModelOutput)
        # ONNX Runtime's CPU Conv kernels give slightly different results for batch 1 and batch > 1 on
        # identical rows (measured 1.7e-4 on the audio branch, independent of padding, thread count and
        # graph optimisation level), so a mixed batch vs. single requests is compared at 1e-3.
        np.testing.assert_allclose(row.probabilities, tight[0][0], atol=1e-3, rtol=0)


def test_batches_split_by_experts_give_the_same_answers_with_one_run_per_modality_set(
    real_settings: Settings,
) -> None:
    """``batch_by_experts`` (the CPU default): one ``session.run`` per set of present experts, in order of
    first appearance, each row's answer the same as in one mixed batch (up to batch-size numerics, 1e-3)."""
    predictor = Predictor(real_settings.model_copy(update={"providers": ["CPUExecutionProvider"]}))
    predictor.load()
    assert predictor.batch_by_experts  # unset → on with the CPU execution provider
    raws = [
        RawInput(text="what a lovely afternoon"),
        RawInput(audio=speech_wav()),
        RawInput(text="the bus was late again"),
        RawInput(text="mixed", image=face_jpeg(), audio=speech_wav()),
        RawInput(audio=speech_wav(2)),
    ]
    items = [predictor.prepare(r) for r in raws]
    model = predictor.model
    assert model is not None
    runs: list[int] = []
    original = model.run

    def counting_run(feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        runs.append(len(feeds[model.contract.mask_input]))
        return original(feeds)

    model.run = counting_run  # type: ignore[method-assign]
    split = predictor.run_batch(items)
    assert runs == [2, 2, 1]  # text ×2, audio ×2, all three
    runs.clear()
    predictor.settings = predictor.settings.model_copy(update={"batch_by_experts": False})
    whole = predictor.run_batch(items)
    assert runs == [5]
    for a, b in zip(split, whole, strict=True):
        assert isinstance(a, ModelOutput) and isinstance(b, ModelOutput)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-3, rtol=0)
        np.testing.assert_array_equal(a.modality_mask, b.modality_mask)


def test_the_docs_no_usable_evidence_example_holds_for_the_bundled_model(real_client: TestClient) -> None:
    """The OpenAPI example "only a blank image" answers no label with the bundled (scene-expert) model too:
    no face, and the scene expert refuses the blank image."""
    spec = real_client.get("/openapi.json").json()
    examples = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    body = real_client.post("/v1/predict", json=examples["image_without_face"]["value"]).json()
    assert body["label"] is None and body["reason"] == "no_usable_evidence"
    assert body["probabilities_are_prior"] is True
    scene = body["modalities"]["image"]["scene"]
    assert (scene["used"], scene["reason"]) == (False, "blank_image")
