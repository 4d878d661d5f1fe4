"""The text expert's punctuation / emoji augmentation (app.training.data.punctuation_variants)."""

from __future__ import annotations

import numpy as np

from app.training import data as D


def _text_set() -> D.TextSet:
    texts = [
        "The hotel was really great.",
        "Worst flight I have ever taken!!!",
        "Is the new menu any good at all?",
        "Short one.",
        "The meeting is on Monday",
        "I hated every single minute of it!",
        "I doubt the pizza was good.",
        'She said it was "fine"',
    ]
    labels = np.asarray([2, 0, 1, 1, 1, 0, 1, 1])
    corpus = np.asarray(["movie"] * 6 + ["checklist", "tweeteval"])
    split = np.asarray(["train", "train", "train", "train", "train", "test", "train", "train"])
    return D.TextSet(texts, labels, corpus, split)


def test_variants_keep_the_label_and_change_only_the_end() -> None:
    ts = _text_set()
    variants = D.punctuation_variants(ts, 100, seed=0)
    # drawn: the three sentences of >= 4 words, in the train split, not templated, not a question, ending
    # in a letter or digit before the marks
    assert len(variants) == 3
    originals = {ts.texts[i].rstrip(".!"): (ts.texts[i], int(ts.labels[i])) for i in (0, 1, 4)}
    for text, label in variants:
        head, _, last = text.rpartition(" ")
        body = head if last in D.NEUTRAL_EMOJI else text
        core = body.rstrip(".!")
        original, original_label = originals[core]
        assert label == original_label
        assert text != original
        assert body[len(core) :] in ("", ".", "!", "!!!")


def test_variants_are_deterministic_and_capped() -> None:
    ts = _text_set()
    assert D.punctuation_variants(ts, 2, seed=3) == D.punctuation_variants(ts, 2, seed=3)
    assert len(D.punctuation_variants(ts, 2, seed=3)) == 2
    assert D.punctuation_variants(ts, 0, seed=3) == []
