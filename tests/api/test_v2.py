"""Open Inference Protocol v2 routes (app/api/v2.py): JSON through the ASGI client, and the real
``tritonclient.http`` client (binary tensor extension) against ``msa serve``, compared with /v1/predict."""

from __future__ import annotations

import base64
import gzip
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.config import Settings
from app.main import create_app
from tests.media import face_jpeg, no_face_png, wav
from tests.robustness.server import running_server

LABELS = ("negative", "neutral", "positive")
INFER = "/v2/models/fused-sentiment/infer"
TEXT = "I love this wonderful day"


def _bytes_input(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "shape": [1], "datatype": "BYTES", "data": [value]}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _v1_probs(client: TestClient | httpx.Client, **fields: str) -> np.ndarray[Any, Any]:
    r = client.post("/v1/predict", json=fields)
    assert r.status_code == 200, r.text
    return np.array([r.json()["probabilities"][label] for label in LABELS])


def _outputs(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in body["outputs"]}


# --------------------------------------------------------------------------- metadata and health
def test_server_metadata_live_ready(client: TestClient) -> None:
    r = client.get("/v2")
    assert r.status_code == 200
    assert r.json()["name"] and r.json()["version"] and "binary_tensor_data" in r.json()["extensions"]
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/fused-sentiment/ready").status_code == 200
    assert client.get("/v2/models/fused-sentiment/versions/1/ready").status_code == 200


@pytest.mark.parametrize("path", ["/v2/models/fused-sentiment", "/v2/models/fused-sentiment/versions/1"])
def test_model_metadata(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "fused-sentiment"
    assert body["versions"] == ["1"]
    assert body["platform"] == "onnxruntime_onnx"
    assert {(t["name"], t["datatype"]) for t in body["inputs"]} == {
        ("text", "BYTES"),
        ("image", "BYTES"),
        ("audio", "BYTES"),
    }
    shapes = {t["name"]: t["shape"] for t in body["outputs"]}
    assert shapes == {"probabilities": [-1, 3], "expert_probabilities": [-1, 3, 3], "expert_mask": [-1, 3]}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/fused-sentiment/versions/9",
        "/v2/models/fused-sentiment/versions/9/ready",
    ],
)
def test_unknown_model_or_version_is_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert isinstance(r.json()["error"], str)


