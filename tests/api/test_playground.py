"""The playground page at ``/`` (issue 13, item 5): served from package data, only this server referenced.

The page's behaviour in a real browser is tested in tests/browser/test_playground_browser.py.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.api.playground import ASSETS, read_asset
from tests.api.test_docs import _urls

BASE = "http://testserver/"


def test_root_is_the_playground_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "<textarea" in r.text and 'id="predict"' in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-request-id"]


def test_the_page_references_only_this_server_and_every_reference_is_served(client: TestClient) -> None:
    urls = _urls(client.get("/").text)
    assert {"playground/playground.js", "playground/playground.css", "docs"} <= set(urls)
    for url in urls:
        absolute = urljoin(BASE, url)  # relative URLs: the page works under a proxy path prefix
        assert urlsplit(absolute).netloc == "testserver", url
        assert client.get(absolute).status_code == 200, url


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_assets_are_served_and_name_no_host(client: TestClient, name: str) -> None:
    r = client.get(f"/playground/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"] == ASSETS[name]
    assert r.content == read_asset(name)
    assert not re.search(r"\b(?:https?:)?//[\w.-]+\.[a-z]{2,}", r.text), "an external host"


def test_the_page_posts_to_the_predict_route(client: TestClient) -> None:
    js = client.get("/playground/playground.js").text
    assert 'fetch("v1/predict"' in js  # relative to the page, i.e. <root_path>/v1/predict


@pytest.mark.parametrize("path", ["/playground/index.html", "/playground/../main.py", "/playground/x.js"])
def test_other_names_are_404_in_the_error_schema(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found"


def test_post_to_root_is_405(client: TestClient) -> None:
    r = client.post("/", data={"text": "hi"})
    assert r.status_code == 405
    assert r.json()["error"]["type"] == "method_not_allowed"
