"""``POST /v1/predict/batch``: order, equality with single requests, per-item errors, whole-request limits."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.media import face_jpeg, no_face_png

LABELS = ("negative", "neutral", "positive")

TWEETS = [
    f"{word} day number {i}, what a {adj} time"
    for i, (word, adj) in enumerate(
        (w, a)
        for w in ("great", "awful", "good", "bad", "lovely", "terrible", "nice", "sad")
        for a in ("wonderful", "horrible", "fine", "boring", "happy", "painful", "calm", "crazy")
    )
]


@pytest.fixture(scope="module")
def batch_client(settings: Settings) -> Iterator[TestClient]:
    small = settings.model_copy(update={"max_batch_items": 64})
    with TestClient(create_app(settings=small), raise_server_exceptions=False) as c:
        yield c


def test_64_tweets_are_answered_in_order_with_the_single_request_probabilities(
    batch_client: TestClient,
) -> None:
    assert len(set(TWEETS)) == 64
    r = batch_client.post("/v1/predict/batch", json={"items": [{"text": t} for t in TWEETS]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 64
    for tweet, item in zip(TWEETS, results, strict=True):
        assert item["status"] == 200 and item["error"] is None
        single = batch_client.post("/v1/predict", json={"text": tweet}).json()
        for label in LABELS:
            assert item["result"]["probabilities"][label] == pytest.approx(
                single["probabilities"][label], abs=1e-6
            )
        assert item["result"]["modalities"]["text"]["characters"] == len(tweet)


def test_the_items_are_batched_together(batch_client: TestClient) -> None:
    r = batch_client.post("/v1/predict/batch", json={"items": [{"text": t} for t in TWEETS[:32]]})
    sizes = [item["result"]["timings"]["batch_size"] for item in r.json()["results"]]
    assert max(sizes) > 1


def test_a_bad_item_gets_its_own_error_and_the_others_200(batch_client: TestClient) -> None:
    items = [
        {"text": "what a great day"},
        {"image_base64": "not base64!!"},
        {"text": "\u200b\u200c\u200d"},  # zero-width characters only: no tokens
        {"text": "I hate this"},
        {},
        {"txt": "typo"},
        {"text": 5},
        {"text": "ok", "image_base64": base64.b64encode(face_jpeg()).decode()},
    ]
    r = batch_client.post("/v1/predict/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 422, 422, 200, 422, 422, 422, 200]
    types = [x["error"]["type"] if x["error"] else None for x in results]
    assert types == [
        None,
        "validation_error",
        "invalid_input",
        None,
        "missing_modality",
        "validation_error",
        "validation_error",
        None,
    ]
    assert "base64" in results[1]["error"]["message"]
    assert "txt" in results[5]["error"]["message"]
    assert results[7]["result"]["modalities"]["image"]["used"] is True
    for x in results:
        assert (x["result"] is None) == (x["status"] != 200)


def test_a_duplicate_key_in_one_item_is_that_items_error(batch_client: TestClient) -> None:
    body = b'{"items": [{"text": "good"}, {"text": "a", "text": "b"}]}'
    r = batch_client.post("/v1/predict/batch", content=body, headers={"content-type": "application/json"})
    assert [x["status"] for x in r.json()["results"]] == [200, 422]
    assert "more than once: text" in r.json()["results"][1]["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "type_"),
    [
        ({"items": []}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"items": [{"text": "a"}], "extra": 1}, 422, "validation_error"),
        ([{"text": "a"}], 422, "validation_error"),
        ({"items": [{"text": "a"}] * 65}, 413, "payload_too_large"),
    ],
    ids=["empty", "no-items", "extra-field", "not-an-object", "too-many"],
)
def test_whole_request_errors(batch_client: TestClient, body: object, status: int, type_: str) -> None:
    r = batch_client.post("/v1/predict/batch", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["type"] == type_


def test_too_many_items_says_the_limit(batch_client: TestClient) -> None:
    r = batch_client.post("/v1/predict/batch", json={"items": [{"text": "a"}] * 65})
    assert "at most 64 items" in r.json()["error"]["message"]


def test_invalid_json_and_wrong_content_type(batch_client: TestClient) -> None:
    r = batch_client.post(
        "/v1/predict/batch", content=b'{"items": [', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "Invalid JSON" in r.json()["error"]["message"]
    r = batch_client.post("/v1/predict/batch", data={"text": "a"})
    assert r.status_code == 415 and r.json()["error"]["type"] == "unsupported_media_type"


def test_batch_items_are_counted_in_the_metrics(settings: Settings) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with TestClient(create_app(settings=settings)) as c:
        c.post("/v1/predict/batch", json={"items": [{"text": "good"}, {"text": "bad"}, {}]})
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(c.get("/metrics").text)
            for s in f.samples
        }
    assert samples[("sentiment_batch_items_total", (("error_type", "none"), ("status", "200")))] == 2
    assert (
        samples[("sentiment_batch_items_total", (("error_type", "missing_modality"), ("status", "422")))] == 1
    )
    assert samples[("sentiment_preprocess_duration_seconds_count", ())] == 2
    route = (("error_type", "none"), ("method", "POST"), ("route", "/v1/predict/batch"), ("status", "200"))
    assert samples[("sentiment_requests_total", route)] == 1


def test_openapi_documents_the_batch_route(batch_client: TestClient) -> None:
    op = batch_client.get("/openapi.json").json()["paths"]["/v1/predict/batch"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["items"]["minItems"] == 1
    assert "413" in op["responses"] and "200" in op["responses"]
    # The documented example works when "clicked".
    example = op["requestBody"]["content"]["application/json"]["examples"]["tweets"]["value"]
    r = batch_client.post("/v1/predict/batch", json=example)
    assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == [200] * len(
        example["items"]
    )


def test_a_batch_item_without_usable_evidence_has_no_label(batch_client: TestClient) -> None:
    items = [{"image_base64": base64.b64encode(no_face_png()).decode()}, {"text": "what a great day"}]
    r = batch_client.post("/v1/predict/batch", json={"items": items})
    first, second = (x["result"] for x in r.json()["results"])
    assert (
        first["label"] is None
        and first["reason"] == "no_usable_evidence"
        and first["probabilities_are_prior"]
    )
    assert second["label"] is not None and second["reason"] is None and not second["probabilities_are_prior"]
