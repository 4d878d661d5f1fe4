"""Dataset loaders for ``../shared/data`` (read-only) and the split definitions.

Every split is deterministic (fixed seeds) so ``msa train`` reproduces the committed numbers.
Folder layout and licences: ``../shared/data/README.md``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.contract import LABELS

#: Sub-corpora of ``vader_icwsm2014`` (Hutto & Gilbert, ICWSM 2014): name → ground-truth file.
VADER_CORPORA: dict[str, str] = {
    "tweets": "tweets_GroundTruth.txt",
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
#: Mean human rating (−4..+4) → class: rating ≤ −NEUTRAL_BAND → negative, ≥ +NEUTRAL_BAND → positive,
#: otherwise neutral; i.e. neutral ⇔ the mean rounds to 0 on the raters' integer scale.
VADER_NEUTRAL_BAND = 0.5
#: CREMA-D emotion codes in the order of the audio branch's 6-way head.
CREMA_EMOTIONS: tuple[str, ...] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
#: Emotion → sentiment for CREMA-D (issue 2): HAP → positive, NEU → neutral, others → negative.
CREMA_TO_SENTIMENT: dict[str, int] = {"ANG": 0, "DIS": 0, "FEA": 0, "SAD": 0, "NEU": 1, "HAP": 2}
#: FER2013 emotion order (``emotions`` array in the npz; also the mini-Xception output order).
FER_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}


class DataMissingError(FileNotFoundError):
    """A dataset folder is missing from the data directory."""


def require(data_dir: Path, sub: str) -> Path:
    """``data_dir / sub``; raises :class:`DataMissingError` when it does not exist."""
    path = Path(data_dir) / sub
    if not path.exists():
        raise DataMissingError(
            f"dataset folder not found: {path} (pass --data-dir; see ../shared/data/README.md for sources)"
        )
    return path


@dataclass
class TextSet:
    """Labelled texts of all text corpora with their corpus and split names."""

    texts: list[str]
    labels: np.ndarray  # int64 [N] in LABELS order
    corpus: np.ndarray  # str [N]
    split: np.ndarray  # str [N]: train / val / test


def vader_label(mean_rating: float) -> int:
    """Class of a VADER mean human rating (−4..+4): ≤ −0.5 negative (0), ≥ +0.5 positive (2), else neutral
    (1)."""
    if mean_rating <= -VADER_NEUTRAL_BAND:
        return 0
    if mean_rating >= VADER_NEUTRAL_BAND:
        return 2
    return 1


def _random_split(n: int, seed: int, fractions: tuple[float, float] = (0.7, 0.15)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    split = np.empty(n, dtype=object)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    split[order[n_train + n_val :]] = "test"
    return split.astype(str)


def load_text(data_dir: Path, seed: int = 0, tweeteval: bool = True, sst_phrases: int = 0) -> TextSet:
    """VADER ICWSM-2014 (4 sub-corpora, random 70/15/15 split per sub-corpus, seed ``seed``), MELD
    (official train/dev/test split, dev used as validation), with ``tweeteval`` TweetEval sentiment
    (corpus ``tweeteval``: its train / val / test files, SemEval-2017 Task 4A) and, when ``sst_phrases`` > 0,
    that many Stanford Sentiment Treebank train phrases (corpus ``sst``, training rows only:
    :func:`load_sst_phrases`). Raises :class:`DataMissingError` when a folder is missing."""
    texts: list[str] = []
    labels: list[int] = []
    corpus: list[str] = []
    splits: list[np.ndarray] = []
    vdir = require(data_dir, "vader_icwsm2014")
    for k, (name, fname) in enumerate(VADER_CORPORA.items()):
        rows = []
        with open(vdir / fname, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 3 or not parts[2].strip():
                    continue
                rows.append((float(parts[1]), "\t".join(parts[2:]).strip()))
        texts += [t for _, t in rows]
        labels += [vader_label(r) for r, _ in rows]
        corpus += [name] * len(rows)
        splits.append(_random_split(len(rows), seed + k))
    mdir = require(data_dir, "meld_text")
    for fname, split in (
        ("train_sent_emo.csv", "train"),
        ("dev_sent_emo.csv", "val"),
        ("test_sent_emo.csv", "test"),
    ):
        with open(mdir / fname, encoding="utf-8") as fh:
            rows2 = [r for r in csv.DictReader(fh) if r["Utterance"].strip()]
        texts += [r["Utterance"].replace("\u2019", "'").strip() for r in rows2]
        labels += [LABEL_INDEX[r["Sentiment"].strip()] for r in rows2]
        corpus += ["meld"] * len(rows2)
        splits.append(np.array([split] * len(rows2)))
    if tweeteval:
        tdir = require(data_dir, "tweeteval_sentiment")
        for split in ("train", "val", "test"):
            with open(tdir / f"{split}.csv", encoding="utf-8", newline="") as fh:
                rows3 = [r for r in csv.DictReader(fh) if r["text"].strip()]
            texts += [r["text"].strip() for r in rows3]
            labels += [LABEL_INDEX[r["label"]] for r in rows3]
            corpus += ["tweeteval"] * len(rows3)
            splits.append(np.array([split] * len(rows3)))
    if sst_phrases > 0:
        split_all = np.concatenate(splits)
        heldout_movie = [
            t for t, c, sp in zip(texts, corpus, split_all, strict=True) if c == "movie" and sp != "train"
        ]
        phrases = load_sst_phrases(data_dir, sst_phrases, seed, heldout_movie)
        texts += [t for t, _ in phrases]
        labels += [lab for _, lab in phrases]
        corpus += ["sst"] * len(phrases)
        splits.append(np.array(["train"] * len(phrases)))
    return TextSet(texts, np.asarray(labels, dtype=np.int64), np.asarray(corpus), np.concatenate(splits))


def with_examples(ts: TextSet, corpus: str, examples: list[tuple[str, int]]) -> TextSet:
    """``ts`` plus labelled ``examples`` (text, label index) as training rows of corpus ``corpus``."""
    return TextSet(
        ts.texts + [t for t, _ in examples],
        np.concatenate([ts.labels, np.asarray([lab for _, lab in examples], dtype=np.int64)]),
        np.concatenate([ts.corpus, np.asarray([corpus] * len(examples))]),
        np.concatenate([ts.split, np.asarray(["train"] * len(examples))]),
    )


#: Sentiment-neutral object emoji of :func:`punctuation_variants` (the behavioural suite's train-half ones and
#: more; none of the held-out half's, so its trailing-emoji test still measures generalisation).
NEUTRAL_EMOJI: tuple[str, ...] = ("📦", "🚌", "📅", "🏠", "📷", "🔑", "🚗", "✏️", "📌", "🧾")
_TRAILING_MARKS = re.compile(r"[.!]+$")
#: Corpora :func:`punctuation_variants` never draws from: the templated rows, and the tweets, where "!" and
#: emoji are part of how the sentiment is written (a run that also drew from them scored TweetEval test
#: macro-F1 0.682: docs/model.md, "Text expert recipe").
PUNCTUATION_EXCLUDED: tuple[str, ...] = ("checklist", "tweeteval", "tweets")


def punctuation_variants(ts: TextSet, n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` label-keeping variants of random TRAIN-split texts of ``ts`` (CheckList's INV perturbations as
    data augmentation): the trailing run of '.' / '!' replaced by another of "", ".", "!", "!!!", and in 3
    of 10 variants a trailing neutral emoji (:data:`NEUTRAL_EMOJI`). Texts ending in '?' (a question mark
    changes the sentence type), texts of fewer than four words or not ending in a letter or digit (before
    the marks), and rows of :data:`PUNCTUATION_EXCLUDED` are not drawn. Deterministic for
    ``seed``; returns (text, label index) pairs, at most ``n``."""
    rng = np.random.default_rng([seed, 17])
    pool = np.flatnonzero((ts.split == "train") & ~np.isin(ts.corpus, PUNCTUATION_EXCLUDED))
    out: list[tuple[str, int]] = []
    for i in rng.permutation(pool):
        if len(out) == n:
            break
        text = ts.texts[int(i)].rstrip()
        if not text or text.endswith("?"):
            continue
        core = _TRAILING_MARKS.sub("", text).rstrip()
        if len(core.split()) < 4 or not core[-1].isalnum():  # sentences, not SST fragments, quotes or tags
            continue
        options = [m for m in ("", ".", "!", "!!!") if core + m != text]
        variant = core + options[int(rng.integers(len(options)))]
        if rng.random() < 0.3:
            variant += " " + NEUTRAL_EMOJI[int(rng.integers(len(NEUTRAL_EMOJI)))]
        out.append((variant, int(ts.labels[int(i)])))
    return out


