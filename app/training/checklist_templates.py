"""CheckList-style behavioural tests of the text expert (Ribeiro et al., "Beyond Accuracy: Behavioral Testing
of NLP Models with CheckList", ACL 2020), generated from this project's own templates and lexicons.

Two disjoint halves, ``"train"`` and ``"heldout"``: each has its own sentence frames and its own lexicons
(no lexicon entry and no frame is shared), so the held-out bars (``eval/checklist.py``) measure
generalisation, not recall of training templates. Every test has three kinds of case, as in CheckList:

* MFT (minimum functionality): one text and the set of labels that pass.
* INV (invariance): a base text and perturbations; it fails when any predicted label differs from the base's.
* DIR (directional): a base text and a modified one; the probability of the base's class must not fall
  (``direction`` +1, intensifiers) or rise (−1, reducers) by more than a tolerance.

Label conventions (indices of ``app.contract.LABELS``: 0 negative, 1 neutral, 2 positive), after CheckList's
sentiment suite: a negated positive is negative; a negated negative, a negation at the end ("..., but it
wasn't") and a hedged negative ("I wouldn't say ... bad") are *not negative* (neutral or positive pass); a
hedged positive is *not positive*; a negated neutral and a question stay neutral; "used to X, now Y" takes
the label of Y and "others say X, I say Y" the speaker's Y. Multi-label cases train as neutral (every such
set contains neutral). Sarcasm is report-only and never used for training.

Perturbations keep the meaning: trailing emoji are sentiment-neutral objects (📦, ☕ ...) on every base, plus
one emoji of the base's own polarity on polar bases; typos (one adjacent swap) hit the object noun, never
the sentiment word; padding adds neutral factual sentences.
"""

from __future__ import annotations

import re
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

NEG, NEU, POS = 0, 1, 2
NOT_NEG: frozenset[int] = frozenset({NEU, POS})
NOT_POS: frozenset[int] = frozenset({NEG, NEU})
HALVES: tuple[str, str] = ("train", "heldout")
#: Cases per test and half when not asked otherwise (the issue asks for >= 30; 100 gives the pooled bars a
#: resolution of 1 %: e.g. fairness pools 700 groups, punctuation + emoji 200 cases).
N_CASES = 100

Lexicon = dict[str, tuple[str, ...]]

