"""The model card's held-out text macro-F1s (config ``metrics.text.heldout``: tweets, movie, amazon, nyt,
meld, TweetEval) are what the committed graph answers for text-only requests, i.e. what ``python -m
eval.text_heldout`` and ``python -m eval.text_tweeteval models/fused-sentiment --split test`` measure: the
text expert's probabilities after its temperature and the prior shift to π, not its raw logits' argmax
(which differs by up to 0.009 on these splits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.text_heldout import served_heldout
from tests.e2e.test_real_model import MODEL_FILE

pytestmark = [
    pytest.mark.skipif(not MODEL_FILE.is_file(), reason=f"{MODEL_FILE} not committed yet"),
    pytest.mark.slow,
    pytest.mark.needs_data,
]


def tolerance(n_test: int) -> float:
    """Allowed |card − measured| macro-F1: near-tie argmax flips between the card's run and this one (another
    intra-op thread count) move a split of ``n_test`` rows by about 1/n each; three flips, at least 0.003."""
    return max(0.003, 3.0 / n_test)


def test_card_heldout_text_numbers_are_the_served_text_only_answer(data_dir: Path) -> None:
    model_dir = MODEL_FILE.parents[1]
    card = json.loads((model_dir / "config.json").read_text("utf-8"))["metrics"]["text"]["heldout"]
    measured = served_heldout(model_dir, data_dir, seed=0)
    assert set(card) <= set(measured)
    for corpus, c in card.items():
        m = measured[corpus]
        assert m["n_test"] == c["n_test"], corpus
        assert abs(m["model_macro_f1"] - c["model_macro_f1"]) <= tolerance(c["n_test"]), (corpus, m, c)
        assert abs(m["model_accuracy"] - c["model_accuracy"]) <= tolerance(c["n_test"]), (corpus, m, c)