#: Negation cues of :func:`load_sst_phrases` (matches PTB "does n't" and plain "doesn't").
SST_NEGATION = re.compile(
    r"\b(not|no|never|nothing|none|nobody|neither|nor|hardly|barely|without|lacks?|fails?)\b|n't\b", re.I
)


def sst_detokenize(ptb: str) -> str:
    """Plain text of a PTB-tokenised SST phrase (``-LRB-`` → "(", then NLTK's ``TreebankWordDetokenizer``:
    "does n't" → "doesn't", ``` `` ``` / ``''`` → '"')."""
    from nltk.tokenize.treebank import TreebankWordDetokenizer  # noqa: PLC0415 (training extra)

    tokens = ptb.replace("-LRB-", "(").replace("-RRB-", ")").split()
    return str(TreebankWordDetokenizer().detokenize(tokens))


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def load_sst_phrases(data_dir: Path, n: int, seed: int, exclude_within: list[str]) -> list[tuple[str, int]]:
    """``n`` labelled phrases (detokenised text, label3 index) of the Stanford Sentiment Treebank's TRAIN
    trees (``sst/phrases.csv``; Socher et al., EMNLP 2013): every phrase with a negation cue
    (:data:`SST_NEGATION`, the composition signal the treebank is known for) and a seeded random sample of
    the rest, in file order; phrases without a letter (punctuation, numbers) are left out.

    Leakage guard: SST's sentences are the Rotten Tomatoes snippets of Pang & Lee, as are 9,496 of VADER's
    10,605 movie snippets (matched after lower-casing and dropping non-alphanumerics), so phrases of three
    or more tokens contained in any text of ``exclude_within`` (VADER movie's validation and test rows) are
    dropped; one- and two-token phrases are vocabulary and kept. Raises :class:`DataMissingError`."""
    with open(require(data_dir, "sst") / "phrases.csv", encoding="utf-8", newline="") as fh:
        rows = [
            (r["text"], LABEL_INDEX[r["label3"]])
            for r in csv.DictReader(fh)
            if re.search("[A-Za-z]", r["text"])
        ]
    haystack = "\n".join(_norm(t) for t in exclude_within)
    rows = [(t, lab) for t, lab in rows if len(t.split()) < 3 or _norm(t) not in haystack]
    negated = np.asarray([bool(SST_NEGATION.search(t)) for t, _ in rows])
    keep = np.where(negated)[0]
    rest = np.where(~negated)[0]
    if len(keep) > n:
        keep = np.random.default_rng(seed).choice(keep, n, replace=False)
    elif n > len(keep):
        extra = np.random.default_rng(seed).choice(rest, min(n - len(keep), len(rest)), replace=False)
        keep = np.concatenate([keep, extra])
    return [(sst_detokenize(rows[i][0]), rows[i][1]) for i in np.sort(keep)]