LEXICONS: dict[str, Lexicon] = {
    "train": {
        "pos_adj": (
            "good",
            "great",
            "excellent",
            "wonderful",
            "enjoyable",
            "pleasant",
            "fantastic",
            "amazing",
        ),
        "neg_adj": ("bad", "terrible", "awful", "disappointing", "poor", "boring", "horrible", "unpleasant"),
        "neu": (
            "booked online",
            "paid in cash",
            "mentioned in the newsletter",
            "scheduled for the morning",
            "listed on the website",
            "ordered by my colleague",
            "delivered before noon",
            "in the catalogue",
        ),
        "pos_verb": ("love", "enjoy", "like", "adore"),
        "neg_verb": ("hate", "dislike", "despise", "regret"),
        "objects": (
            "hotel",
            "flight",
            "pizza",
            "movie",
            "service",
            "laptop",
            "concert",
            "app",
            "museum",
            "coffee",
            "book",
            "course",
            "haircut",
            "sandwich",
            "apartment",
            "festival",
        ),
        "days": ("Monday", "Tuesday", "Wednesday"),
        "intensifiers": ("very", "really", "extremely", "incredibly"),
        "reducers": ("somewhat", "slightly", "kind of"),
        "names": (
            "Emma",
            "Olivia",
            "Sophie",
            "Hannah",
            "Priya",
            "Mei",
            "Fatima",
            "Aisha",
            "Liam",
            "Noah",
            "Jack",
            "Oliver",
            "Arjun",
            "Wei",
            "Omar",
            "Kwame",
        ),
        "gender_nouns": ("brother", "sister", "uncle", "aunt", "husband", "wife", "boyfriend", "girlfriend"),
        "cities": ("London", "Paris", "Mumbai", "Lagos", "Toronto", "Sydney", "Cairo", "Shanghai"),
        "countries": ("France", "India", "Nigeria", "Brazil", "Japan", "Canada", "Egypt", "Vietnam"),
        "religions": ("Christian", "Hindu", "Sikh", "Catholic", "Taoist", "Jain"),
        "ethnicities": ("Black", "Asian", "Hispanic", "Arab", "Indigenous"),
        "nationalities": (
            "French",
            "Indian",
            "Nigerian",
            "Brazilian",
            "Japanese",
            "Canadian",
            "Egyptian",
            "Polish",
        ),
        "urls": (
            "https://example.com/review",
            "http://t.co/ab12Cd",
            "www.example.org/post/123",
            "https://bit.ly/3xYz9",
        ),
        "handles": ("@alex_k", "@traveller99", "@foodfan", "@newsdesk"),
        "neu_emoji": ("📦", "🚌", "📅", "🏠"),
        "pos_emoji": ("😊", "👍", "🎉"),
        "neg_emoji": ("😠", "👎", "😢"),
        "padding": (
            "The meeting is on Monday.",
            "I took the bus this morning.",
            "My phone was charging.",
            "The shop opens at nine.",
            "We live on the third floor.",
            "It rained a little yesterday.",
        ),
    },
    "heldout": {
        "pos_adj": (
            "lovely",
            "superb",
            "brilliant",
            "delightful",
            "terrific",
            "outstanding",
            "splendid",
            "marvellous",
        ),
        "neg_adj": (
            "dreadful",
            "mediocre",
            "lousy",
            "dull",
            "frustrating",
            "annoying",
            "pathetic",
            "underwhelming",
        ),
        "neu": (
            "reserved by phone",
            "paid by card",
            "discussed at the meeting",
            "planned for the evening",
            "shown in the brochure",
            "arranged by the office",
            "picked up after lunch",
            "on the agenda",
        ),
        "pos_verb": ("appreciate", "admire", "treasure", "value"),
        "neg_verb": ("loathe", "detest", "resent", "abhor"),
        "objects": (
            "restaurant",
            "menu",
            "show",
            "phone",
            "hostel",
            "album",
            "workshop",
            "delivery",
            "game",
            "podcast",
            "tour",
            "jacket",
            "lecture",
            "ferry",
            "update",
            "salad",
        ),
        "days": ("Thursday", "Friday", "Saturday", "Sunday"),
        "intensifiers": ("truly", "exceptionally", "remarkably", "particularly"),
        "reducers": ("mildly", "a little", "moderately", "fairly"),
        "names": (
            "Isabella",
            "Charlotte",
            "Amelia",
            "Zoe",
            "Ananya",
            "Yuki",
            "Leila",
            "Nia",
            "James",
            "William",
            "Henry",
            "Daniel",
            "Rahul",
            "Hiroshi",
            "Karim",
            "Kofi",
        ),
        "gender_nouns": (
            "father",
            "mother",
            "son",
            "daughter",
            "grandfather",
            "grandmother",
            "nephew",
            "niece",
        ),
        "cities": ("Madrid", "Chicago", "Nairobi", "Seoul", "Istanbul", "Lima", "Karachi", "Dublin"),
        "countries": ("Germany", "Kenya", "Mexico", "Pakistan", "Indonesia", "Spain", "Turkey", "Ireland"),
        "religions": ("Muslim", "Jewish", "Buddhist", "atheist", "Protestant", "Mormon"),
        "ethnicities": ("White", "Latino", "Roma", "Middle Eastern", "Native American"),
        "nationalities": (
            "German",
            "Kenyan",
            "Mexican",
            "Pakistani",
            "Indonesian",
            "Spanish",
            "Turkish",
            "Chilean",
        ),
        "urls": (
            "https://example.net/p/77",
            "http://tinyurl.com/y8k2m",
            "www.sample.io/blog",
            "https://goo.gl/Qw7rT",
        ),
        "handles": ("@maria_r", "@daily_commute", "@techguy42", "@citywatch"),
        "neu_emoji": ("☕", "🚲", "📎", "🧳"),
        "pos_emoji": ("😀", "❤️", "🙌"),
        "neg_emoji": ("😡", "😞", "🙄"),
        "padding": (
            "The office closes at six.",
            "We parked near the station.",
            "My cousin lives in another town.",
            "The train leaves at noon.",
            "There is a bakery on the corner.",
            "I wrote this on a Sunday.",
        ),
    },
}

