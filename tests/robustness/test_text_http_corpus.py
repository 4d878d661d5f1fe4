"""Bad-input corpus, text and HTTP (issue 5): each case has one documented outcome, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.media import face_jpeg, wav
from tests.robustness.helpers import assert_error, assert_prediction, probs

PREDICT = "/v1/predict"
UNSUPPORTED = "unsupported_language"
OUT_OF_VOCABULARY = "out_of_vocabulary"


def multipart(
    parts: list[tuple[bytes, bytes]], boundary: bytes = b"B0undary"
) -> tuple[bytes, dict[str, str]]:
    """A hand-built multipart/form-data body from (part headers, payload) pairs."""
    body = b"".join(
        b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + payload + b"\r\n" for headers, payload in parts
    )
    body += b"--" + boundary + b"--\r\n"
    return body, {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}


def text_part(payload: bytes, extra: bytes = b"") -> tuple[bytes, bytes]:
    return b'Content-Disposition: form-data; name="text"' + extra, payload


# ----------------------------------------------------------------------------------------------- text
TEXT_CASES: list[tuple[str, str, tuple[Any, ...]]] = [
    ("empty", "", (422, "invalid_input")),
    ("whitespace_only", " \t\r\n\u00a0\u3000 ", (422, "invalid_input")),
    ("zero_width_only", "\u200b\u200c\u200d\u2060\ufeff", (422, "invalid_input")),
    # all-MiniLM's WordPiece vocabulary has no emoji: every one is [UNK]; the text is sent but not used.
    ("emoji_only", "😍🎉👍🔥", ("not_used", OUT_OF_VOCABULARY)),
    ("emoji_and_words", "😍 what a great day 🎉", ("ok",)),
    ("mixed_scripts", "I love this place so much, 日本語 and ελληνικά menus too", ("ok",)),
    # Most letters outside the Latin script: the language gate refuses it (200, text not used).
    ("mostly_other_scripts", "I love this 日本語 التجربة прекрасно ελληνικά", ("not_used", UNSUPPORTED)),
    ("combining_marks", "cafe\u0301 tre\u0300s bien", ("ok",)),
    ("right_to_left_override", "\u202egood day\u202c", ("ok",)),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
@pytest.mark.parametrize("how", ["json", "multipart", "urlencoded"])
def test_text_corpus(client: TestClient, text: str, expected: tuple[Any, ...], how: str) -> None:
    if how == "json":
        r = client.post(PREDICT, json={"text": text})
    elif how == "multipart":
        r = client.post(PREDICT, files={"text": (None, text.encode())})
    else:
        r = client.post(PREDICT, data={"text": text})
    if expected[0] == "ok":
        assert assert_prediction(r)["modalities"]["text"]["used"] is True
    elif expected[0] == "not_used":
        result = assert_prediction(r)["modalities"]["text"]
        assert (result["used"], result["reason"]) == (False, expected[1])
    elif text == "" and how != "json":
        # Browsers send empty form fields for untouched inputs: an empty text field counts as absent.
        assert_error(r, 422, "missing_modality")
    else:
        assert_error(r, *expected)


def test_emoji_only_text_leaves_the_answer_to_the_image(client: TestClient) -> None:
    """Emoji-only text is not used (out_of_vocabulary), and the request is answered from the image alone."""
    r = client.post(
        PREDICT, files={"text": (None, "😡😡😡".encode()), "image": ("f.jpg", face_jpeg(), "image/jpeg")}
    )
    body = assert_prediction(r)
    text, image = body["modalities"]["text"], body["modalities"]["image"]
    assert (text["used"], text["reason"]) == (False, OUT_OF_VOCABULARY)
    assert image["used"] is True and body["label"] is not None
    assert body["probabilities"] == pytest.approx(image["probabilities"], abs=1e-5)


def test_text_longer_than_the_limit(client: TestClient, settings: Settings) -> None:
    limit = settings.max_text_chars
    assert_prediction(client.post(PREDICT, json={"text": "good " * (limit // 5)}))
    assert_error(client.post(PREDICT, json={"text": "a" * (limit + 1)}), 413, "input_too_large")
    assert_error(client.post(PREDICT, data={"text": "a" * (limit + 1)}), 413, "input_too_large")
    # Far over: the multipart parser's per-field cap (4 bytes per character) answers before buffering it all.
    assert_error(
        client.post(PREDICT, files={"text": (None, b"a" * (limit * 4 + 2048))}), 413, "input_too_large"
    )


def test_invalid_utf8_in_json_is_a_validation_error(client: TestClient) -> None:
    # RFC 8259: JSON text is UTF-8; bytes that are not are not JSON.
    r = client.post(
        PREDICT, content=b'{"text": "caf\xe9 \xff good"}', headers={"Content-Type": "application/json"}
    )
    assert_error(r, 422, "validation_error")
    r = client.post(
        PREDICT, content=b'{"text": "\\ud800 good"}', headers={"Content-Type": "application/json"}
    )
    assert_error(r, 422, "validation_error")  # a lone surrogate escape is not a Unicode string


def test_invalid_utf8_in_a_form_field_is_refused_not_mangled(client: TestClient) -> None:
    body, headers = multipart([text_part(b"caf\xe9 \xff good")])
    assert_error(client.post(PREDICT, content=body, headers=headers), 422, "invalid_input")
    r = client.post(
        PREDICT, content=b"text=caf%E9+good", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_error(r, 422, "invalid_input")


def test_form_field_with_a_non_utf8_charset_is_decoded_with_it(client: TestClient) -> None:
    reference = assert_prediction(client.post(PREDICT, json={"text": "café good"}))
    body, headers = multipart(
        [text_part("café good".encode("iso-8859-1"), b"\r\nContent-Type: text/plain; charset=iso-8859-1")]
    )
    got = assert_prediction(client.post(PREDICT, content=body, headers=headers))
    assert got["modalities"]["text"]["characters"] == 9
    assert probs(got["probabilities"]) == pytest.approx(probs(reference["probabilities"]), abs=1e-6)
    # The whole request declared in a charset (multipart Content-Type parameter) works the same way.
    body, _ = multipart([text_part("café good".encode("cp1252"))])
    r = client.post(
        PREDICT,
        content=body,
        headers={"Content-Type": "multipart/form-data; charset=cp1252; boundary=B0undary"},
    )
    assert probs(assert_prediction(r)["probabilities"]) == pytest.approx(
        probs(reference["probabilities"]), abs=1e-6
    )
    body, headers = multipart([text_part(b"good", b"\r\nContent-Type: text/plain; charset=no-such-charset")])
    assert_error(client.post(PREDICT, content=body, headers=headers), 422, "invalid_input")


# ----------------------------------------------------------------------------------------------- HTTP
def test_multipart_without_boundary(client: TestClient) -> None:
    body, _ = multipart([text_part(b"good")])
    assert_error(
        client.post(PREDICT, content=body, headers={"Content-Type": "multipart/form-data"}),
        400,
        "malformed_request",
    )


def test_multipart_with_a_wrong_boundary(client: TestClient) -> None:
    body, _ = multipart([text_part(b"good")])
    r = client.post(PREDICT, content=body, headers={"Content-Type": "multipart/form-data; boundary=other"})
    assert_error(r, 400, "malformed_request")


def test_multipart_cut_before_its_closing_boundary(client: TestClient) -> None:
    # An interrupted or hand-built body: its last part must not be dropped silently.
    body, headers = multipart([text_part(b"good day")])
    cut = body[: body.rindex(b"--B0undary--")]
    assert_error(client.post(PREDICT, content=cut, headers=headers), 400, "malformed_request")
    assert_error(client.post(PREDICT, content=b"", headers=headers), 400, "malformed_request")


def test_file_field_sent_as_a_text_field(client: TestClient) -> None:
    # `curl -F image=<face.jpg` (a value, not a file): no file name, no Content-Type. (A part with only a
    # `filename*` parameter IS a file: tests/api/test_multipart_cases.py.)
    body, headers = multipart([(b'Content-Disposition: form-data; name="image"', face_jpeg()[:2000])])
    assert_error(client.post(PREDICT, content=body, headers=headers), 422, "validation_error")
    # A real photo as a field is over the per-field cap (4 bytes per text character): 413 that says why.
    body, headers = multipart([(b'Content-Disposition: form-data; name="image"', face_jpeg())])
    err = assert_error(client.post(PREDICT, content=body, headers=headers), 413, "input_too_large")
    assert "file upload" in err["message"]


def test_part_without_a_name(client: TestClient) -> None:
    body, headers = multipart([(b"Content-Disposition: form-data", b"good")])
    assert_error(client.post(PREDICT, content=body, headers=headers), 400, "malformed_request")


def test_file_part_with_no_file_selected(client: TestClient) -> None:
    # What a browser sends for <input type=file> left empty: filename="" and no bytes.
    empty = (
        b'Content-Disposition: form-data; name="image"; filename=""\r\n'
        b"Content-Type: application/octet-stream",
        b"",
    )
    body, headers = multipart([empty])
    assert_error(client.post(PREDICT, content=body, headers=headers), 422, "missing_modality")
    body, headers = multipart([text_part(b"good day"), empty])
    body_json = assert_prediction(client.post(PREDICT, content=body, headers=headers))
    assert body_json["modalities"]["image"] is None


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..\\..\\windows\\win.ini",
        "snímek obrazovky 📷.jpg",
        "a\x00b.jpg",
        "x" * 4000,
        "con",
    ],
)
def test_unicode_and_path_like_file_names_are_ignored(client: TestClient, filename: str) -> None:
    r = client.post(PREDICT, files={"image": (filename, face_jpeg(), "image/jpeg")})
    body = assert_prediction(r)
    assert body["modalities"]["image"]["faces"] >= 1
    assert "passwd" not in r.text and "win.ini" not in r.text


def test_duplicate_fields(client: TestClient) -> None:
    assert_error(
        client.post(PREDICT, files=[("text", (None, b"a")), ("text", (None, b"b"))]), 422, "validation_error"
    )
    files = [("audio", ("a.wav", wav(0.5), "audio/wav")), ("audio", ("b.wav", wav(0.5), "audio/wav"))]
    assert_error(client.post(PREDICT, files=files), 422, "validation_error")
    assert_error(
        client.post(
            PREDICT, content=b'{"text": "a", "text": "b"}', headers={"Content-Type": "application/json"}
        ),
        422,
        "validation_error",
    )


@pytest.mark.parametrize("kind", ["fields", "files", "empty_parts"])
def test_1001_parts(client: TestClient, kind: str) -> None:
    if kind == "fields":
        parts = [text_part(b"good")] * 1001
    elif kind == "files":
        parts = [
            (f'Content-Disposition: form-data; name="image"; filename="{i}.png"'.encode(), b"x")
            for i in range(1001)
        ]
    else:
        parts = [(b'Content-Disposition: form-data; name="x"', b"")] * 1001
    body, headers = multipart(parts)
    assert_error(client.post(PREDICT, content=body, headers=headers), 413, "payload_too_large")


def test_json_body_to_multipart_and_the_reverse(client: TestClient) -> None:
    payload = json.dumps({"text": "good"}).encode()
    r = client.post(
        PREDICT, content=payload, headers={"Content-Type": "multipart/form-data; boundary=B0undary"}
    )
    assert_error(r, 400, "malformed_request")
    body, _ = multipart([text_part(b"good")])
    assert_error(
        client.post(PREDICT, content=body, headers={"Content-Type": "application/json"}),
        422,
        "validation_error",
    )
    r = client.post(PREDICT, content=payload, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 422, "validation_error")  # one field named '{"text": "good"}': unknown


@pytest.mark.parametrize(
    ("payload", "status", "type_"),
    [
        ({"text": 5}, 422, "validation_error"),
        ({"text": ["good"]}, 422, "validation_error"),
        ({"text": {"a": 1}}, 422, "validation_error"),
        ({"text": True}, 422, "validation_error"),
        ({"image_base64": 123}, 422, "validation_error"),
        ({"audio_base64": ["AAAA"]}, 422, "validation_error"),
        ({"text": "good", "extra": 1}, 422, "validation_error"),
        ([{"text": "good"}], 422, "validation_error"),
        ("good", 422, "validation_error"),
        (None, 422, "validation_error"),
        ({}, 422, "missing_modality"),
        ({"text": None}, 422, "missing_modality"),
    ],
)
def test_wrong_types_in_json(client: TestClient, payload: Any, status: int, type_: str) -> None:
    r = client.post(
        PREDICT, content=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    assert_error(r, status, type_)


@pytest.mark.parametrize(
    "value", ["not*base64!", "abc", "====", "YWJj\x00", "data:image/png;base64,@@@@", "ÿÿÿÿ"]
)
def test_base64_that_is_not_base64(client: TestClient, value: str) -> None:
    assert_error(client.post(PREDICT, json={"image_base64": value}), 422, "validation_error")
    assert_error(client.post(PREDICT, json={"audio_base64": value}), 422, "validation_error")


def test_empty_base64_is_an_empty_file(client: TestClient) -> None:
    assert_error(client.post(PREDICT, json={"image_base64": ""}), 422, "undecodable_input")
    assert_error(
        client.post(PREDICT, json={"audio_base64": "data:audio/wav;base64,"}), 422, "undecodable_input"
    )


@pytest.mark.parametrize(
    ("content_type", "status", "type_"),
    [
        ("text/plain", 415, "unsupported_media_type"),
        ("application/octet-stream", 415, "unsupported_media_type"),
        ("image/jpeg", 415, "unsupported_media_type"),
        ("", 415, "unsupported_media_type"),
        ("application/vnd.api+json", 422, "validation_error"),
    ],
)
def test_other_content_types(client: TestClient, content_type: str, status: int, type_: str) -> None:
    r = client.post(PREDICT, content=b"\xff\xd8\xff raw bytes", headers={"Content-Type": content_type})
    assert_error(r, status, type_)


def test_bad_content_length(client: TestClient) -> None:
    r = client.post(
        PREDICT, content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "-5"}
    )
    assert_error(r, 400, "malformed_request")
