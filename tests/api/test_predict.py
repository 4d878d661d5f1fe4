"""HTTP tests of /v1/predict with the tiny contract model: every modality combination, real files, 4xx."""

from __future__ import annotations

import base64
import itertools
import math
from typing import Any

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from tests.media import SPEECH_WAV, face_jpeg, no_face_png, speech_wav, wav

SPEECH_S = sf.info(str(SPEECH_WAV)).duration  # the turn2 speech clip's length (s)

LABELS = ("negative", "neutral", "positive")


def _check_probs(p: dict[str, float]) -> None:
    assert set(p) == set(LABELS)
    assert all(0.0 <= v <= 1.0 for v in p.values())
    assert math.isclose(sum(p.values()), 1.0, abs_tol=1e-4)


def _check_ok(body: dict[str, Any]) -> None:
    _check_probs(body["probabilities"])
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["model"]["name"] == "fused-sentiment"
    assert body["model"]["version"] == "1"
    assert body["model"]["execution_provider"] == "CPUExecutionProvider"
    for key in ("preprocess_ms", "queue_ms", "inference_ms", "total_ms"):
        assert body["timings"][key] >= 0


def _files(text: bool, image: bool, audio: bool) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
    data = {"text": "I love this wonderful day"} if text else {}
    files = {}
    if image:
        files["image"] = ("face.jpg", face_jpeg(), "image/jpeg")
    if audio:
        files["audio"] = ("speech.wav", speech_wav(), "audio/wav")  # speech: a tone is no_speech
    return data, files


COMBOS = [c for c in itertools.product([False, True], repeat=3) if any(c)]


@pytest.mark.parametrize(("text", "image", "audio"), COMBOS, ids=lambda v: str(int(v)))
def test_predict_multipart_every_modality_combination(
    client: TestClient, text: bool, image: bool, audio: bool
) -> None:
    data, files = _files(text, image, audio)
    r = client.post("/v1/predict", data=data, files=files or None)
    assert r.status_code == 200, r.text
    body = r.json()
    _check_ok(body)
    mods = body["modalities"]
    assert (mods["text"] is not None) == text
    assert (mods["image"] is not None) == image
    assert (mods["audio"] is not None) == audio
    if text:
        assert mods["text"]["used"] and mods["text"]["tokens"] > 2 and mods["text"]["truncated"] is False
        _check_probs(mods["text"]["probabilities"])
    if image:
        assert mods["image"]["faces"] >= 1 and mods["image"]["used"]
        box = mods["image"]["face_box"]
        assert 100 < box["x"] < 300 and 0 < box["y"] < 200 and box["width"] > 50  # astronaut's face
        assert mods["image"]["format"] == "JPEG"
    if audio:
        assert mods["audio"]["used"] and mods["audio"]["speech_s"] >= 0.5
        assert mods["audio"]["duration_s"] == pytest.approx(SPEECH_S, abs=0.01)
        assert mods["audio"]["sample_rate"] == 16000 and mods["audio"]["channels"] == 1
    assert float(r.headers["X-Queue-Time-Ms"]) >= 0
    assert float(r.headers["X-Inference-Time-Ms"]) > 0
    assert r.headers["X-Request-ID"]


def test_single_modality_fused_equals_that_modality(client: TestClient) -> None:
    # Product of experts with one expert: the fused probabilities are that branch's probabilities.
    body = client.post("/v1/predict", data={"text": "what a great day"}).json()
    for label in LABELS:
        assert body["probabilities"][label] == pytest.approx(
            body["modalities"]["text"]["probabilities"][label], abs=1e-5
        )