#: Sentence frames. Slots: {obj} {adj} {verb} {day}; {a1}/{a2} and {v1}/{v2} for two opposite polarities;
#: {identity} for fairness terms. ``adj`` frames take positive, negative or neutral fillers.
FRAMES: dict[str, Lexicon] = {
    "train": {
        "adj": ("The {obj} was {adj}.", "I thought the {obj} was {adj}.", "Honestly, the {obj} is {adj}."),
        "verb": ("I {verb} the {obj}.", "We {verb} this {obj}."),
        "event": ("The {obj} was {adj}.", "The {obj} arrived on {day}.", "I saw the {obj} on {day}."),
        "negated": ("The {obj} was not {adj}.", "This {obj} is not {adj} at all."),
        "negated_verb": ("I did not {verb} the {obj}.",),
        "negated_event": ("The {obj} was not {adj}.", "The {obj} did not arrive on {day}."),
        "negation_end": (
            "I expected the {obj} to be {adj}, but it wasn't.",
            "People told me the {obj} was {adj}. It wasn't.",
        ),
        "hedge": (
            "I doubt the {obj} was {adj}.",
            "I wouldn't call the {obj} {adj}.",
            "It's not clear that the {obj} was {adj}.",
            "I can't say the {obj} was {adj}.",
            "I'm not certain the {obj} is {adj}.",
            "I don't think the {obj} was especially {adj}.",
            "I'm skeptical that the {obj} is {adj}.",
            "It's debatable whether the {obj} was {adj}.",
            "I wouldn't describe the {obj} as {adj}.",
            "I'm unsure whether the {obj} was really {adj}.",
            "Hard to tell if the {obj} is {adj}.",
            "I'd hesitate to call the {obj} {adj}.",
            "I don't think the {obj} was that {adj}.",
            "Unsure if the {obj} is so {adj}.",
            "Doubt the {obj} was {adj}, to be honest.",
        ),
        "temporal": ("I used to {v1} the {obj}, now I {v2} it.", "The {obj} used to be {a1}, now it's {a2}."),
        "perspective": (
            "Others say the {obj} is {a1}, but I think it is {a2}.",
            "People claim the {obj} is {a1}. I say it is {a2}.",
        ),
        "question": ("Is the {obj} worth it?", "Was the {obj} {adj}?"),
        "sarcasm": ("Oh great, the {obj} was {adj} again.", "Love how the {obj} is always so {adj}."),
        "contraction": (
            "I have heard the {obj} is {adj}.",
            "It is true that the {obj} was {adj}.",
            "We are told the {obj} is {adj}.",
        ),
        "fair_name": ("{identity} said the {obj} was {adj}.", "According to {identity}, the {obj} is {adj}."),
        "fair_noun": (
            "My {identity} said the {obj} was {adj}.",
            "According to my {identity}, the {obj} is {adj}.",
        ),
        "fair_adjective": (
            "My {identity} neighbour said the {obj} was {adj}.",
            "A {identity} student told me the {obj} is {adj}.",
        ),
        "fair_place": (
            "The {obj} we tried in {identity} was {adj}.",
            "Back in {identity}, the {obj} was {adj}.",
        ),
    },
    "heldout": {
        "adj": (
            "Overall, the {obj} turned out {adj}.",
            "In my opinion this {obj} is {adj}.",
            "The {obj} we got yesterday was {adj}.",
        ),
        "verb": ("We both {verb} the new {obj}.", "My family and I {verb} that {obj}."),
        "event": ("The {obj} is {adj}.", "The {obj} is booked for {day}.", "They moved the {obj} to {day}."),
        "negated": ("The {obj} we got was not {adj}.", "In my opinion, this {obj} isn't {adj}."),
        "negated_verb": ("We don't {verb} the new {obj}.",),
        "negated_event": ("The {obj} isn't {adj}.", "The {obj} is not booked for {day}."),
        "negation_end": (
            "Everyone warned me the {obj} would be {adj}, but it wasn't.",
            "I was sure the {obj} would be {adj}; it was not.",
        ),
        "hedge": (
            "I wouldn't say the {obj} was {adj}.",
            "I'm not convinced the {obj} is {adj}.",
            "Not sure the {obj} was all that {adj}.",
        ),
        "temporal": (
            "I used to {v1} this {obj}, but these days I {v2} it.",
            "The {obj} was {a1} last year; now it is {a2}.",
        ),
        "perspective": (
            "My friends find the {obj} {a1}; I find it {a2}.",
            "Critics called the {obj} {a1}, but to me it was {a2}.",
        ),
        "question": (
            "Is the {obj} any better now?",
            "Do you think the {obj} is {adj}?",
            "How was the {obj} on {day}?",
        ),
        "sarcasm": (
            "Just what I needed: the {obj} was {adj} again.",
            "Brilliant, another {adj} {obj}. Thanks a lot.",
        ),
        "contraction": (
            "I am certain the {obj} is {adj}.",
            "You are right that the {obj} was {adj}.",
            "They are saying the {obj} is {adj}.",
        ),
        "fair_name": ("{identity} told us the {obj} was {adj}.", "Ask {identity}: the {obj} is {adj}."),
        "fair_noun": (
            "My {identity} thinks the {obj} is {adj}.",
            "Our {identity} mentioned the {obj} was {adj}.",
        ),
        "fair_adjective": (
            "The {identity} couple next door wrote that the {obj} was {adj}.",
            "Our {identity} guide thought the {obj} was {adj}.",
        ),
        "fair_place": (
            "When we were in {identity}, the {obj} was {adj}.",
            "The {obj} we had in {identity} was {adj}.",
        ),
    },
}

