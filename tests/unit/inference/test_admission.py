"""Admission control: requests beyond queue + batches + preprocessing threads get 429 at once, even when
preprocessing (not the model) is the bottleneck and the batcher's queue never fills."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from app.config import Settings
from app.inference.admission import AdmissionLimit, admission_limit
from app.inference.batcher import QueueFullError
from app.inference.predictor import Predictor
from app.main import create_app
from app.preprocessing.experts import DEFAULT_EXPERTS, Expert, ExpertInput, Resources, prepare_text


def test_the_limit_refuses_the_next_request_and_frees_its_place_afterwards() -> None:
    limit = AdmissionLimit(2, lambda: 3)
    with limit.admit(), limit.admit():
        with pytest.raises(QueueFullError) as refused, limit.admit():
            pass
        assert refused.value.headers == {"Retry-After": "3"}
    with limit.admit():
        assert limit.active == 1
    assert limit.active == 0


def test_the_limit_counts_queue_batches_and_preprocessing_threads(settings: Settings) -> None:
    s = settings.model_copy(
        update={"queue_size": 5, "max_batch_size": 3, "batch_workers": 2, "preprocess_workers": 4}
    )
    assert admission_limit(s) == 5 + 2 * 3 + 4
    assert admission_limit(s.model_copy(update={"preprocess_processes": 2})) == 5 + 2 * 3 + 4 + 2


def test_slow_preprocessing_sheds_load_with_429_before_the_queue_fills(settings: Settings) -> None:
    holding = threading.Event()  # set after start-up: the readiness probe is not held
    gate = threading.Event()

    def slow_text(text: str, resources: Resources) -> ExpertInput:
        if holding.is_set():
            gate.wait(10)  # the one preprocessing thread is busy (e.g. a huge photo)
        return prepare_text(text, resources)

    s = settings.model_copy(
        update={
            "warmup": False,
            "queue_size": 3,
            "max_batch_size": 1,
            "batch_workers": 1,
            "preprocess_workers": 1,
        }
    )
    predictor = Predictor(s, experts={**DEFAULT_EXPERTS, "text": Expert("text", slow_text)})
    app = create_app(settings=s, predictor=predictor)
    limit = admission_limit(s)  # 3 + 1 × 1 + 1 = 5

    async def main() -> tuple[list[httpx.Response], httpx.Response]:
        await predictor.start()
        holding.set()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
            admitted = [
                asyncio.create_task(http.post("/v1/predict", json={"text": f"n {i}"})) for i in range(limit)
            ]
            while predictor.admission.active < limit:
                await asyncio.sleep(0.01)
            refused = await http.post("/v1/predict", json={"text": "one too many"})
            queued_when_refused = predictor.batcher.queued
            gate.set()
            answers = list(await asyncio.gather(*admitted))
        await predictor.stop()
        assert queued_when_refused == 0  # the batcher's queue was not full: only admission refused it
        return answers, refused

    answers, refused = asyncio.run(main())
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "overloaded"
    assert int(refused.headers["Retry-After"]) >= 1
    # Admitted requests are answered; when their preprocessing ends in a burst the batcher's own queue may
    # still refuse some (429 too): the two bounds are independent.
    statuses = [r.status_code for r in answers]
    assert statuses[0] == 200 and set(statuses) <= {200, 429}, statuses
