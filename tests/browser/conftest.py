"""Browser tests: Debian's Chromium driven by Playwright for Python against a live ``msa serve``.

Never a browser download (no ``playwright install``): the browser is :data:`CHROMIUM`, the Debian
``chromium`` package that ``.ci/run`` installs. Without it the tests skip, except under
``SENTIMENT_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where a skipped ``browser`` test is a failure
(tests/conftest.py). Screenshots go to :data:`ARTIFACTS` (gitignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from app.config import REPO_ROOT
from tests.robustness.server import Server, running_server

CHROMIUM = Path("/usr/bin/chromium")
#: The service's own bundled model, as tests/e2e uses it.
MODEL_ROOT = REPO_ROOT / "models"
ARTIFACTS = REPO_ROOT / "test-artifacts"
#: Headless, and nothing that talks to Google's or any other host on its own.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Chromium's fake camera (a test pattern) and microphone (a beep), granted without a prompt.
FAKE_MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
#: How long a wait (a locator action, an ``expect``) may take: generous, for a loaded 2-core machine.
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="package")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``msa serve`` with the bundled model on a free port (tests/robustness/server.py)."""
    if not (MODEL_ROOT / "fused-sentiment" / "1" / "model.onnx").is_file():
        pytest.skip(f"the bundled model is not in {MODEL_ROOT}")
    with running_server(MODEL_ROOT, tmp_path_factory.mktemp("browser-server")) as server:
        yield server


# Package scope, not session: while Playwright's sync API is open, its event loop counts as running in the
# main thread, and every later test's ``asyncio.run`` would fail ("cannot be called from a running event
# loop"). Closing it after the last browser test gives the rest of the suite a clean thread.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


def _launch(playwright: Playwright, extra: list[str]) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + extra)


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = _launch(playwright, [])
    yield b
    b.close()


@pytest.fixture(scope="package")
def media_browser(playwright: Playwright) -> Iterator[Browser]:
    """A browser with a fake camera and microphone (webcam snapshot and recording tests)."""
    b = _launch(playwright, FAKE_MEDIA_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def external_requests(page: Page) -> list[str]:
    """Every request the page makes to another host (should stay empty)."""
    seen: list[str] = []
    local = ("http://127.0.0.1:", "blob:", "data:")
    page.on("request", lambda r: None if r.url.startswith(local) else seen.append(r.url))
    return seen


#: Lines for the end of the pytest run (screenshot paths, what the browser recorded).
SUMMARY: list[str] = []


def note(line: str) -> None:
    """Print ``line`` in pytest's terminal summary (once per distinct line)."""
    if line not in SUMMARY:
        SUMMARY.append(line)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG under :data:`ARTIFACTS`; its path is printed at the end of the run."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    note(f"screenshot: {path}")
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("browser tests")
        for line in SUMMARY:
            terminalreporter.write_line(line)