#: Expanded form → contraction (both halves; INV "contraction" swaps them).
CONTRACTIONS: dict[str, str] = {
    "I have": "I've",
    "It is": "It's",
    "We are": "We're",
    "I am": "I'm",
    "You are": "You're",
    "They are": "They're",
}
#: Fairness test → (lexicon of identity terms, frame family).
FAIRNESS: dict[str, tuple[str, str]] = {
    "fairness_names": ("names", "fair_name"),
    "fairness_gender": ("gender_nouns", "fair_noun"),
    "fairness_cities": ("cities", "fair_place"),
    "fairness_countries": ("countries", "fair_place"),
    "fairness_religions": ("religions", "fair_adjective"),
    "fairness_ethnicities": ("ethnicities", "fair_adjective"),
    "fairness_nationalities": ("nationalities", "fair_adjective"),
}
_POOLS = {"adj": ("neg_adj", "neu", "pos_adj"), "verb": ("neg_verb", "", "pos_verb")}


@dataclass(frozen=True)
class Case:
    """One test case: ``texts`` (MFT: one text; INV: base first, then perturbations or identity swaps; DIR:
    base, modified) and ``expected`` (MFT: the labels that pass; INV/DIR: the base's label)."""

    texts: tuple[str, ...]
    expected: frozenset[int]


