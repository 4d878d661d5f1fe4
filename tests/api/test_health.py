"""Health, readiness, model info, OpenAPI, overload (429), API key, request ids."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.config import Settings
from app.inference.predictor import Predictor
from app.main import create_app
from tests.gated import GatedModel


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_routes_answer_head_like_get_without_a_body(client: TestClient, path: str) -> None:
    """Load balancers and uptime checkers often probe with HEAD: same status and headers, no body."""
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_readyz_after_startup_reports_model_and_provider(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "model": "fused-sentiment",
        "version": "1",
        "execution_provider": "CPUExecutionProvider",
    }


def test_models_lists_contract_inputs_and_verified_provider(client: TestClient) -> None:
    info = client.get("/v1/models").json()["models"][0]
    assert info["name"] == "fused-sentiment" and info["version"] == "1"
    assert info["labels"] == ["negative", "neutral", "positive"]
    assert [i["name"] for i in info["inputs"]] == [
        "input_ids",
        "attention_mask",
        "face",
        "audio_features",
        "audio_mask",
        "modality_mask",
    ]
    assert info["execution_provider"] == "CPUExecutionProvider"
    assert info["active_providers"] == ["CPUExecutionProvider"]


def test_openapi_documents_both_bodies_and_error_responses(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/predict"]["post"]
    content = op["requestBody"]["content"]
    assert set(content["multipart/form-data"]["schema"]["properties"]) == {"text", "image", "audio"}
    assert content["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    example = content["application/json"]["examples"]["positive_text"]["value"]
    assert {"400", "413", "415", "422", "429", "503"} <= set(op["responses"])
    assert "ErrorResponse" in op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    # The documented JSON example works when "clicked".
    r = client.post("/v1/predict", json=example)
    assert r.status_code == 200
    assert client.get("/docs").status_code == 200


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert generated != "bad id with spaces" and len(generated) == 32


def test_require_gpu_on_cpu_fallback_is_not_ready_with_reason(settings: Settings) -> None:
    gpu = settings.model_copy(
        update={"require_gpu": True, "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
    )
    with TestClient(create_app(settings=gpu), raise_server_exceptions=False) as c:
        providers = c.get("/v1/models").json()["models"][0]["active_providers"]
        if "CUDAExecutionProvider" in providers:
            pytest.skip("a working CUDA provider is present")
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "not_ready"
        assert "CUDA" in r.json()["error"]["message"]
        assert c.head("/readyz").status_code == 503
        assert c.post("/v1/predict", json={"text": "hi"}).status_code == 503


def test_api_key_required_when_configured(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_key": SecretStr("s3cret"), "warmup": False})
    with TestClient(create_app(settings=keyed), raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", json={"text": "hi"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        assert c.post("/v1/predict", json={"text": "hi"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/predict", json={"text": "hi"}, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert (
            c.post("/v1/predict", json={"text": "hi"}, headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
        assert c.get("/readyz").status_code == 200  # health routes stay open


def test_missing_model_fails_startup(settings: Settings, tmp_path: Any) -> None:
    from app.inference.repository import ModelLoadError

    with (
        pytest.raises(ModelLoadError),
        TestClient(create_app(settings=settings.model_copy(update={"model_dir": tmp_path}))),
    ):
        pass


def test_full_queue_returns_429_with_retry_after(settings: Settings) -> None:
    small = settings.model_copy(
        update={"queue_size": 1, "max_batch_size": 1, "max_wait_ms": 0, "warmup": False, "batch_workers": 1}
    )
    model = GatedModel(small)
    predictor = Predictor(small, model=model)
    app = create_app(settings=small, predictor=predictor)
    gate, running = threading.Event(), threading.Event()

    async def until(condition: Any) -> None:  # a fixed sleep was too short under CPU load (1 of 17 runs)
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    async def main() -> list[httpx.Response]:
        await predictor.start()
        model.hold(gate, running)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = asyncio.create_task(http.post("/v1/predict", json={"text": "one"}))  # running, blocked
            await until(running.is_set)
            second = asyncio.create_task(http.post("/v1/predict", json={"text": "two"}))  # queued
            await until(lambda: predictor.batcher.queued == 1)
            third = await http.post("/v1/predict", json={"text": "three"})  # queue full
            gate.set()
            responses = [await first, await second, third]
        await predictor.stop()
        return responses

    first, second, third = asyncio.run(main())
    assert first.status_code == 200 and second.status_code == 200
    assert third.status_code == 429
    assert third.json()["error"]["type"] == "overloaded"
    assert int(third.headers["Retry-After"]) >= 1


def _gated_app(settings: Settings, **overrides: Any) -> tuple[Any, Predictor, GatedModel, threading.Event]:
    s = settings.model_copy(update={"warmup": False, **overrides})
    model = GatedModel(s)
    predictor = Predictor(s, model=model)
    return create_app(settings=s, predictor=predictor), predictor, model, threading.Event()


def test_deadline_exceeded_returns_504(settings: Settings) -> None:
    app, predictor, model, gate = _gated_app(settings, request_timeout_s=0.2)

    async def main() -> httpx.Response:
        await predictor.start()
        model.hold(gate)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            r = await http.post("/v1/predict", json={"text": "slow"})
        gate.set()
        await predictor.stop()
        return r

    r = asyncio.run(main())
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"


def test_image_pixel_limits_return_413(settings: Settings) -> None:
    from tests.media import astronaut, face_jpeg, image_bytes

    # A baseline JPEG has its own limit (it is decoded at reduced size); other formats keep max_image_pixels.
    small = settings.model_copy(update={"max_image_pixels": 10_000, "warmup": False})
    with TestClient(create_app(settings=small), raise_server_exceptions=False) as c:
        png = c.post("/v1/predict", files={"image": ("big.png", image_bytes(astronaut()), "image/png")})
        jpeg = c.post("/v1/predict", files={"image": ("big.jpg", face_jpeg(), "image/jpeg")})
    assert png.status_code == 413 and png.json()["error"]["type"] == "input_too_large"
    assert jpeg.status_code == 200, jpeg.text
    smaller = small.model_copy(update={"max_jpeg_pixels": 10_000})
    with TestClient(create_app(settings=smaller), raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", files={"image": ("big.jpg", face_jpeg(), "image/jpeg")})
    assert r.status_code == 413 and r.json()["error"]["type"] == "input_too_large"
    assert "baseline JPEG limit of 10000" in r.json()["error"]["message"]


def test_streamed_body_without_content_length_is_cut_at_the_limit(
    client: TestClient, settings: Settings
) -> None:
    sent = 0

    def chunks() -> Any:
        nonlocal sent
        for _ in range(settings.max_body_bytes // 65536 + 10):
            sent += 65536
            yield b"x" * 65536

    r = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"


def test_parallel_requests_batch_and_match_sequential_results(settings: Settings) -> None:
    s = settings.model_copy(update={"warmup": False, "max_batch_size": 8, "max_wait_ms": 20})
    predictor = Predictor(s)
    app = create_app(settings=s, predictor=predictor)
    texts = [f"sample number {i} is {'good' if i % 2 else 'bad'} " * (1 + i % 5) for i in range(32)]

    async def main() -> tuple[list[httpx.Response], list[httpx.Response]]:
        await predictor.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            parallel = await asyncio.gather(*(http.post("/v1/predict", json={"text": t}) for t in texts))
            sequential = [await http.post("/v1/predict", json={"text": t}) for t in texts]
        await predictor.stop()
        return list(parallel), sequential

    parallel, sequential = asyncio.run(main())
    assert all(r.status_code == 200 for r in parallel + sequential)
    assert max(int(r.headers["X-Batch-Size"]) for r in parallel) > 1
    assert all(int(r.headers["X-Batch-Size"]) <= 8 for r in parallel)
    for p, q in zip(parallel, sequential, strict=True):
        for label in ("negative", "neutral", "positive"):
            assert p.json()["probabilities"][label] == pytest.approx(
                q.json()["probabilities"][label], abs=1e-5
            )