def test_predict_json_base64_all_three(client: TestClient) -> None:
    payload = {
        "text": "this is awful",
        "image_base64": base64.b64encode(face_jpeg()).decode(),
        "audio_base64": "data:audio/wav;base64," + base64.b64encode(speech_wav()).decode(),
    }
    r = client.post("/v1/predict", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    _check_ok(body)
    assert all(body["modalities"][m]["used"] for m in ("text", "image", "audio"))


def test_json_and_multipart_give_the_same_prediction(client: TestClient) -> None:
    img, snd = face_jpeg(), wav(1.0)
    a = client.post(
        "/v1/predict",
        data={"text": "fine"},
        files={"image": ("a.jpg", img, "image/jpeg"), "audio": ("a.wav", snd, "audio/wav")},
    ).json()
    b = client.post(
        "/v1/predict",
        json={
            "text": "fine",
            "image_base64": base64.b64encode(img).decode(),
            "audio_base64": base64.b64encode(snd).decode(),
        },
    ).json()
    for label in LABELS:
        assert a["probabilities"][label] == pytest.approx(b["probabilities"][label], abs=1e-6)


def test_image_without_face_is_not_an_error_and_not_used(client: TestClient) -> None:
    r = client.post(
        "/v1/predict", data={"text": "ok"}, files={"image": ("x.png", no_face_png(), "image/png")}
    )
    assert r.status_code == 200, r.text
    image = r.json()["modalities"]["image"]
    assert image == {**image, "faces": 0, "used": False, "face_box": None, "probabilities": None}


def test_wrong_content_type_and_file_name_do_not_matter(client: TestClient) -> None:
    r = client.post("/v1/predict", files={"image": ("song.mp3", face_jpeg(), "audio/mpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["modalities"]["image"]["format"] == "JPEG"


def test_long_text_is_truncated_and_reported(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"text": "good " * 400})
    assert r.status_code == 200
    text = r.json()["modalities"]["text"]
    assert text["truncated"] is True and text["tokens"] == 128


# ----------------------------------------------------------------------------------------- errors
def _assert_error(r: Any, status: int, type_: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == type_
    assert "Traceback" not in body["error"]["message"]


def test_predict_without_any_modality_returns_422(client: TestClient) -> None:
    _assert_error(client.post("/v1/predict", json={}), 422, "missing_modality")
    _assert_error(
        client.post("/v1/predict", data={"text": ""}, files={"x": ("", b"", "application/octet-stream")}),
        422,
        "validation_error",
    )
    _assert_error(
        client.post("/v1/predict", files={"image": ("", b"", "application/octet-stream")}),
        422,
        "missing_modality",
    )


def test_empty_text_returns_422(client: TestClient) -> None:
    _assert_error(client.post("/v1/predict", json={"text": "   "}), 422, "invalid_input")
    _assert_error(client.post("/v1/predict", json={"text": "\u200b\u200b"}), 422, "invalid_input")


def test_text_over_the_limit_returns_413(client: TestClient, settings: Any) -> None:
    _assert_error(
        client.post("/v1/predict", json={"text": "a" * (settings.max_text_chars + 1)}), 413, "input_too_large"
    )


def test_unsupported_image_returns_415(client: TestClient) -> None:
    r = client.post("/v1/predict", files={"image": ("doc.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")})
    _assert_error(r, 415, "unsupported_media_type")
    assert "PDF" in r.json()["error"]["message"]


def test_truncated_image_returns_422(client: TestClient) -> None:
    data = face_jpeg()
    _assert_error(
        client.post("/v1/predict", files={"image": ("t.jpg", data[: len(data) // 3], "image/jpeg")}),
        422,
        "undecodable_input",
    )


def test_empty_image_file_returns_422(client: TestClient) -> None:
    _assert_error(
        client.post("/v1/predict", files={"image": ("e.jpg", b"", "image/jpeg")}), 422, "undecodable_input"
    )


def test_unsupported_audio_returns_415(client: TestClient) -> None:
    _assert_error(
        client.post("/v1/predict", files={"audio": ("a.wav", b"\x01\x02" * 500, "audio/wav")}),
        415,
        "unsupported_media_type",
    )


@pytest.mark.parametrize("bad", ["image", "audio", "both"])
def test_fields_prepared_in_parallel_report_the_first_failing_field(client: TestClient, bad: str) -> None:
    """A request's fields are prepared as separate pool tasks; the error is still the first failing field
    in the contract's order (text, image, audio), whatever finishes first."""
    pdf = ("doc.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")
    noise = ("a.wav", b"\x01\x02" * 500, "audio/wav")
    files = {
        "image": pdf if bad in ("image", "both") else ("f.jpg", face_jpeg(), "image/jpeg"),
        "audio": noise if bad in ("audio", "both") else ("s.wav", speech_wav(), "audio/wav"),
    }
    r = client.post("/v1/predict", data={"text": "fine words"}, files=files)
    _assert_error(r, 415, "unsupported_media_type")
    field = "image" if bad in ("image", "both") else "audio"
    assert r.json()["error"]["message"].startswith(f"{field} is not in a supported format")


def test_audio_over_the_limit_returns_413(client: TestClient, settings: Any) -> None:
    r = client.post(
        "/v1/predict", files={"audio": ("long.wav", wav(settings.max_audio_seconds + 1, 8000), "audio/wav")}
    )
    _assert_error(r, 413, "input_too_large")


def test_unsupported_content_type_returns_415(client: TestClient) -> None:
    _assert_error(
        client.post("/v1/predict", content=b"hello", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


def test_invalid_json_returns_422(client: TestClient) -> None:
    _assert_error(
        client.post("/v1/predict", content=b"{not json", headers={"Content-Type": "application/json"}),
        422,
        "validation_error",
    )
    _assert_error(client.post("/v1/predict", json={"text": 5}), 422, "validation_error")
    _assert_error(client.post("/v1/predict", json={"txt": "hi"}), 422, "validation_error")


def test_json_sent_as_urlencoded_form_gets_a_content_type_hint(client: TestClient, settings: Any) -> None:
    # curl -d / --data-binary default to application/x-www-form-urlencoded
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = client.post("/v1/predict", content=b'{"text": "I love it"}', headers=form)
    _assert_error(r, 422, "validation_error")
    assert "Content-Type: application/json" in r.json()["error"]["message"]
    big = b'{"text": "' + b"a" * (settings.max_text_chars * 4 + 10) + b'"}'
    r = client.post("/v1/predict", content=big, headers=form)
    assert r.status_code in (413, 422), r.text  # field too long, or the whole body as one unknown field
    assert "Content-Type: application/json" in r.json()["error"]["message"]
    # a multipart body with an unknown field gets no such hint
    r = client.post("/v1/predict", files={"txt": (None, "hi")})
    _assert_error(r, 422, "validation_error")
    assert "application/json" not in r.json()["error"]["message"]


def test_bad_base64_returns_422(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"image_base64": "not*base64!"})
    _assert_error(r, 422, "validation_error")
    assert "image_base64" in r.json()["error"]["message"]


def test_a_multipart_field_name_in_json_names_the_base64_field(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"image": "abc"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "validation_error"
    message = r.json()["error"]["message"]
    assert (
        "allowed fields: text, image_base64, audio_base64" in message
        and "'image_base64' for 'image'" in message
    )
    r = client.post("/v1/predict/batch", json={"items": [{"audio": "abc"}]})
    item = r.json()["results"][0]
    assert item["status"] == 422 and "'audio_base64' for 'audio'" in item["error"]["message"]
    r = client.post("/v1/predict", json={"text": "hi", "foo": 1})
    message = r.json()["error"]["message"]
    assert "allowed fields: text, image_base64, audio_base64" in message and "for 'foo'" not in message


def test_malformed_multipart_returns_400(client: TestClient) -> None:
    r = client.post("/v1/predict", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"})
    _assert_error(r, 400, "malformed_request")


def test_duplicate_field_returns_422(client: TestClient) -> None:
    r = client.post("/v1/predict", files=[("text", (None, b"a")), ("text", (None, b"b"))])
    _assert_error(r, 422, "validation_error")


def test_too_many_parts_returns_413(client: TestClient, settings: Any) -> None:
    files = [("image", (f"{i}.png", b"x", "image/png")) for i in range(settings.max_parts + 1)]
    _assert_error(client.post("/v1/predict", files=files), 413, "payload_too_large")


def test_body_over_the_limit_returns_413(client: TestClient, settings: Any) -> None:
    big = b"0" * (settings.max_body_bytes + 1)
    _assert_error(
        client.post("/v1/predict", files={"audio": ("big.wav", big, "audio/wav")}), 413, "payload_too_large"
    )


def test_unknown_route_and_wrong_method_use_the_error_schema(client: TestClient) -> None:
    _assert_error(client.get("/nope"), 404, "not_found")
    _assert_error(client.get("/v1/predict"), 405, "method_not_allowed")


def test_trailing_slash_is_a_404_in_the_error_schema_not_a_redirect(client: TestClient) -> None:
    response = client.post("/v1/predict/", data={"text": "hello"}, follow_redirects=False)
    _assert_error(response, 404, "not_found")


def test_image_without_face_alone_has_no_label_and_the_prior(client: TestClient) -> None:
    r = client.post("/v1/predict", files={"image": ("x.png", no_face_png(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] is None and body["reason"] == "no_usable_evidence"
    assert body["probabilities_are_prior"] is True
    face = body["modalities"]["image"]["face"]
    assert face == {"used": False, "reason": "no_face", "probabilities": None, "faces": [], "used_face": None}
    # With some evidence the label is back and the flag is off.
    r = client.post(
        "/v1/predict", data={"text": "ok"}, files={"image": ("x.png", no_face_png(), "image/png")}
    )
    assert r.json()["label"] in LABELS and r.json()["reason"] is None
    assert r.json()["probabilities_are_prior"] is False


def test_face_part_lists_every_face_and_the_one_used(client: TestClient) -> None:
    r = client.post("/v1/predict", files={"image": ("face.jpg", face_jpeg(), "image/jpeg")})
    assert r.status_code == 200, r.text
    image = r.json()["modalities"]["image"]
    face = image["face"]
    assert face["used"] is True and face["reason"] is None and len(face["faces"]) == image["faces"] == 1
    used = face["faces"][face["used_face"]]
    assert 0.9 <= used["score"] <= 1.0
    assert {k: used[k] for k in ("x", "y", "width", "height")} == image["face_box"]
    assert face["probabilities"] == image["probabilities"]  # the only image expert of this model