@dataclass(frozen=True)
class Test:
    """A CheckList test: ``kind`` is "MFT", "INV" or "DIR"; ``direction`` (DIR only) +1 means the base
    class's probability must not fall, −1 that it must not rise."""

    name: str
    capability: str
    kind: str
    cases: tuple[Case, ...]
    direction: int = 0


class _Half:
    def __init__(self, half: str, rng: np.random.Generator) -> None:
        self.lex, self.frames, self.rng = LEXICONS[half], FRAMES[half], rng

    def pick(self, seq: tuple[str, ...]) -> str:
        return seq[int(self.rng.integers(len(seq)))]

    def fill(
        self, frame: str, pol: int = NEU, fixed: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str]]:
        """The frame with every open slot drawn from this half's lexicons (adj/verb of polarity ``pol``)."""
        values = dict(fixed or {})
        for _, slot, _, _ in string.Formatter().parse(frame):
            if slot and slot not in values:
                pool = _POOLS[slot][pol] if slot in _POOLS else {"obj": "objects", "day": "days"}[slot]
                values[slot] = self.pick(self.lex[pool])
        return frame.format(**values), values

    def base(self, pol: int) -> tuple[str, dict[str, str]]:
        """A vocabulary sentence of polarity ``pol`` (ends with '.'): opinion frames for polar fillers,
        plain factual frames for neutral ones."""
        frames = self.frames["event"] if pol == NEU else self.frames["adj"] + self.frames["verb"]
        return self.fill(self.pick(frames), pol)

    def polarity(self) -> int:
        return int(self.rng.integers(3))


def _mft(
    frame_key: str, pol: int | Callable[[_Half], int], expected: frozenset[int] | None = None
) -> Callable[[_Half], Case]:
    def make(h: _Half) -> Case:
        p = pol if isinstance(pol, int) else pol(h)
        return Case((h.fill(h.pick(h.frames[frame_key]), p)[0],), expected or frozenset({p}))

    return make


def _vocab(pol: int) -> Callable[[_Half], Case]:
    return lambda h: Case((h.base(pol)[0],), frozenset({pol}))


def _negated_neutral(h: _Half) -> Case:
    return Case((h.fill(h.pick(h.frames["negated_event"]), NEU)[0],), frozenset({NEU}))


def _negated(pol: int, expected: frozenset[int]) -> Callable[[_Half], Case]:
    return lambda h: Case((h.fill(h.pick(h.frames["negated"] + h.frames["negated_verb"]), pol)[0],), expected)


def _contrast(key: str) -> Callable[[_Half], Case]:
    """Two opposite polarities in one sentence; the label is the second one's (later state, speaker's)."""

    def make(h: _Half) -> Case:
        second = POS if h.rng.random() < 0.5 else NEG
        first = 2 - second
        fixed = {
            "a1": h.pick(h.lex[_POOLS["adj"][first]]),
            "a2": h.pick(h.lex[_POOLS["adj"][second]]),
            "v1": h.pick(h.lex[_POOLS["verb"][first]]),
            "v2": h.pick(h.lex[_POOLS["verb"][second]]),
        }
        return Case((h.fill(h.pick(h.frames[key]), fixed=fixed)[0],), frozenset({second}))

    return make


def _inv(perturb: Callable[[_Half, str, dict[str, str], int], tuple[str, ...]]) -> Callable[[_Half], Case]:
    def make(h: _Half) -> Case:
        pol = h.polarity()
        text, values = h.base(pol)
        return Case((text, *perturb(h, text, values, pol)), frozenset({pol}))

    return make


def _emoji(h: _Half, text: str, _v: dict[str, str], pol: int) -> tuple[str, ...]:
    same = () if pol == NEU else (f"{text} {h.pick(h.lex[('neg_emoji', '', 'pos_emoji')[pol]])}",)
    return (f"{text} {h.pick(h.lex['neu_emoji'])}", *same)


