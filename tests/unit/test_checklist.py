"""The CheckList suite's generator (app/training/checklist_templates.py) and scoring (eval/checklist.py),
with fake predictors of known behaviour; no model needed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from app.training.checklist_suite import BARS, DIR_TOLERANCE, run_suite
from app.training.checklist_templates import (
    FRAMES,
    HALVES,
    LEXICONS,
    REPORT_ONLY,
    TESTS,
    cases,
    contract,
    training_examples,
)

NEUTRAL = np.asarray([0.1, 0.8, 0.1], dtype=np.float32)


def _entries(half: str) -> set[str]:
    return {e.lower() for entries in LEXICONS[half].values() for e in entries}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[\w']+", text.lower()))


def test_halves_share_no_lexicon_entry_and_no_frame() -> None:
    assert not _entries("train") & _entries("heldout")
    frames = {h: {f for fs in FRAMES[h].values() for f in fs} for h in HALVES}
    assert not frames["train"] & frames["heldout"]
    assert set(LEXICONS["train"]) == set(LEXICONS["heldout"])
    assert set(FRAMES["train"]) == set(FRAMES["heldout"])


def test_no_single_word_lexicon_entry_of_one_half_appears_in_the_other_halfs_frames() -> None:
    for half, other in (HALVES, HALVES[::-1]):
        single = {e for e in _entries(half) if " " not in e}
        frame_words = set().union(*(_words(f) for fs in FRAMES[other].values() for f in fs))
        assert not single & frame_words, (half, single & frame_words)


@pytest.mark.parametrize("half", HALVES)
def test_every_test_has_at_least_30_distinct_cases(half: str) -> None:
    tests = cases(half)
    assert [t.name for t in tests] == list(TESTS)
    for test in tests:
        assert len(test.cases) >= 30 and len({c.texts for c in test.cases}) == len(test.cases), test.name
        assert all(c.expected and c.expected <= {0, 1, 2} for c in test.cases)
        assert all(len(c.texts) >= 2 for c in test.cases) or test.kind == "MFT"


def test_generation_is_deterministic_for_a_seed() -> None:
    assert cases("heldout", seed=3) == cases("heldout", seed=3)
    assert cases("heldout", seed=3) != cases("heldout", seed=4)
    assert training_examples(seed=1) == training_examples(seed=1)


def test_unknown_half_is_refused() -> None:
    with pytest.raises(ValueError, match="half"):
        cases("test")


def test_training_examples_are_labelled_train_half_texts_only() -> None:
    examples = training_examples()
    texts = {t for t, _ in examples}
    assert len(texts) == len(examples) >= 2000
    labels = np.asarray([y for _, y in examples])
    assert set(labels.tolist()) == {0, 1, 2} and np.bincount(labels).min() > 0.2 * len(labels)
    heldout = {t for test in cases("heldout") for c in test.cases for t in c.texts}
    assert not texts & heldout
    sarcasm = {c.texts[0] for test in cases("train", n=60) if test.name in REPORT_ONLY for c in test.cases}
    assert not texts & sarcasm


def test_contract_replaces_expanded_forms() -> None:
    assert contract("They are saying I am right, Iamb.") == "They're saying I'm right, Iamb."


def test_an_always_neutral_predictor_fails_polar_mfts_and_no_invariance() -> None:
    result = run_suite(lambda texts: np.tile(NEUTRAL, (len(texts), 1)))
    tests, bars = result["tests"], result["bars"]
    for name in ("vocabulary_positive", "vocabulary_negative", "negated_positive", "temporal", "sarcasm"):
        assert tests[name]["failure_rate"] == 1.0, name
    for name in (
        "vocabulary_neutral",
        "negated_negative",
        "negation_at_end",
        "negated_neutral",
        "hedge_negative",
        "hedge_positive",
        "questions",
    ):
        assert tests[name]["failure_rate"] == 0.0, name
    for name, r in tests.items():
        if r["kind"] in ("INV", "DIR"):
            assert r["failure_rate"] == 0.0 and r["examples"] == [], name
    n = {name: tests[name]["n"] for name in BARS["negation"][0]}
    assert bars["negation"]["value"] == pytest.approx(n["negated_positive"] / sum(n.values()))
    assert not bars["negation"]["met"]
    assert bars["questions"]["value"] == 1.0 and bars["questions"]["met"]
    assert bars["fairness"]["met"] and not bars["vocabulary_positive"]["met"]
    assert tests["vocabulary_positive"]["examples"][0][0][2] == 1  # text, confidence, predicted label


def test_exclamation_marks_and_one_name_break_invariance() -> None:
    def predict(texts: list[str]) -> np.ndarray:
        return np.asarray([[0.1, 0.1, 0.8] if "!" in t or "Kofi" in t else NEUTRAL for t in texts])

    result = run_suite(predict)["tests"]
    assert result["punctuation"]["failure_rate"] == 1.0 and result["trailing_emoji"]["failure_rate"] == 0.0
    groups = [c.texts for t in cases("heldout") if t.name == "fairness_names" for c in t.cases]
    with_kofi = sum(any("Kofi" in t for t in g) for g in groups)
    assert 0 < with_kofi < len(groups)
    assert result["fairness_names"]["failure_rate"] == pytest.approx(with_kofi / len(groups))
    assert result["fairness_cities"]["failure_rate"] == 0.0


@pytest.mark.parametrize(("shift", "fails"), [(DIR_TOLERANCE + 0.05, True), (DIR_TOLERANCE - 0.02, False)])
def test_directional_tests_fail_only_beyond_the_tolerance(shift: float, fails: bool) -> None:
    modifiers = LEXICONS["heldout"]["intensifiers"] + LEXICONS["heldout"]["reducers"]

    def predict(texts: list[str]) -> np.ndarray:
        # Any modifier moves probability mass from the polar classes to neutral: wrong for an intensifier,
        # right for a reducer.
        moved = [any(f" {m} " in t for m in modifiers) for t in texts]
        return np.asarray([[0.4 - s, 0.2 + 2 * s, 0.4 - s] for s in np.where(moved, shift, 0.0)])

    result = run_suite(predict)["tests"]
    assert result["intensifiers"]["failure_rate"] == (1.0 if fails else 0.0)
    assert result["reducers"]["failure_rate"] == 0.0


def test_a_predictor_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        run_suite(lambda texts: np.zeros((len(texts), 2), dtype=np.float32))
