"""Refusal rates of the text expert's language gate (:mod:`app.preprocessing.language`) on test sentences
and English corpora, for the shipped constants and a grid around them.

``python -m benchmarks.language_gate [--grid] [--show N]`` prints, per set, how many texts the gate refuses:
``tests/data/languages/foreign.json`` (16 languages × 10; should all be refused),
``tests/data/languages/english_hard.txt`` (113 English texts with foreign names, loanwords, slang, hashtags,
mentions, URLs, emoji; should all be used) and the English corpora in ``$SENTIMENT_DATA_DIR`` (default
``../shared/data``): vader_icwsm2014 (4 files), meld_text test, tweeteval_sentiment test, sst sentences.
``--show N`` lists up to N refused English texts per corpus; ``--grid`` also sweeps ``MIN_WORDS``,
``MIN_CONFIDENCE`` and ``MAX_ENGLISH_PROBABILITY`` (the script rule is fixed).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from app.preprocessing import language as lang
from app.preprocessing.language import LanguageGate, clean_text, foreign_script_letters

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Features:
    text: str
    words: int
    foreign: int
    letters: int
    language: str
    confidence: float
    english: float


def _rss_mib() -> float:
    """Resident set size of this process in MiB (Linux ``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def corpora(data: Path) -> dict[str, list[str]]:
    """Set name → texts (only the English corpora present under ``data``)."""
    foreign = json.loads((ROOT / "tests/data/languages/foreign.json").read_text("utf-8"))
    sets: dict[str, list[str]] = {
        "foreign (16 languages)": [t for texts in foreign.values() for t in texts],
        "english_hard": (ROOT / "tests/data/languages/english_hard.txt").read_text("utf-8").splitlines(),
    }
    vader = data / "vader_icwsm2014"
    for name in ("tweets", "movieReview", "amazonReview", "nytEditorial"):
        path = vader / f"{name}{'' if name == 'tweets' else 'Snippets'}_GroundTruth.txt"
        if path.is_file():
            lines = path.read_text("utf-8").splitlines()
            sets[f"vader {name}"] = [ln.split("\t", 2)[2] for ln in lines if ln]
    for key, path, column in (
        ("meld_text test", data / "meld_text/test_sent_emo.csv", "Utterance"),
        ("tweeteval test", data / "tweeteval_sentiment/test.csv", "text"),
        ("sst sentences", data / "sst/sentences.csv", "text"),
    ):
        if path.is_file():
            with path.open(encoding="utf-8") as fh:
                sets[key] = [row[column] for row in csv.DictReader(fh)]
    return sets


def features(gate: LanguageGate, text: str) -> Features | None:
    import unicodedata

    cleaned = clean_text(unicodedata.normalize("NFKC", text))
    if not cleaned:
        return None
    language, confidence, english = gate.detect(cleaned)
    foreign, letters = foreign_script_letters(cleaned)
    words = len(set(cleaned.casefold().split()))
    return Features(text, words, foreign, letters, language, confidence, english)


def refused(f: Features | None, supported: frozenset[str], words: int, conf: float, max_en: float) -> bool:
    if f is None:
        return False
    if f.foreign >= lang.MIN_SCRIPT_LETTERS and f.foreign >= lang.MIN_SCRIPT_SHARE * f.letters:
        return f.language not in supported
    return f.words >= words and f.language not in supported and f.confidence >= conf and f.english < max_en


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.language_gate", description=__doc__)
    p.add_argument("--grid", action="store_true")
    p.add_argument("--show", type=int, default=0)
    args = p.parse_args(argv)
    data = Path(os.environ.get("SENTIMENT_DATA_DIR", ROOT.parent / "shared" / "data"))
    rss0, t0 = _rss_mib(), time.perf_counter()
    gate = LanguageGate(["en"])
    gate.assess("warm up")
    print(f"gate built in {time.perf_counter() - t0:.2f} s; RSS {rss0:.0f} -> {_rss_mib():.0f} MiB")
    sample = ["I am very happy today, this is wonderful", "أنا سعيد جدا اليوم، هذا رائع"] * 200
    times = []
    for text in sample:
        t0 = time.perf_counter()
        gate.assess(text)
        times.append(time.perf_counter() - t0)
    print(f"assess: median {1e3 * statistics.median(times):.3f} ms over {len(sample)} texts")
    sets = corpora(data)
    t0 = time.perf_counter()
    feats = {name: [features(gate, t) for t in texts] for name, texts in sets.items()}
    n = sum(len(v) for v in sets.values())
    print(f"{n} texts, {1e3 * (time.perf_counter() - t0) / n:.3f} ms per text (clean + detect)")
    shipped = (lang.MIN_WORDS, lang.MIN_CONFIDENCE, lang.MAX_ENGLISH_PROBABILITY)
    grid = [shipped]
    if args.grid:
        grid += list(itertools.product((3, 4, 5), (0.5, 0.8, 0.9, 0.95, 0.99), (0.01, 0.05, 0.2, 1.01)))
    for words, conf, max_en in grid:
        row = []
        for name, fs in feats.items():
            k = sum(refused(f, gate.supported, words, conf, max_en) for f in fs)
            row.append(f"{name}: {k}/{len(fs)} ({100 * k / len(fs):.2f} %)")
        print(f"MIN_WORDS={words} MIN_CONFIDENCE={conf} MAX_EN={max_en} | " + " | ".join(row))
    for name, fs in feats.items():
        if name.startswith("foreign") or not args.show:
            continue
        bad = [f for f in fs if refused(f, gate.supported, *shipped)]
        for f in bad[: args.show]:
            print(f"  refused [{name}] {f.language} {f.confidence:.3f} en={f.english:.3f}: {f.text!r}")
    foreign = [f for f in feats["foreign (16 languages)"] if not refused(f, gate.supported, *shipped)]
    for f in foreign:
        print(f"  used [foreign] {f and f.language} {f and round(f.confidence, 3)}: {f and f.text!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
