"""Compare language-identification libraries whose model ships inside the PyPI package.

``python -m benchmarks.language_id [--candidate NAME] [--tweets N]`` measures, per candidate, in a fresh
subprocess each: import + model load time (s) and the process's peak RSS growth (MiB); top-1 accuracy on
``tests/data/languages/foreign.json`` (16 languages × 10 tweet-like sentences written for the test); the rate
of "not English" top-1 answers on ``tests/data/languages/english_hard.txt`` (113 English texts with foreign
names, loanwords, slang, hashtags, mentions, URLs, emoji) and on the first ``--tweets`` TweetEval test
tweets (``$SENTIMENT_DATA_DIR`` or ``../shared/data``, skipped if absent); and single-thread ms per text.

Candidates (install them yourself; only ``py3langid`` is a service dependency): ``py3langid`` (all 140
labels of its model, on the raw text; and ``py3langid-restricted``: as the service's gate runs it, on
:func:`app.preprocessing.language.clean_text` output with two-letter labels only), ``lingua`` (the
``lingua-language-detector`` package, all 75 languages, low- and high-accuracy mode) and ``langdetect``
(seeded: it is random otherwise). fastText's lid.176 is not in its package (a download) and is not a
candidate. Results of the run on the 2-core development VM are in docs/model.md ("Language gate").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("py3langid", "py3langid-restricted", "lingua-low", "lingua-high", "langdetect")


def _detector(name: str) -> Any:
    """A callable text → ISO 639-1 code (lower case) for the candidate ``name``."""
    if name == "py3langid-restricted":  # as the service runs it: cleaned text, two-letter labels only
        from app.preprocessing.language import LanguageGate, clean_text

        gate = LanguageGate(["en"])
        return lambda text: gate.detect(clean_text(text))[0] if clean_text(text) else "??"
    if name == "py3langid":
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return lambda text: ident.classify(text)[0]
    if name.startswith("lingua"):
        from lingua import LanguageDetectorBuilder

        builder = LanguageDetectorBuilder.from_all_languages()
        if name.endswith("low"):
            builder = builder.with_low_accuracy_mode()
        detector = builder.with_preloaded_language_models().build()

        def lingua_detect(text: str) -> str:
            lang = detector.detect_language_of(text)
            return "??" if lang is None else lang.iso_code_639_1.name.lower()

        return lingua_detect
    if name == "langdetect":
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException

        DetectorFactory.seed = 0

        def langdetect_detect(text: str) -> str:
            try:
                return str(detect(text)).split("-")[0]
            except LangDetectException:
                return "??"

        return langdetect_detect
    raise ValueError(name)


def _tweets(limit: int) -> list[str]:
    data = Path(os.environ.get("SENTIMENT_DATA_DIR", ROOT.parent / "shared" / "data"))
    path = data / "tweeteval_sentiment" / "test.csv"
    if not path.is_file() or limit <= 0:
        return []
    with path.open(encoding="utf-8") as fh:
        return [row["text"] for _, row in zip(range(limit), csv.DictReader(fh), strict=False)]


def measure(name: str, tweets: int) -> dict[str, Any]:
    """Run one candidate in this process; the numbers as a dict."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    detect = _detector(name)
    detect("warm up")
    load_s = time.perf_counter() - t0
    rss_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    foreign = json.loads((ROOT / "tests/data/languages/foreign.json").read_text(encoding="utf-8"))
    english = (ROOT / "tests/data/languages/english_hard.txt").read_text(encoding="utf-8").splitlines()
    wrong: dict[str, list[str]] = {}
    n_foreign = hits = 0
    t0 = time.perf_counter()
    for lang, texts in foreign.items():
        for text in texts:
            got = detect(text)
            n_foreign += 1
            hits += got == lang
            if got != lang:
                wrong.setdefault(lang, []).append(got)
    not_en = [t for t in english if detect(t) != "en"]
    tweet_texts = _tweets(tweets)
    tweet_not_en = sum(detect(t) != "en" for t in tweet_texts)
    ms = 1e3 * (time.perf_counter() - t0) / (n_foreign + len(english) + len(tweet_texts))
    return {
        "candidate": name,
        "load_s": round(load_s, 2),
        "rss_growth_mib": round(rss_mib, 1),
        "foreign_top1_accuracy": round(hits / n_foreign, 3),
        "foreign_wrong": wrong,
        "english_hard_not_en": f"{len(not_en)}/{len(english)}",
        "english_hard_not_en_examples": not_en[:12],
        "tweeteval_not_en": f"{tweet_not_en}/{len(tweet_texts)}",
        "ms_per_text": round(ms, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.language_id", description=__doc__)
    p.add_argument("--candidate", choices=CANDIDATES, help="measure only this one (in this process)")
    p.add_argument("--tweets", type=int, default=1000, help="TweetEval test tweets to run (default 1000)")
    args = p.parse_args(argv)
    if args.candidate:
        print(json.dumps(measure(args.candidate, args.tweets), ensure_ascii=False))
        return 0
    for name in CANDIDATES:
        cmd = [sys.executable, "-m", "benchmarks.language_id", "--candidate", name]
        cmd += ["--tweets", str(args.tweets)]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        print(out.stdout.strip() or f'{{"candidate": "{name}", "error": {json.dumps(out.stderr[-300:])}}}')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
