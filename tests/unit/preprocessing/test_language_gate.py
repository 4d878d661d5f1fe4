"""The text expert's language gate (app/preprocessing/language.py): the bars of issue 16 on sentences written
for the test (tests/data/languages), the rule's edge cases, its wiring into prepare_text / build_pipeline,
and thread safety."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.config import REPO_ROOT
from app.contract import ModelContract
from app.preprocessing.experts import UNSUPPORTED_LANGUAGE, Resources, TokenFacts, prepare_text
from app.preprocessing.language import LanguageGate, clean_text, foreign_script_letters
from app.preprocessing.text import load_tokenizer

DATA = Path(__file__).resolve().parents[2] / "data" / "languages"
FOREIGN: dict[str, list[str]] = json.loads((DATA / "foreign.json").read_text(encoding="utf-8"))
ENGLISH = (DATA / "english_hard.txt").read_text(encoding="utf-8").splitlines()
TOKENIZER = REPO_ROOT / "models" / "fused-sentiment" / "tokenizer.json"
#: Languages whose script alone decides; the detector must also name them exactly.
NON_LATIN = ("ru", "ar", "zh", "hi", "ja", "ko")


@pytest.fixture(scope="module")
def gate() -> Iterator[LanguageGate]:
    yield LanguageGate(["en"])


def test_the_sets_are_the_size_the_bars_need() -> None:
    assert len(FOREIGN) >= 10 and all(len(texts) == 10 for texts in FOREIGN.values())
    assert len(ENGLISH) >= 100 and len(set(ENGLISH)) == len(ENGLISH)


def test_foreign_sentences_are_refused_at_least_95_percent(gate: LanguageGate) -> None:
    verdicts = {lang: [gate.assess(t) for t in texts] for lang, texts in FOREIGN.items()}
    refused = sum(not v.supported for vs in verdicts.values() for v in vs)
    total = sum(len(vs) for vs in verdicts.values())
    used = [
        (lang, t)
        for lang, texts in FOREIGN.items()
        for t, v in zip(texts, verdicts[lang], strict=True)
        if v.supported
    ]
    assert refused / total >= 0.95, used
    for lang in NON_LATIN:  # script rule: every one refused, named right
        assert all(not v.supported and v.language == lang for v in verdicts[lang]), (lang, verdicts[lang])
    for vs in verdicts.values():
        for v in vs:
            assert v.language is not None and len(v.language) == 2 and v.language != "en"
            assert v.confidence is not None and 0.0 <= v.confidence <= 1.0


def test_english_with_names_loanwords_slang_and_emoji_is_used_at_least_98_percent(gate: LanguageGate) -> None:
    refused = [t for t in ENGLISH if not gate.assess(t).supported]
    assert 1 - len(refused) / len(ENGLISH) >= 0.98, refused


@pytest.mark.parametrize(
    "text",
    [
        "ok",
        "lol",
        "omg!!!",
        "https://t.co/abc123",
        "#MondayMotivation",
        "😍 gracias",
        "@maria_lopez 🎉🎉",
        "HA HA HA HA HA #hahahaha",
        "Merci beaucoup!",
        "ciao bella",
        "Bonjour Paris!",
        "I love 北京 so much",
        "Ich bin ein Berliner, said JFK in 1963 and everyone cheered",
    ],
)
def test_short_ambiguous_or_mostly_english_text_is_used(gate: LanguageGate, text: str) -> None:
    assert gate.assess(text).supported


def test_an_unsupported_language_becomes_supported_when_the_model_declares_it() -> None:
    text = FOREIGN["de"][0]
    assert not LanguageGate(["en"]).assess(text).supported
    verdict = LanguageGate(["en", "de"]).assess(text)
    assert verdict.supported and verdict.language == "de"


def test_clean_text_drops_urls_mentions_hashtags_and_non_letters() -> None:
    assert clean_text("@bob see https://x.co/a?b=1 #fun 100% 😂 great!!") == "see great"
    assert clean_text("mail me: a.b@example.org ok") == "mail me ok"
    assert foreign_script_letters(clean_text("I love 北京")) == (2, 7)


def test_no_letters_means_no_language_and_used(gate: LanguageGate) -> None:
    verdict = gate.assess("😂😂 123 !!!")
    assert verdict.supported and verdict.language is None and verdict.confidence is None


def test_assess_is_thread_safe_and_deterministic(gate: LanguageGate) -> None:
    texts = [t for ts in FOREIGN.values() for t in ts] + ENGLISH
    sequential = [gate.assess(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(gate.assess, texts)) == sequential


@pytest.mark.skipif(not TOKENIZER.is_file(), reason="bundled tokenizer not committed")
def test_prepare_text_refuses_with_the_detected_language_and_keeps_english() -> None:
    tokenizer = load_tokenizer(TOKENIZER)
    resources = Resources(tokenizer, None, LanguageGate(["en"]))  # type: ignore[arg-type]  # text needs no VAD
    arabic = prepare_text(FOREIGN["ar"][0], resources)
    assert not arabic.used and arabic.reason == UNSUPPORTED_LANGUAGE
    assert isinstance(arabic.facts, TokenFacts) and arabic.facts.language == "ar"
    assert arabic.facts.language_confidence is not None and arabic.facts.language_confidence > 0.5
    english = prepare_text("What a wonderful day in Kyoto with Tanaka-san!", resources)
    assert english.used and english.reason is None and english.facts.language == "en"
    ungated = prepare_text(FOREIGN["ar"][0], Resources(tokenizer, None))  # type: ignore[arg-type]
    assert ungated.used and ungated.facts.language is None


def test_contract_carries_the_text_experts_languages() -> None:
    assert ModelContract.from_config({}).expert("text").languages == ("en",)
    assert ModelContract.from_config({}).expert("audio").languages == ()
    assert ModelContract.from_config({"languages": {"text": ["en", "de"]}}).expert("text").languages == (
        "en",
        "de",
    )
    entry = {"name": "text", "modality": "text", "inputs": ["input_ids", "attention_mask"], "languages": []}
    assert ModelContract.from_config({"experts": [entry]}).expert("text").languages == ()
    shipped = json.loads((REPO_ROOT / "models" / "fused-sentiment" / "config.json").read_text("utf-8"))
    assert ModelContract.from_config(shipped).expert("text").languages == ("en",)
