"""The playground at ``/`` in a real browser (issue 13, items 5-6): it predicts for a text, an uploaded
face, a webcam snapshot and a microphone recording, draws a bar per probability of the fused result and of
every modality (and nested part) the response has, shows each unused modality's reason and the error
message of a 4xx, and works without getUserMedia."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from app.config import REPO_ROOT
from tests.browser.conftest import MODEL_ROOT, TIMEOUT_MS, note, screenshot
from tests.robustness.server import Server, running_server

pytestmark = pytest.mark.browser

FACE = REPO_ROOT / "examples" / "face.jpg"
SPEECH = REPO_ROOT / "examples" / "speech.wav"
AT_LEAST_1_5 = re.compile(r"^(?:1\.[5-9]|[2-9]\.\d|\d{2,}\.\d)$")
PART_KEYS = {"used", "reason", "probabilities"}
#: The drawn bar's width as a fraction of its track.
BAR_RATIO = "b => b.getBoundingClientRect().width / b.parentElement.getBoundingClientRect().width"
#: As on plain http from another host (not a secure context): no navigator.mediaDevices.
NO_MEDIA_DEVICES = "Object.defineProperty(Navigator.prototype, 'mediaDevices', {get: () => undefined})"


def _predict(page: Page) -> tuple[int, Any]:
    """Click Predict; (status, JSON body) once the page has rendered the answer."""
    done = int(page.locator("#result").get_attribute("data-done") or 0)
    with page.expect_response(lambda r: urlsplit(r.url).path == "/v1/predict") as info:
        page.get_by_role("button", name="Predict").click()
    expect(page.locator("#result")).to_have_attribute("data-done", str(done + 1))
    return info.value.status, info.value.json()


def _parts(name: str, info: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(scope, object) for a modality and every nested object with used/reason/probabilities."""
    found = [(name, info)]
    for key, value in info.items():
        if key != "probabilities" and isinstance(value, dict) and PART_KEYS & set(value):
            found += _parts(f"{name}.{key}", value)
    return found


def _check_bars(page: Page, scope: str, probabilities: dict[str, float]) -> None:
    bars = page.locator(f'[data-modality="{scope}"] > .bars .bar')
    expect(bars).to_have_count(len(probabilities))
    for label, p in probabilities.items():
        bar = page.locator(f'[data-modality="{scope}"] > .bars .bar[data-label="{label}"]')
        assert math.isclose(float(bar.get_attribute("data-value") or "nan"), p, abs_tol=1e-9)
        # The drawn width, relative to its track, is the probability (±1 px of a ~600 px track).
        ratio = bar.evaluate(BAR_RATIO)
        assert math.isclose(ratio, p, abs_tol=0.005), (scope, label, ratio, p)
        row = bar.locator("xpath=../..")
        expect(row).to_contain_text(label)
        expect(row).to_contain_text(f"{p * 100:.1f} %")


def _check_rendering(page: Page, data: dict[str, Any]) -> None:
    label = page.locator("#label")
    if data.get("label") is None:
        expect(label).to_contain_text("No usable evidence")
    else:
        expect(label).to_have_text(f"Label: {data['label']}")
    _check_bars(page, "fused", data["probabilities"])
    for name, info in data["modalities"].items():
        if info is None:
            expect(page.locator(f'[data-modality="{name}"]')).to_have_count(0)
            continue
        for scope, part in _parts(name, info):
            box = page.locator(f'[data-modality="{scope}"]')
            if isinstance(part.get("probabilities"), dict):
                _check_bars(page, scope, part["probabilities"])
            if part.get("used") is False:
                expect(box.locator("> .reason")).to_have_text(f"not used: {part.get('reason')}")


def test_text(page: Page, live_server: Server, external_requests: list[str]) -> None:
    page.goto(live_server.url + "/")
    page.get_by_label("Text to classify").fill("I love this, what a wonderful day!")
    status, data = _predict(page)
    assert status == 200, data
    assert data["modalities"]["text"]["used"] is True
    _check_rendering(page, data)
    screenshot(page, "playground-text")
    assert external_requests == []


def test_uploaded_face_and_speech(page: Page, live_server: Server) -> None:
    page.goto(live_server.url + "/")
    page.get_by_label("Upload an image").set_input_files(FACE)
    expect(page.get_by_role("img", name="Image to send")).to_be_visible()
    status, data = _predict(page)
    assert status == 200, data
    assert data["modalities"]["image"] is not None and data["modalities"]["text"] is None
    _check_rendering(page, data)
    screenshot(page, "playground-face")

    page.get_by_label("Text to classify").fill("I am so happy")
    page.get_by_label("Upload an audio clip").set_input_files(SPEECH)
    status, data = _predict(page)
    assert status == 200, data
    assert all(data["modalities"][m] is not None for m in ("text", "image", "audio"))
    _check_rendering(page, data)
    screenshot(page, "playground-all")


