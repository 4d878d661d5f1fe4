"""Security by default (issue 5): API key, CORS, file names, no payload echo, no content in logs."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

import app.api.deps as deps
from app.config import Settings
from app.main import create_app
from tests.media import face_jpeg, wav
from tests.robustness.helpers import assert_error, assert_prediction

MARKER = "Zq7MARKERx9"  # appears nowhere in the service's code or messages


@pytest.fixture(scope="module")
def keyed(settings: Settings) -> Iterator[TestClient]:
    s = settings.model_copy(update={"api_key": SecretStr("s3cret-ключ"), "warmup": False})
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic czNjcmV0"},
        {"Authorization": "s3cret"},
        {"Authorization": "Bearer"},
        {"X-API-Key": "s3cret-ключ "[:-1] + "x"},
    ],
)
def test_api_key_missing_or_wrong_is_401(keyed: TestClient, headers: dict[str, str]) -> None:
    hdrs = {k: v.encode() for k, v in headers.items()}  # HTTP header bytes: UTF-8 on the wire
    r = keyed.post("/v1/predict", json={"text": "good"}, headers=hdrs)
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert_error(keyed.get("/v1/models", headers=hdrs), 401, "unauthorized")


def test_api_key_in_the_query_string_is_not_accepted(keyed: TestClient) -> None:
    assert_error(keyed.post("/v1/predict?api_key=s3cret-ключ", json={"text": "good"}), 401, "unauthorized")


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_api_key_as_bearer_or_x_api_key(keyed: TestClient, scheme: str) -> None:
    key = "s3cret-ключ".encode()  # a non-ASCII key: HTTP header bytes are UTF-8 on the wire
    auth = {"Authorization": f"{scheme} ".encode() + key}
    assert_prediction(keyed.post("/v1/predict", json={"text": "good"}, headers=auth))
    assert_prediction(keyed.post("/v1/predict", json={"text": "good"}, headers={"X-API-Key": key}))
    assert keyed.get("/v1/models", headers={"X-API-Key": key}).status_code == 200


def test_health_and_docs_are_exempt_from_the_api_key(keyed: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path


def test_api_key_is_compared_in_constant_time(keyed: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = deps.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    keyed.post("/v1/predict", json={"text": "good"}, headers={"X-API-Key": "nearly"})
    assert calls and calls[-1][0] == b"nearly"


def test_cors_is_off_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/v1/predict",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    r = client.post("/v1/predict", json={"text": "good"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_allows_only_the_configured_origins(settings: Settings) -> None:
    s = settings.model_copy(update={"cors_origins": ["https://app.example"], "warmup": False})
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        ok = c.options(
            "/v1/predict", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
        bad = c.options(
            "/v1/predict", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in bad.headers
        r = c.post("/v1/predict", json={"text": "good"}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_file_names_are_never_used_as_paths(client: TestClient, tmp_path: Path) -> None:
    target = tmp_path / "written-by-upload.jpg"
    for name in (str(target), f"../../../../../../..{target}", f"{tmp_path}/../{tmp_path.name}/x.wav"):
        assert_prediction(client.post("/v1/predict", files={"image": (name, face_jpeg(), "image/jpeg")}))
        assert_prediction(client.post("/v1/predict", files={"audio": (name, wav(0.5), "audio/wav")}))
    assert list(tmp_path.iterdir()) == []


def _bad_requests() -> list[tuple[str, dict[str, object]]]:
    """Requests that fail, each carrying MARKER in its payload (values, bytes, file names, headers)."""
    m, mb = MARKER, MARKER.encode()
    return [
        ("text_too_long", {"json": {"text": (m + " ") * 2000}}),
        ("text_wrong_type", {"json": {"text": [m]}}),
        ("bad_json", {"content": b'{"text": "' + mb + b'"', "headers": {"Content-Type": "application/json"}}),
        (
            "bad_json_value",
            {"content": b'{"text": ' + mb + b"}", "headers": {"Content-Type": "application/json"}},
        ),
        ("bad_base64", {"json": {"image_base64": m + "*!"}}),
        ("image_bytes", {"files": {"image": (f"{m}.jpg", mb * 50, f"image/{m}")}}),
        ("pdf_image", {"files": {"image": ("a.pdf", b"%PDF-1.4 " + mb, "application/pdf")}}),
        ("svg_image", {"files": {"image": ("a.svg", b"<svg>" + mb + b"</svg>", "image/svg+xml")}}),
        ("audio_bytes", {"files": {"audio": (f"{m}.wav", b"RIFF" + mb * 50, "audio/wav")}}),
        ("b64_audio", {"json": {"audio_base64": base64.b64encode(mb * 40).decode()}}),
        ("bad_utf8_field", {"files": {"text": (None, mb + b"\xff")}}),
        ("image_as_text_field", {"data": {"image": m}}),
        ("bad_content_type", {"content": mb, "headers": {"Content-Type": f"text/{m}"}}),
        (
            "multipart_garbage",
            {"content": mb, "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
        ),
        ("empty_text", {"json": {"text": "\u200b" * 3, "image_base64": base64.b64encode(mb).decode()}}),
    ]


@pytest.mark.parametrize(("kwargs"), [c[1] for c in _bad_requests()], ids=[c[0] for c in _bad_requests()])
def test_error_messages_never_echo_the_payload(client: TestClient, kwargs: dict[str, object]) -> None:
    r = client.post("/v1/predict", **kwargs)  # type: ignore[arg-type]
    assert 400 <= r.status_code < 500, r.text[:200]
    assert MARKER not in r.text
    assert MARKER.lower() not in r.text.lower()


def test_logs_carry_request_ids_and_sizes_never_content(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for _, kwargs in _bad_requests():
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": "rid-1"}  # type: ignore[dict-item]
        client.post("/v1/predict", **kwargs, headers=headers)  # type: ignore[arg-type]
    ok = client.post(
        "/v1/predict",
        data={"text": f"{MARKER} is a good day"},
        files={"image": (f"{MARKER}.jpg", face_jpeg(), "image/jpeg")},
        headers={"X-Request-ID": "rid-ok"},
    )
    assert ok.status_code == 200
    assert MARKER.lower() not in caplog.text.lower()
    access = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    ok_line = next(line for line in access if "request_id=rid-ok" in line)
    assert (
        "status=200" in ok_line
        and "bytes_in=" in ok_line
        and int(ok_line.split("bytes_in=")[1].split()[0]) > 1000
    )
    assert sum("request_id=rid-1" in line for line in access) == len(_bad_requests())
