"""``GET /metrics``: Prometheus text format, and counters and histograms that move by exactly the traffic.

Each test builds a fresh app (its own registry), so counts start at zero and tests cannot see each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.config import Settings
from app.main import create_app
from tests.media import no_face_png


@pytest.fixture
def fresh(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings=settings), raise_server_exceptions=False) as c:
        yield c


def _samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


STAGES = ("preprocess", "queue", "inference")


def test_metrics_parse_and_name_the_model(fresh: TestClient) -> None:
    samples = _samples(fresh)
    info = [labels for (name, labels) in samples if name == "sentiment_model_info"]
    assert len(info) == 1
    assert dict(info[0]) == {
        "name": "fused-sentiment",
        "version": "1",
        "execution_provider": "CPUExecutionProvider",
    }
    assert _value(samples, "sentiment_batcher_queue_depth") == 0
    assert _value(samples, "sentiment_batcher_items_in_flight") == 0
    assert _value(samples, "sentiment_inflight_request_bytes") == 0
    assert ("sentiment_preprocess_worker_restarts_total", frozenset()) in samples
    assert _value(samples, "sentiment_preprocess_worker_restarts_total") == 0


@pytest.mark.parametrize("n", [1, 5])
def test_counters_and_histograms_move_by_exactly_n_requests(fresh: TestClient, n: int) -> None:
    before = _samples(fresh)
    for i in range(n):
        assert fresh.post("/v1/predict", json={"text": f"what a great day {i}"}).status_code == 200
    after = _samples(fresh)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    ok = {"route": "/v1/predict", "method": "POST", "status": "200", "error_type": "none"}
    assert moved("sentiment_requests_total", **ok) == n
    for stage in STAGES:
        assert moved(f"sentiment_{stage}_duration_seconds_count") == n
        assert moved(f"sentiment_{stage}_duration_seconds_sum") >= 0
    assert moved("sentiment_batch_size_count") == n
    assert moved("sentiment_expert_used_total", expert="text") == n
    assert not [k for k in after if k[0] == "sentiment_expert_abstained_total"]


def test_errors_are_counted_by_route_status_and_type(fresh: TestClient) -> None:
    zero_width = "\u200b\u200c\u200d"  # no tokens at all: 422 invalid_input
    assert fresh.post("/v1/predict", json={"text": zero_width}).status_code == 422
    assert fresh.post("/v1/predict", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert fresh.get("/no/such/route/123").status_code == 404
    samples = _samples(fresh)
    route = {"route": "/v1/predict", "method": "POST"}
    assert _value(samples, "sentiment_requests_total", **route, status="422", error_type="invalid_input") == 1
    assert (
        _value(
            samples, "sentiment_requests_total", **route, status="415", error_type="unsupported_media_type"
        )
        == 1
    )
    unmatched = {"route": "unmatched", "method": "GET", "status": "404", "error_type": "not_found"}
    assert _value(samples, "sentiment_requests_total", **unmatched) == 1
    # Raw paths never become label values; a failed preprocessing records no stage times.
    assert not [k for k in samples if ("route", "/no/such/route/123") in k[1]]
    assert _value(samples, "sentiment_preprocess_duration_seconds_count") == 0


def test_an_image_without_a_face_counts_as_an_abstention_with_reason_no_face(fresh: TestClient) -> None:
    r = fresh.post("/v1/predict", data={"text": "ok"}, files={"image": ("x.png", no_face_png(), "image/png")})
    assert r.status_code == 200 and r.json()["modalities"]["image"]["used"] is False
    samples = _samples(fresh)
    assert _value(samples, "sentiment_expert_abstained_total", expert="face", reason="no_face") == 1
    assert _value(samples, "sentiment_expert_used_total", expert="face") == 0
    assert _value(samples, "sentiment_expert_used_total", expert="text") == 1


def test_two_apps_in_one_process_keep_separate_counts(settings: Settings, fresh: TestClient) -> None:
    with TestClient(create_app(settings=settings)) as other:
        other.post("/v1/predict", json={"text": "good"})
        assert _value(_samples(other), "sentiment_preprocess_duration_seconds_count") == 1
    assert _value(_samples(fresh), "sentiment_preprocess_duration_seconds_count") == 0


def test_metrics_need_the_api_key_when_one_is_set(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_key": SecretStr("s3cret")})
    with TestClient(create_app(settings=keyed)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_body_refused_before_routing_is_counted_under_its_route(settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 1024})
    with TestClient(create_app(settings=small)) as c:
        assert c.post("/v1/predict", json={"text": "a" * 2000}).status_code == 413
        samples = _samples(c)
    labels = {"route": "/v1/predict", "method": "POST", "status": "413", "error_type": "payload_too_large"}
    assert _value(samples, "sentiment_requests_total", **labels) == 1