def test_4xx_shows_the_error_message(page: Page, live_server: Server) -> None:
    page.goto(live_server.url + "/")
    status, data = _predict(page)  # nothing to send
    assert status == 422
    expect(page.locator("#result-status")).to_have_text(
        f"422 {data['error']['type']}: {data['error']['message']}"
    )
    page.get_by_label("Upload an image").set_input_files(SPEECH)  # a WAV as the image
    status, data = _predict(page)
    assert status == 415
    expect(page.locator("#result-status")).to_contain_text(f"415 {data['error']['type']}")
    expect(page.locator("#result-body .bar")).to_have_count(0)


def test_without_getusermedia_a_note_and_upload_works(browser: Browser, live_server: Server) -> None:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(NO_MEDIA_DEVICES)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        expect(page.get_by_role("note")).to_be_visible()
        expect(page.get_by_role("button", name="Start webcam")).to_be_disabled()
        expect(page.get_by_role("button", name="Record from microphone")).to_be_disabled()
        page.get_by_label("Upload an image").set_input_files(FACE)
        status, data = _predict(page)
        assert status == 200, data
        _check_rendering(page, data)
    finally:
        context.close()


def test_webcam_snapshot_and_microphone_recording(media_browser: Browser, live_server: Server) -> None:
    """Chromium's fake camera and microphone: the JPEG snapshot and what MediaRecorder records (WebM/Opus)
    are accepted by the service."""
    context = media_browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        expect(page.get_by_role("note")).to_be_hidden()
        page.get_by_role("button", name="Start webcam").click()
        snap = page.get_by_role("button", name="Take snapshot")
        expect(snap).to_be_enabled()  # once the video plays
        snap.click()
        expect(page.locator("#image-status")).to_contain_text("Snapshot: webcam.jpg")

        page.get_by_role("button", name="Record from microphone").click()
        # The page counts the recorded seconds (a dataavailable event every 250 ms): wait for ≥ 1.5 s.
        expect(page.locator("#audio-status")).to_have_attribute("data-recorded-s", AT_LEAST_1_5)
        page.get_by_role("button", name="Stop recording").click()
        expect(page.locator("#audio-status")).to_contain_text("Recorded: recording.")

        status, data = _predict(page)
        assert status == 200, data
        assert data["modalities"]["image"]["format"] == "JPEG"
        audio = data["modalities"]["audio"]
        assert audio["duration_s"] >= 1.0
        note(f"Chromium's MediaRecorder: {audio['format']}, {audio['duration_s']} s, used={audio['used']}")
        _check_rendering(page, data)
        screenshot(page, "playground-webcam-microphone")
    finally:
        context.close()


def test_api_key_field(browser: Browser, tmp_path: Path) -> None:
    """With SENTIMENT_API_KEY the page shows the 401's message, and predicts once the key is typed in."""
    with running_server(MODEL_ROOT, tmp_path, api_key="playground-key") as server:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        try:
            page.goto(server.url + "/")
            page.get_by_label("Text to classify").fill("what a lovely day")
            status, data = _predict(page)
            assert status == 401
            expect(page.locator("#result-status")).to_contain_text(f"401 {data['error']['type']}")
            page.get_by_text("API key", exact=True).click()  # opens the <details>
            page.get_by_label("API key").fill("playground-key")
            status, data = _predict(page)
            assert status == 200, data
            _check_rendering(page, data)
        finally:
            context.close()


def _p(negative: float, neutral: float, positive: float) -> dict[str, float]:
    return {"negative": negative, "neutral": neutral, "positive": positive}


#: A response in a shape the service may grow into: no label, nested image parts, more reasons.
FUTURE_RESPONSE: dict[str, Any] = {
    "label": None,
    "reason": "no usable modality",
    "probabilities": {"negative": 1 / 3, "neutral": 1 / 3, "positive": 1 / 3},
    "modalities": {
        "text": None,
        "image": {
            "used": False,
            "reason": "no_face",
            "probabilities": None,
            "face": {"used": False, "reason": "no_face", "probabilities": None},
            "scene": {"used": True, "reason": None, "probabilities": _p(0.2, 0.3, 0.5)},
        },
        "audio": {"used": False, "reason": "no_speech", "probabilities": None, "duration_s": 2.0},
        "video": {"used": True, "reason": None, "probabilities": _p(0.7, 0.2, 0.1)},
    },
}


def test_renders_any_modality_nested_parts_and_a_null_label(page: Page, live_server: Server) -> None:
    page.route("**/v1/predict", lambda route: route.fulfill(json=FUTURE_RESPONSE))
    page.goto(live_server.url + "/")
    page.get_by_label("Text to classify").fill("anything")
    status, data = _predict(page)
    assert status == 200 and data == FUTURE_RESPONSE
    _check_rendering(page, data)
    expect(page.locator("#label")).to_have_text(
        "No usable evidence (no usable modality; image: no_face; audio: no_speech)"
    )
    expect(page.locator('[data-modality="image.scene"] > .bars .bar')).to_have_count(3)
    expect(page.locator('[data-modality="image.face"] > .reason')).to_have_text("not used: no_face")
    expect(page.locator('[data-modality="video"] > .bars .bar')).to_have_count(3)
