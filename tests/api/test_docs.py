"""The documentation pages work offline and their examples are real (issue 13, item 1).

``/docs`` and ``/redoc`` reference only this server (their assets are served from the fastapi-offline
wheel); every OpenAPI request example is a body the route accepts; every declared error status shows
examples whose error type really has that status (app.errors.STATUS).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from fastapi.testclient import TestClient

from app.errors import STATUS, ErrorType

BASE = "http://testserver"


class _Urls(HTMLParser):
    """Every ``src``/``href`` attribute, plus ``url:``/``spec-url`` values and url(...) in inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url", "action") and v is not None]

    def handle_data(self, data: str) -> None:
        self.urls += re.findall(r"""\burl\s*[:(]\s*['"]?([^'")\s,]+)""", data)
        self.urls += re.findall(r"""https?://[^\s'")<>]+""", data)


def _urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_no_external_host(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = _urls(r.text)
    assert len(urls) >= 3, urls  # script, favicon, the OpenAPI document (and the CSS on /docs)
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc or parts.netloc == "testserver", url
        # Every referenced path is served by the app itself.
        if url.startswith("/"):
            assert client.get(url).status_code == 200, url


def test_the_url_check_sees_a_cdn(client: TestClient) -> None:
    # The parser itself can fail: FastAPI's default page (CDN assets) has external hosts.
    from fastapi.openapi.docs import get_swagger_ui_html

    default = get_swagger_ui_html(openapi_url="/openapi.json", title="x").body.decode()
    assert any(urlsplit(u).netloc not in ("", "testserver") for u in _urls(default))


@pytest.mark.parametrize(
    ("name", "content_type", "min_bytes"),
    [
        ("swagger-ui-bundle.js", "text/javascript", 500_000),
        ("swagger-ui.css", "text/css", 50_000),
        ("redoc.standalone.js", "text/javascript", 500_000),
        ("favicon.png", "image/png", 500),
    ],
)
def test_docs_assets_are_served(client: TestClient, name: str, content_type: str, min_bytes: int) -> None:
    r = client.get(f"/docs-assets/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == content_type
    assert len(r.content) >= min_bytes


def test_unknown_docs_asset_is_404_in_the_error_schema(client: TestClient) -> None:
    r = client.get("/docs-assets/..%2Fcore.py")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


def _spec(client: TestClient) -> dict[str, Any]:
    spec: dict[str, Any] = client.get("/openapi.json").json()
    return spec


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the spec's components, so ``$ref: #/components/schemas/...`` resolves."""
    return {**schema, "components": spec.get("components", {})}


def test_json_request_examples_validate_and_are_answered_200(client: TestClient) -> None:
    spec = _spec(client)
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert next(iter(body)) == "application/json"  # Swagger UI's "Try it out" opens on the first one
    examples = body["application/json"]["examples"]
    assert len(examples) >= 2
    for name, example in examples.items():
        jsonschema.validate(example["value"], _resolve(spec, body["application/json"]["schema"]))
        r = client.post("/v1/predict", json=example["value"])
        assert r.status_code == 200, (name, r.text)


def test_predict_response_examples_validate_against_the_schema(client: TestClient) -> None:
    spec = _spec(client)
    schema = spec["components"]["schemas"]["PredictResponse"]
    examples = schema["examples"]
    # one with a label, one without evidence (FastAPI drops null values from examples: label is absent)
    assert {e.get("label") for e in examples} == {"positive", None}
    for example in examples:
        jsonschema.validate(example, _resolve(spec, schema))
    wrong = {**examples[1], "label": "tie"}  # the check can fail
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, _resolve(spec, schema))


def test_the_no_usable_evidence_example_is_what_the_service_answers(client: TestClient) -> None:
    spec = _spec(client)
    request = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    answer = client.post("/v1/predict", json=request["image_without_face"]["value"]).json()
    example = spec["components"]["schemas"]["PredictResponse"]["examples"][1]
    for key in ("label", "reason", "probabilities_are_prior"):
        assert answer[key] == example.get(key)
    face = {k: v for k, v in answer["modalities"]["image"]["face"].items() if v is not None}
    assert face == example["modalities"]["image"]["face"]


def test_multipart_example_validates_and_is_answered_200(client: TestClient) -> None:
    spec = _spec(client)
    form = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    # What Swagger UI fills in: each property's example (file fields stay empty and are not sent).
    fields = {k: v["example"] for k, v in form["schema"]["properties"].items() if "example" in v}
    assert fields
    jsonschema.validate(fields, form["schema"])
    r = client.post("/v1/predict", data=fields, files={"image": ("", b"", "application/octet-stream")})
    assert r.status_code == 200, r.text


def test_a_wrong_example_fails_the_schema_check(client: TestClient) -> None:
    # The check can fail: the form's state carried into JSON mode is not a valid JSON body.
    spec = _spec(client)
    schema = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"text": "good", "image": ""}, _resolve(spec, schema))


def _error_responses(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", status, response)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        for status, response in op.get("responses", {}).items()
        if status[0] in "45"
    ]


def test_every_error_status_has_examples_whose_type_has_that_status(client: TestClient) -> None:
    spec = _spec(client)
    declared = _error_responses(spec)
    assert len(declared) >= 10
    error_schema = _resolve(spec, {"$ref": "#/components/schemas/ErrorResponse"})
    for route, status, response in declared:
        examples = response["content"]["application/json"]["examples"]
        assert examples, (route, status)
        for example in examples.values():
            jsonschema.validate(example["value"], error_schema)
            type_ = ErrorType(example["value"]["error"]["type"])
            assert STATUS[type_] == int(status), (route, status, type_)
    predict = spec["paths"]["/v1/predict"]["post"]["responses"]
    assert set(predict["413"]["content"]["application/json"]["examples"]) == {
        "payload_too_large",
        "input_too_large",
    }
    assert "missing_modality" in predict["422"]["content"]["application/json"]["examples"]


def test_error_responses_refuses_a_status_no_error_type_has() -> None:
    from app.api.errors import error_responses

    with pytest.raises(ValueError, match="418"):
        error_responses(418)