def _typo(h: _Half, text: str, values: dict[str, str], _p: int) -> tuple[str, ...]:
    """One adjacent-character swap inside the object noun (never the sentiment word)."""
    obj = values["obj"]
    spots = [i for i in range(len(obj) - 1) if obj[i] != obj[i + 1]]
    i = spots[int(h.rng.integers(len(spots)))]
    return (text.replace(obj, obj[:i] + obj[i + 1] + obj[i] + obj[i + 2 :], 1),)


def _padding(h: _Half, text: str, _v: dict[str, str], _p: int) -> tuple[str, ...]:
    a, b, c = (str(s) for s in h.rng.choice(h.lex["padding"], 3, replace=False))
    return (f"{a} {text}", f"{text} {b}", f"{a} {b} {text} {c}")


def contract(text: str) -> str:
    """``text`` with every expanded form of :data:`CONTRACTIONS` replaced by its contraction."""
    return re.sub("|".join(rf"\b{k}\b" for k in CONTRACTIONS), lambda m: CONTRACTIONS[m.group(0)], text)


def _contraction(h: _Half) -> Case:
    pol = h.polarity()
    text = h.fill(h.pick(h.frames["contraction"]), pol)[0]
    return Case((text, contract(text)), frozenset({pol}))


def _fairness(lexicon: str, family: str) -> Callable[[_Half], Case]:
    """One frame and filler, the identity term swapped across up to 6 terms of ``lexicon``."""

    def make(h: _Half) -> Case:
        pol, terms = h.polarity(), h.lex[lexicon]
        frame = h.pick(h.frames[family])
        _, values = h.fill(frame, pol, {"identity": ""})
        chosen = h.rng.choice(len(terms), min(6, len(terms)), replace=False)
        texts = tuple(frame.format(**{**values, "identity": terms[int(i)]}) for i in chosen)
        return Case(texts, frozenset({pol}))

    return make


def _dir(modifiers: str) -> Callable[[_Half], Case]:
    def make(h: _Half) -> Case:
        pol = POS if h.rng.random() < 0.5 else NEG
        frame = h.pick(h.frames["adj"])
        text, values = h.fill(frame, pol)
        modified = frame.replace("{adj}", "{mod} {adj}").format(mod=h.pick(h.lex[modifiers]), **values)
        return Case((text, modified), frozenset({pol}))

    return make


#: name → (capability, kind, case maker, DIR direction), in report order.
TESTS: dict[str, tuple[str, str, Callable[[_Half], Case], int]] = {
    "vocabulary_positive": ("vocabulary", "MFT", _vocab(POS), 0),
    "vocabulary_negative": ("vocabulary", "MFT", _vocab(NEG), 0),
    "vocabulary_neutral": ("vocabulary", "MFT", _vocab(NEU), 0),
    "intensifiers": ("vocabulary", "DIR", _dir("intensifiers"), 1),
    "reducers": ("vocabulary", "DIR", _dir("reducers"), -1),
    "negated_positive": ("negation", "MFT", _negated(POS, frozenset({NEG})), 0),
    "negated_negative": ("negation", "MFT", _negated(NEG, NOT_NEG), 0),
    "negation_at_end": ("negation", "MFT", _mft("negation_end", NEG, NOT_NEG), 0),
    "negated_neutral": ("negation", "MFT", _negated_neutral, 0),
    "hedge_negative": ("hedges", "MFT", _mft("hedge", NEG, NOT_NEG), 0),
    "hedge_positive": ("hedges", "MFT", _mft("hedge", POS, NOT_POS), 0),
    "temporal": ("temporal", "MFT", _contrast("temporal"), 0),
    "perspective": ("perspective", "MFT", _contrast("perspective"), 0),
    "questions": ("questions", "MFT", _mft("question", _Half.polarity, frozenset({NEU})), 0),
    "sarcasm": ("sarcasm", "MFT", _mft("sarcasm", NEG), 0),
    "punctuation": (
        "robustness",
        "INV",
        _inv(lambda _h, t, _v, _p: (t[:-1] + "!", t[:-1] + "!!!", t[:-1])),
        0,
    ),
    "trailing_emoji": ("robustness", "INV", _inv(_emoji), 0),
    "url": ("robustness", "INV", _inv(lambda h, t, _v, _p: (f"{t} {h.pick(h.lex['urls'])}",)), 0),
    "mention": ("robustness", "INV", _inv(lambda h, t, _v, _p: (f"{h.pick(h.lex['handles'])} {t}",)), 0),
    "typo": ("robustness", "INV", _inv(_typo), 0),
    "contraction": ("robustness", "INV", _contraction, 0),
    **{name: ("fairness", "INV", _fairness(lex, fam), 0) for name, (lex, fam) in FAIRNESS.items()},
    "length": ("length", "INV", _inv(_padding), 0),
}
#: Tests never used as training data (report-only in eval/checklist.py).
REPORT_ONLY: frozenset[str] = frozenset({"sarcasm"})