# --------------------------------------------------------------------------- JSON infer
def test_infer_json_text_matches_v1(client: TestClient) -> None:
    r = client.post(INFER, json={"id": "a1", "inputs": [_bytes_input("text", TEXT)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "a1" and body["model_name"] == "fused-sentiment" and body["model_version"] == "1"
    out = _outputs(body)
    assert out["probabilities"]["datatype"] == "FP32" and out["probabilities"]["shape"] == [1, 3]
    assert out["expert_probabilities"]["shape"] == [1, 3, 3]
    assert out["expert_mask"]["data"] == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(out["probabilities"]["data"], _v1_probs(client, text=TEXT), atol=1e-6)


def test_infer_json_all_modalities_match_v1(client: TestClient) -> None:
    image, audio = _b64(face_jpeg()), _b64(wav(1.5))
    inputs = [_bytes_input("text", TEXT), _bytes_input("image", image), _bytes_input("audio", audio)]
    r = client.post(INFER, json={"inputs": inputs, "outputs": [{"name": "probabilities"}]})
    assert r.status_code == 200, r.text
    out = _outputs(r.json())
    assert set(out) == {"probabilities"}
    expected = _v1_probs(client, text=TEXT, image_base64=image, audio_base64=audio)
    np.testing.assert_allclose(out["probabilities"]["data"], expected, atol=1e-6)


def test_no_usable_evidence_is_an_all_zero_expert_mask_with_the_prior(client: TestClient) -> None:
    images = [_b64(no_face_png()), _b64(face_jpeg())]
    inputs = [{"name": "image", "shape": [2], "datatype": "BYTES", "data": images}]
    r = client.post(INFER, json={"inputs": inputs})
    assert r.status_code == 200, r.text
    out = _outputs(r.json())
    mask = np.array(out["expert_mask"]["data"]).reshape(2, -1)
    assert mask[0].sum() == 0 and mask[1].sum() == 1  # item 0: nothing usable; item 1: the face
    assert client.get("/v2/models/fused-sentiment").json()["parameters"]["experts"] == [
        "text",
        "face",
        "audio",
    ]
    v1 = client.post("/v1/predict", json={"image_base64": images[0]}).json()
    assert v1["label"] is None and v1["probabilities_are_prior"] is True
    probs = np.array(out["probabilities"]["data"]).reshape(2, 3)
    np.testing.assert_allclose(probs[0], [v1["probabilities"][label] for label in LABELS], atol=1e-6)


def test_infer_n_items_each_match_v1(client: TestClient) -> None:
    texts = [TEXT, "This is awful.", "ok"]
    r = client.post(
        INFER, json={"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": texts}]}
    )
    assert r.status_code == 200, r.text
    out = _outputs(r.json())
    assert out["probabilities"]["shape"] == [3, 3] and out["expert_mask"]["shape"] == [3, 3]
    rows = np.array(out["probabilities"]["data"]).reshape(3, 3)
    for row, text in zip(rows, texts, strict=True):
        np.testing.assert_allclose(row, _v1_probs(client, text=text), atol=1e-6)


def test_infer_binary_extension_by_hand(client: TestClient) -> None:
    """Binary input (uint32 LE length-prefixed element) and binary output (raw LE FP32)."""
    raw = struct.pack("<I", len(TEXT.encode())) + TEXT.encode()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    r = client.post(
        INFER,
        content=header + raw,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    size = int(r.headers["Inference-Header-Content-Length"])
    meta = json.loads(r.content[:size])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 12
    probs = np.frombuffer(r.content[size:], dtype="<f4")
    np.testing.assert_allclose(probs, _v1_probs(client, text=TEXT), atol=1e-6)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [_bytes_input("video", "x")]}, "unknown input"),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, "BYTES"),
        ({"inputs": [{"name": "text", "shape": [2, 2], "datatype": "BYTES", "data": ["a"] * 4}]}, "shape"),
        ({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}, "shape"),
        (
            {
                "inputs": [
                    {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                    _bytes_input("image", _b64(b"x")),
                ]
            },
            "same number of items",
        ),
        ({"inputs": []}, "at least one"),
        ({"inputs": [_bytes_input("image", "not base64!")]}, "base64"),
        ({"inputs": [_bytes_input("text", TEXT)], "outputs": [{"name": "logits"}]}, "unknown output"),
        ({"input": []}, "invalid infer request"),
    ],
)
def test_protocol_errors_are_400(client: TestClient, body: dict[str, Any], fragment: str) -> None:
    r = client.post(INFER, json=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_compressed_bodies(client: TestClient) -> None:
    body = json.dumps({"inputs": [_bytes_input("text", TEXT)]}).encode()
    plain = client.post(INFER, content=body, headers={"Content-Type": "application/json"})
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        r = client.post(
            INFER, content=data, headers={"Content-Type": "application/json", "Content-Encoding": encoding}
        )
        assert r.status_code == 200, r.text
        assert r.json()["outputs"] == plain.json()["outputs"]
    r = client.post(
        INFER, content=body, headers={"Content-Type": "application/json", "Content-Encoding": "br"}
    )
    assert r.status_code == 400 and "Content-Encoding" in r.json()["error"]
    r = client.post(INFER, content=b"nope", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400


def test_not_json_is_400(client: TestClient) -> None:
    r = client.post(INFER, content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()) == {"error"}


def test_infer_unknown_model_is_404(client: TestClient) -> None:
    r = client.post("/v2/models/nope/infer", json={"inputs": [_bytes_input("text", TEXT)]})
    assert r.status_code == 404
    r = client.post(
        "/v2/models/fused-sentiment/versions/7/infer", json={"inputs": [_bytes_input("text", TEXT)]}
    )
    assert r.status_code == 404


def test_service_error_keeps_its_status(client: TestClient) -> None:
    """A PDF sent as the image is the same 415 as on /v1, in the v2 error shape."""
    r = client.post(INFER, json={"inputs": [_bytes_input("image", _b64(b"%PDF-1.4\n%%EOF\n"))]})
    assert r.status_code == 415, r.text
    assert set(r.json()) == {"error"} and "PDF" in r.json()["error"]


# --------------------------------------------------------------------------- the real tritonclient
def test_tritonclient_matches_v1(model_dir: Path, tmp_path: Path) -> None:
    """``tritonclient.http`` (binary tensors both ways) against ``msa serve`` equals /v1/predict ≤ 1e-6."""
    httpclient = pytest.importorskip("tritonclient.http")
    with running_server(model_dir, tmp_path) as server:
        url = server.url.removeprefix("http://")
        triton = httpclient.InferenceServerClient(url=url)
        try:
            assert triton.is_server_live() and triton.is_server_ready()
            assert triton.is_model_ready("fused-sentiment")
            assert triton.get_model_metadata("fused-sentiment")["platform"] == "onnxruntime_onnx"
            image = face_jpeg()
            with httpx.Client(base_url=server.url, timeout=30) as http:
                cases = [({"text": TEXT.encode()}, {"text": TEXT})]
                cases.append(
                    ({"text": TEXT.encode(), "image": image}, {"text": TEXT, "image_base64": _b64(image)})
                )
                for values, v1_fields in cases:
                    inputs = []
                    for name, value in values.items():
                        tensor = httpclient.InferInput(name, [1], "BYTES")
                        tensor.set_data_from_numpy(np.array([value], dtype=np.object_))
                        inputs.append(tensor)
                    result = triton.infer("fused-sentiment", inputs)
                    probs = result.as_numpy("probabilities")
                    assert probs.shape == (1, 3) and probs.dtype == np.float32
                    assert result.as_numpy("expert_probabilities").shape == (1, 3, 3)
                    np.testing.assert_allclose(probs[0], _v1_probs(http, **v1_fields), atol=1e-6, rtol=0)
                gzipped = triton.infer("fused-sentiment", inputs, request_compression_algorithm="gzip")
                np.testing.assert_array_equal(gzipped.as_numpy("probabilities"), probs)
                texts = [TEXT, "This is awful."]
                tensor = httpclient.InferInput("text", [2], "BYTES")
                tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
                wanted = [httpclient.InferRequestedOutput("probabilities", binary_data=False)]
                probs = triton.infer("fused-sentiment", [tensor], outputs=wanted).as_numpy("probabilities")
                assert probs.shape == (2, 3)
                for row, text in zip(probs, texts, strict=True):
                    np.testing.assert_allclose(row, _v1_probs(http, text=text), atol=1e-6, rtol=0)
        finally:
            triton.close()


def test_api_key_errors_are_in_the_v2_shape(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_key": SecretStr("s3cret")})
    with TestClient(create_app(settings=keyed), raise_server_exceptions=False) as c:
        body = {"inputs": [_bytes_input("text", TEXT)]}
        r = c.post(INFER, json=body)
        assert r.status_code == 401 and isinstance(r.json()["error"], str)
        assert c.get("/v2/models/fused-sentiment").status_code == 401
        assert c.get("/v2/health/ready").status_code == 200  # health stays open
        assert c.post(INFER, json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert (
            c.get("/v2/models/fused-sentiment", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
