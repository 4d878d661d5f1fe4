"""Dataset loaders and splits (read ../shared/data or SENTIMENT_DATA_DIR)."""

from __future__ import annotations

import numpy as np
import pytest

from app.training import data as D

from .conftest import data_dir, require_data

pytestmark = pytest.mark.needs_data


def test_crema_split_is_speaker_independent_and_complete() -> None:
    require_data("crema_d")
    c = D.load_crema(data_dir())
    assert len(c.files) == 7442
    actors = {s: set(c.actors[c.split == s].tolist()) for s in ("train", "val", "test")}
    assert not (actors["train"] & actors["val"]) and not (actors["train"] & actors["test"])
    assert not (actors["val"] & actors["test"])
    assert sum(len(a) for a in actors.values()) == 91
    # the identical-audio pairs of the data README stay within one split (same actor)
    for stem in ("1006_TIE", "1013_WSI", "1017_IWW"):
        rows = [i for i, f in enumerate(c.files) if stem in f]
        assert len(rows) >= 2 and len({c.split[i] for i in rows}) == 1
    assert set(np.unique(c.sentiment[c.emotion == D.CREMA_EMOTIONS.index("HAP")])) == {2}


def test_vader_labels_follow_the_documented_band() -> None:
    require_data("vader_icwsm2014")
    require_data("tweeteval_sentiment")
    assert [D.vader_label(v) for v in (-0.51, -0.5, -0.49, 0.0, 0.49, 0.5, 3.2)] == [0, 0, 1, 1, 1, 2, 2]
    t = D.load_text(data_dir())
    for corpus in ("tweets", "movie", "amazon", "nyt"):
        n = int((t.corpus == corpus).sum())
        n_test = int(((t.corpus == corpus) & (t.split == "test")).sum())
        assert abs(n_test / n - 0.15) < 0.01
    assert int((t.corpus == "tweets").sum()) == 4200


def test_fer_order_and_splits() -> None:
    require_data("fer2013")
    f = D.load_fer(data_dir())
    assert f.images.shape[1:] == (48, 48) and f.images.dtype == np.uint8
    assert int((f.split == "Training").sum()) == 28709 and int((f.split == "PublicTest").sum()) == 3589


def test_tweeteval_keeps_its_official_splits_in_the_text_set() -> None:
    require_data("vader_icwsm2014")
    require_data("tweeteval_sentiment")
    t = D.load_text(data_dir())
    tw = t.corpus == "tweeteval"
    counts = {s: int((tw & (t.split == s)).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 45616, "val": 2000, "test": 12284}
    test_labels = np.bincount(t.labels[tw & (t.split == "test")], minlength=3)
    assert test_labels.tolist() == [3972, 5937, 2375]  # negative / neutral / positive (data README)
    texts = {s: {t.texts[i] for i in np.flatnonzero(tw & (t.split == s))} for s in ("train", "val", "test")}
    assert not (texts["train"] & texts["val"]) and not (texts["train"] & texts["test"])
    assert int((D.load_text(data_dir(), tweeteval=False).corpus == "tweeteval").sum()) == 0


def test_sst_phrases_keep_negations_and_never_a_held_out_movie_snippet() -> None:
    require_data("vader_icwsm2014")
    require_data("sst")
    t = D.load_text(data_dir(), tweeteval=False, sst_phrases=20000)
    sst = np.flatnonzero(t.corpus == "sst")
    assert len(sst) == 20000 and set(t.split[sst].tolist()) == {"train"}
    texts = [t.texts[i] for i in sst]
    assert "The Rock is destined" not in " ".join(texts[:5])  # detokenised, file order, not the first rows
    assert not any(" n't" in x or "``" in x or "-LRB-" in x for x in texts)  # PTB tokens are gone
    # every negation phrase the leakage guard leaves (~9,100 of 12,966) comes first
    assert sum(bool(D.SST_NEGATION.search(x)) for x in texts) > 9000
    # leakage guard: no phrase of 3+ words is part of a VADER movie validation/test snippet
    held = "\n".join(
        D._norm(t.texts[i]) for i in np.flatnonzero((t.corpus == "movie") & (t.split != "train"))
    )
    long_ones = [x for x in texts if len(x.split()) >= 3]
    assert long_ones and not any(D._norm(x) in held for x in long_ones)
    # ... while without the guard a few thousand would be (SST's sentences are VADER's movie snippets)
    raw = D.load_sst_phrases(data_dir(), 20000, 0, exclude_within=[])
    assert sum(D._norm(x) in held for x, _ in raw if len(x.split()) >= 3) > 100
    assert D.sst_detokenize("it does n't work -LRB- really -RRB- .") == "it doesn't work (really)."


def test_emovo_holds_out_whole_speakers_and_leaves_surprise_out() -> None:
    require_data("emovo")
    e = D.load_emovo(data_dir())
    assert len(e.files) == 588
    assert set(e.speakers[e.split == "test"].tolist()) == set(D.EMOVO_TEST_SPEAKERS)
    assert not set(e.speakers[e.split == "train"].tolist()) & set(D.EMOVO_TEST_SPEAKERS)
    assert int((e.emotion < 0).sum()) == 84 and int((e.sentiment < 0).sum()) == 84  # sor
    joy = np.asarray([f.split("/")[-1].startswith("gio-") for f in e.files])
    assert set(e.emotion[joy].tolist()) == {D.CREMA_EMOTIONS.index("HAP")} and set(e.sentiment[joy]) == {2}


def test_urdu_is_a_test_set_only_with_mapped_sentiment() -> None:
    require_data("urdu")
    u = D.load_urdu(data_dir())
    assert len(u.files) == 400 and set(u.split.tolist()) == {"test"}
    assert np.bincount(u.sentiment, minlength=3).tolist() == [200, 100, 100]