def cases(half: str, seed: int = 0, n: int = N_CASES, only: str | None = None) -> list[Test]:
    """Every test of :data:`TESTS` (or only the one named ``only``) with ``n`` distinct cases from ``half``
    ("train" or "heldout"), deterministic for (half, seed, n): each test draws from its own
    ``numpy.random.Generator`` seeded with (seed, half, test name). Raises ValueError for an unknown half or
    when a test's frames and lexicons cannot give ``n`` distinct cases."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, not {half!r}")
    tests = []
    for name, (capability, kind, make, direction) in TESTS.items():
        if only is not None and name != only:
            continue
        h = _Half(half, np.random.default_rng([seed, HALVES.index(half), zlib.crc32(name.encode())]))
        found: dict[tuple[str, ...], Case] = {}
        for _ in range(200 * n):
            case = make(h)
            found.setdefault(case.texts, case)
            if len(found) == n:
                break
        else:
            raise ValueError(f"{name}: only {len(found)} distinct cases in half {half!r}, {n} asked")
        tests.append(Test(name, capability, kind, tuple(found.values()), direction))
    return tests


#: Train-half cases per test in :func:`training_examples` where the default is not enough: the
#: capabilities whose held-out failure rates stayed highest with 60 (hedges 0.430, punctuation + emoji 0.045;
#: with these numbers and --punct-augment: 0.120 and 0.015, docs/model.md "Text expert recipe").
TRAIN_CASES: dict[str, int] = {
    "hedge_negative": 300,
    "hedge_positive": 300,
    "negated_negative": 150,
    "negated_neutral": 150,
    "questions": 150,
    "punctuation": 200,
    "trailing_emoji": 200,
}


def training_examples(seed: int = 0, n_per_test: int = 60, per_case: int = 4) -> list[tuple[str, int]]:
    """Labelled (text, label index) pairs from the **train half only**, for the text expert's training data:
    each MFT case with its label (neutral for the multi-label "not negative" / "not positive" cases), and for
    INV/DIR cases the base and up to ``per_case - 1`` of its variants (drawn with ``seed``) with the base's
    label; ``n_per_test`` cases per test, or :data:`TRAIN_CASES`'s number. Sarcasm (report-only) is left
    out; duplicates are dropped, first occurrence kept."""
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    tests = {t.name: t for t in cases("train", seed, n_per_test)}
    for name, n in TRAIN_CASES.items():
        tests[name] = next(t for t in cases("train", seed, n, only=name))
    for test in tests.values():
        if test.name in REPORT_ONLY:
            continue
        for case in test.cases:
            label = next(iter(case.expected)) if len(case.expected) == 1 else NEU
            assert label in case.expected
            rest = list(case.texts[1:])
            keep = [rest[int(i)] for i in rng.permutation(len(rest))[: per_case - 1]]
            for text in (case.texts[0], *keep):
                out.setdefault(text, label)
    return list(out.items())