@dataclass
class CremaSet:
    """CREMA-D clips: file paths, actor ids, emotion and sentiment class, actor-disjoint split."""

    files: list[str]
    actors: np.ndarray  # int [N]
    emotion: np.ndarray  # int [N] index into CREMA_EMOTIONS
    sentiment: np.ndarray  # int [N]
    split: np.ndarray  # str [N]


def crema_actor_split(actors: np.ndarray, seed: int = 0) -> dict[int, str]:
    """Speaker-independent split: the 91 actors shuffled with ``seed``, 70 % / 15 % / 15 % train/val/test."""
    uniq = np.unique(actors)
    rng = np.random.default_rng(seed)
    order = rng.permutation(uniq)
    n_train, n_val = int(round(0.7 * len(uniq))), int(round(0.15 * len(uniq)))
    out = {}
    for i, a in enumerate(order):
        out[int(a)] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
    return out


def load_crema(data_dir: Path, seed: int = 0) -> CremaSet:
    """CREMA-D from ``crema_d/clips.csv`` with the actor split of :func:`crema_actor_split` (seed ``seed``).
    Raises :class:`DataMissingError`."""
    cdir = require(data_dir, "crema_d")
    with open(cdir / "clips.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    actors = np.asarray([int(r["actor"]) for r in rows])
    amap = crema_actor_split(actors, seed)
    emo = np.asarray([CREMA_EMOTIONS.index(r["emotion"]) for r in rows], dtype=np.int64)
    sent = np.asarray([CREMA_TO_SENTIMENT[r["emotion"]] for r in rows], dtype=np.int64)
    return CremaSet(
        files=[str(cdir / r["file"]) for r in rows],
        actors=actors,
        emotion=emo,
        sentiment=sent,
        split=np.asarray([amap[int(a)] for a in actors]),
    )


#: EMOVO emotion codes → CREMA-D codes of the audio head; ``sor`` (surprise) has no class there and is
#: left out of training and of the 3-class scores (its sentiment is ambiguous: ../shared/data/README.md).
EMOVO_TO_CREMA: dict[str, str] = {
    "dis": "DIS",
    "gio": "HAP",
    "neu": "NEU",
    "pau": "FEA",
    "rab": "ANG",
    "tri": "SAD",
}
#: EMOVO speakers held out of training (one female, one male): the cross-corpus test speakers.
EMOVO_TEST_SPEAKERS: tuple[str, ...] = ("f3", "m3")
#: URDU emotion → sentiment class (angry, sad → negative; neutral; happy → positive).
URDU_TO_SENTIMENT: dict[str, int] = {"Angry": 0, "Sad": 0, "Neutral": 1, "Happy": 2}


@dataclass
class SpeechSet:
    """Clips of a second speech corpus (EMOVO or URDU): files, speakers, emotion index into
    ``CREMA_EMOTIONS`` (−1 where the corpus' emotion has no class there), sentiment class, split."""

    files: list[str]
    speakers: np.ndarray  # str [N]
    emotion: np.ndarray  # int64 [N], −1 = no CREMA-D class
    sentiment: np.ndarray  # int64 [N], −1 = ambiguous (EMOVO surprise)
    split: np.ndarray  # str [N]: train / test


def load_emovo(data_dir: Path) -> SpeechSet:
    """EMOVO (Italian, acted, 6 speakers): speakers :data:`EMOVO_TEST_SPEAKERS` are ``test``, the other four
    ``train``; emotions mapped by :data:`EMOVO_TO_CREMA`. Raises :class:`DataMissingError`."""
    edir = require(data_dir, "emovo")
    with open(edir / "clips.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    emo = [EMOVO_TO_CREMA.get(r["emotion"]) for r in rows]
    return SpeechSet(
        files=[str(edir / r["file"]) for r in rows],
        speakers=np.asarray([r["speaker"] for r in rows]),
        emotion=np.asarray([CREMA_EMOTIONS.index(e) if e else -1 for e in emo], dtype=np.int64),
        sentiment=np.asarray([CREMA_TO_SENTIMENT[e] if e else -1 for e in emo], dtype=np.int64),
        split=np.asarray(["test" if r["speaker"] in EMOVO_TEST_SPEAKERS else "train" for r in rows]),
    )


def load_urdu(data_dir: Path) -> SpeechSet:
    """URDU (natural talk-show Urdu, 400 clips), all ``test``: emotion is confounded with speaker, so the
    corpus is only a cross-corpus test set (../shared/data/README.md). Raises :class:`DataMissingError`."""
    udir = require(data_dir, "urdu")
    with open(udir / "clips.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    crema = {"Angry": "ANG", "Sad": "SAD", "Neutral": "NEU", "Happy": "HAP"}
    return SpeechSet(
        files=[str(udir / r["file"]) for r in rows],
        speakers=np.asarray([r["speaker"] for r in rows]),
        emotion=np.asarray([CREMA_EMOTIONS.index(crema[r["emotion"]]) for r in rows], dtype=np.int64),
        sentiment=np.asarray([URDU_TO_SENTIMENT[r["emotion"]] for r in rows], dtype=np.int64),
        split=np.asarray(["test"] * len(rows)),
    )


@dataclass
class FerSet:
    """FER2013 faces uint8 [N, 48, 48] with emotion labels and split (Training / PublicTest)."""

    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray  # int64 [N] index into FER_EMOTIONS
    split: np.ndarray  # str [N]: Training / PublicTest


def load_fer(data_dir: Path) -> FerSet:
    """FER2013 Training + PublicTest from its npz. Raises :class:`DataMissingError`, or ``ValueError`` for an
    unexpected emotion order."""
    fdir = require(data_dir, "fer2013")
    z = np.load(fdir / "fer2013_training_publictest.npz", allow_pickle=False)
    emotions = tuple(str(e) for e in z["emotions"])
    if emotions != FER_EMOTIONS:
        raise ValueError(f"unexpected FER2013 emotion order {emotions}")
    return FerSet(z["images"], z["labels"].astype(np.int64), z["split"].astype(str))


@dataclass
class MvsaSet:
    """MVSA-Single image+text pairs with text, image and combined labels (-1 = none) and a split."""

    ids: list[str]
    images: list[str]
    texts: list[str]
    text_label: np.ndarray
    image_label: np.ndarray
    combined_label: np.ndarray  # -1 for "inconsistent"
    split: np.ndarray


def load_mvsa(data_dir: Path, seed: int = 0) -> MvsaSet:
    """MVSA-Single pairs with a random 60/20/20 train/val/test split (seed ``seed``)."""
    mdir = require(data_dir, "mvsa_single")
    with open(mdir / "labels.csv", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))

    def lab(s: str) -> int:
        return LABEL_INDEX.get(s.strip(), -1)

    split = _random_split(len(rows), seed + 100, (0.6, 0.2))
    return MvsaSet(
        ids=[r["id"] for r in rows],
        images=[str(mdir / r["image"]) for r in rows],
        texts=[r["text"] for r in rows],
        text_label=np.asarray([lab(r["text_label"]) for r in rows]),
        image_label=np.asarray([lab(r["image_label"]) for r in rows]),
        combined_label=np.asarray([lab(r["combined_label"]) for r in rows]),
        split=split,
    )
