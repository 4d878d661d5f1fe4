"""The language gate over English corpora of ../shared/data: it refuses at most 0.5 % of each.

Measured on the whole corpora with ``python -m benchmarks.language_gate --show 30`` (docs/model.md,
"Language gate"): at most 0.14 % (vader tweets, 6 of 4,200, all of them Turkish, Dutch, Norwegian or
Spanish tweets); here the first 2,000 texts of each corpus, to keep the test short.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from app.preprocessing.language import LanguageGate

pytestmark = pytest.mark.needs_data

LIMIT = 2000
MAX_REFUSED = 0.005


def _vader(data: Path, name: str) -> list[str]:
    lines = (data / "vader_icwsm2014" / f"{name}_GroundTruth.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 2)[2] for line in lines if line][:LIMIT]


def _csv(path: Path, column: str) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [row[column] for _, row in zip(range(LIMIT), csv.DictReader(fh), strict=False)]


CORPORA = {
    "vader tweets": lambda d: _vader(d, "tweets"),
    "vader movie": lambda d: _vader(d, "movieReviewSnippets"),
    "vader amazon": lambda d: _vader(d, "amazonReviewSnippets"),
    "vader nyt": lambda d: _vader(d, "nytEditorialSnippets"),
    "meld_text test": lambda d: _csv(d / "meld_text" / "test_sent_emo.csv", "Utterance"),
    "tweeteval test": lambda d: _csv(d / "tweeteval_sentiment" / "test.csv", "text"),
    "sst sentences": lambda d: _csv(d / "sst" / "sentences.csv", "text"),
}


@pytest.fixture(scope="module")
def gate() -> LanguageGate:
    return LanguageGate(["en"])


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_english_corpus_is_almost_never_refused(gate: LanguageGate, data_dir: Path, corpus: str) -> None:
    texts = CORPORA[corpus](data_dir)
    assert len(texts) == LIMIT
    refused = [t for t in texts if not gate.assess(t).supported]
    assert len(refused) / len(texts) <= MAX_REFUSED, refused
