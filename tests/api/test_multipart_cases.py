"""Real-world request bodies (shared/cases/turn2, copied to tests/data/cases): a file part is a file part,
transfer encodings are undone, a JSON body may start with a BOM, JSON errors name their cause."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.media import face_jpeg
from tests.robustness.helpers import assert_error, assert_prediction, probs

PREDICT = "/v1/predict"
CASES = Path(__file__).resolve().parent.parent / "data" / "cases"
BOUNDARY = b"B0undary"


def post_case(client: TestClient, name: str) -> httpx.Response:
    """Send ``<name>.body`` as is, with the Content-Type header in ``<name>.ctype`` (as the README's curl)."""
    content_type = (CASES / f"{name}.ctype").read_text(encoding="ascii").strip()
    return client.post(
        PREDICT, content=(CASES / f"{name}.body").read_bytes(), headers={"Content-Type": content_type}
    )


def case_payload(name: str) -> bytes:
    """The payload of the one part in ``<name>.body``, as sent (before any transfer decoding)."""
    body = (CASES / f"{name}.body").read_bytes()
    return body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--turn2boundary--", 1)[0]


def post_part(client: TestClient, headers: bytes, payload: bytes) -> httpx.Response:
    """POST a one-part multipart body built by hand: ``headers`` (CRLF-separated lines) and ``payload``."""
    body = b"--" + BOUNDARY + b"\r\n" + headers + b"\r\n\r\n" + payload + b"\r\n--" + BOUNDARY + b"--\r\n"
    return client.post(
        PREDICT, content=body, headers={"Content-Type": "multipart/form-data; boundary=" + BOUNDARY.decode()}
    )


def same_prediction(got: dict[str, Any], reference: dict[str, Any]) -> None:
    assert probs(got["probabilities"]) == pytest.approx(probs(reference["probabilities"]), abs=1e-6)


# --------------------------------------------------------------------------------------- file parts
def test_part_named_only_by_filename_star_is_a_file_upload(client: TestClient) -> None:
    # RFC 5987 `filename*=utf-8''%D0%BB%D0%B8%D1%86%D0%BE.jpg` and no plain `filename`.
    got = assert_prediction(post_case(client, "filename_star"))
    assert got["modalities"]["image"] is not None
    plain = client.post(PREDICT, files={"image": ("face.jpg", case_payload("filename_star"), "image/jpeg")})
    same_prediction(got, assert_prediction(plain))


def test_filename_star_alone_makes_a_file_even_without_a_content_type(client: TestClient) -> None:
    disposition = b"Content-Disposition: form-data; name=\"image\"; filename*=UTF-8''face.jpg"
    got = assert_prediction(post_part(client, disposition, face_jpeg()))
    assert got["modalities"]["image"]["faces"] >= 1


@pytest.mark.parametrize("content_type", [b"image/jpeg", b"application/octet-stream"])
def test_part_with_a_non_text_content_type_and_no_file_name_is_a_file(
    client: TestClient, content_type: bytes
) -> None:
    headers = b'Content-Disposition: form-data; name="image"\r\nContent-Type: ' + content_type
    got = assert_prediction(post_part(client, headers, face_jpeg()))
    assert got["modalities"]["image"]["faces"] >= 1


def test_part_with_a_text_content_type_and_no_file_name_stays_a_text_field(client: TestClient) -> None:
    headers = b'Content-Disposition: form-data; name="image"\r\nContent-Type: text/plain; charset=utf-8'
    err = assert_error(post_part(client, headers, b"not an image"), 422, "validation_error")
    assert "file upload" in err["message"]


# ------------------------------------------------------------------------------ transfer encodings
def test_base64_transfer_encoded_file_part_is_decoded(client: TestClient) -> None:
    got = assert_prediction(post_case(client, "cte_base64"))
    assert got["modalities"]["image"] is not None
    jpeg = base64.b64decode(b"".join(case_payload("cte_base64").split()))
    assert jpeg[:3] == b"\xff\xd8\xff"
    same_prediction(
        got, assert_prediction(client.post(PREDICT, files={"image": ("face.jpg", jpeg, "image/jpeg")}))
    )


def test_quoted_printable_text_part_is_decoded(client: TestClient) -> None:
    reference = assert_prediction(client.post(PREDICT, json={"text": "café good"}))
    headers = (
        b'Content-Disposition: form-data; name="text"\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable"
    )
    got = assert_prediction(post_part(client, headers, b"caf=C3=A9 =\r\ngood"))  # `=\r\n`: soft line break
    assert got["modalities"]["text"]["characters"] == 9
    same_prediction(got, reference)


def test_base64_text_part_is_decoded_with_its_charset(client: TestClient) -> None:
    reference = assert_prediction(client.post(PREDICT, json={"text": "café good"}))
    headers = (
        b'Content-Disposition: form-data; name="text"\r\n'
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: BASE64"
    )
    got = assert_prediction(post_part(client, headers, base64.b64encode("café good".encode("iso-8859-1"))))
    assert got["modalities"]["text"]["characters"] == 9
    same_prediction(got, reference)


@pytest.mark.parametrize("encoding", [b"7bit", b"8bit", b"binary", b"Binary"])
def test_identity_transfer_encodings_leave_the_bytes_alone(client: TestClient, encoding: bytes) -> None:
    reference = assert_prediction(client.post(PREDICT, files={"image": ("a.jpg", face_jpeg(), "image/jpeg")}))
    headers = (
        b'Content-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: " + encoding
    )
    same_prediction(assert_prediction(post_part(client, headers, face_jpeg())), reference)


@pytest.mark.parametrize("encoding", [b"x-uuencode", b"gzip", b"base65"])
def test_unknown_transfer_encoding_is_refused_naming_the_transfer_encoding(
    client: TestClient, encoding: bytes
) -> None:
    headers = (
        b'Content-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: " + encoding
    )
    err = assert_error(post_part(client, headers, face_jpeg()), 400, "malformed_request")
    assert "Content-Transfer-Encoding" in err["message"]
    assert "unsupported format" not in err["message"]


def test_truncated_base64_part_is_refused_naming_base64(client: TestClient) -> None:
    headers = (
        b'Content-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64"
    )
    err = assert_error(
        post_part(client, headers, base64.b64encode(face_jpeg())[:-1]), 400, "malformed_request"
    )
    assert "base64" in err["message"]


# ------------------------------------------------------------------------------------------- JSON
def test_json_body_starting_with_a_utf8_bom_is_accepted(client: TestClient) -> None:
    body = (CASES / "json_bom.json").read_bytes()
    assert body.startswith(b"\xef\xbb\xbf")
    got = assert_prediction(client.post(PREDICT, content=body, headers={"Content-Type": "application/json"}))
    reference = client.post(PREDICT, content=body[3:], headers={"Content-Type": "application/json"})
    same_prediction(got, assert_prediction(reference))


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b'{"text": "\\uZZZZ good"}', "\\uXXXX escape"),
        (b'{"text": "\\ud800 good"}', "surrogate"),
        (b'{"text": "caf\xe9 good"}', "UTF-8"),
        (b'{"text": "good"', "delimiter"),
    ],
    ids=["invalid_u_escape", "lone_surrogate", "not_utf8", "unterminated"],
)
def test_invalid_json_error_names_the_cause(client: TestClient, body: bytes, cause: str) -> None:
    r = client.post(PREDICT, content=body, headers={"Content-Type": "application/json"})
    err = assert_error(r, 422, "validation_error")
    assert cause in err["message"], err["message"]


def test_json_nested_too_deep_is_a_validation_error(client: TestClient) -> None:
    r = client.post(PREDICT, content=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert_error(r, 422, "validation_error")
