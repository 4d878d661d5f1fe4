"""32 parallel distinct multimodal inputs give exactly the outputs of 32 sequential runs (issue 5 bar).

tests/api has the text-only version; this one mixes modality sets (text / image / audio / all three) in
the same batches, which exercises padding of text to the batch's longest, audio to a length bucket, and
the modality mask of absent modalities.
"""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from app.config import Settings
from app.inference.predictor import Predictor
from app.main import create_app
from tests.media import astronaut, image_bytes, sf_bytes, speech
from tests.robustness.helpers import assert_prediction, probs


def _payload(i: int) -> dict[str, str]:
    payload: dict[str, str] = {}
    if i % 4 in (0, 3):
        payload["text"] = f"request {i} is {'great' if i % 2 else 'awful'} " * (1 + i % 7)
    if i % 4 in (1, 3):
        face = astronaut().crop((8 * (i % 5), 0, 448 + 8 * (i % 5), 512))
        payload["image_base64"] = base64.b64encode(image_bytes(face, "JPEG", quality=90)).decode()
    if i % 4 in (2, 3):
        # speech (the VAD passes it) of several lengths (audio length buckets) and levels
        clip = speech(repeats=1 + i % 3, gain=0.3 + 0.02 * i)
        payload["audio_base64"] = base64.b64encode(sf_bytes(clip, 16_000, "WAV", "PCM_16")).decode()
    return payload


def test_32_parallel_mixed_inputs_equal_sequential(settings: Settings) -> None:
    s = settings.model_copy(update={"warmup": False, "max_batch_size": 8, "max_wait_ms": 30})
    predictor = Predictor(s)
    app = create_app(settings=s, predictor=predictor)
    payloads = [_payload(i) for i in range(32)]

    async def main() -> tuple[list[httpx.Response], list[httpx.Response]]:
        await predictor.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
                parallel = await asyncio.gather(*(http.post("/v1/predict", json=p) for p in payloads))
                sequential = [await http.post("/v1/predict", json=p) for p in payloads]
        finally:
            await predictor.stop()
        return list(parallel), sequential

    parallel, sequential = asyncio.run(main())
    bodies_p = [assert_prediction(r) for r in parallel]
    bodies_s = [assert_prediction(r) for r in sequential]
    assert max(b["timings"]["batch_size"] for b in bodies_p) > 1  # they really were batched together
    assert all(b["timings"]["batch_size"] == 1 for b in bodies_s)
    distinct = {tuple(round(v, 6) for v in probs(b["probabilities"])) for b in bodies_s}
    assert len(distinct) > 24  # distinct inputs, distinct outputs (a mix-up could not hide)
    for p, q in zip(bodies_p, bodies_s, strict=True):
        assert probs(p["probabilities"]) == pytest.approx(probs(q["probabilities"]), abs=1e-5)
        for m in ("text", "image", "audio"):
            assert (p["modalities"][m] is None) == (q["modalities"][m] is None)
            if p["modalities"][m] is not None and q["modalities"][m]["probabilities"] is not None:
                got, want = (
                    probs(p["modalities"][m]["probabilities"]),
                    probs(q["modalities"][m]["probabilities"]),
                )
                assert got == pytest.approx(want, abs=1e-5)
