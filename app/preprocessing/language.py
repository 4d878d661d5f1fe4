"""Language gate of the text expert: is a text in a language the text expert was trained on?

The text expert (bge-small-en-v1.5 fine-tuned on English corpora, English WordPiece vocabulary) is
confidently wrong on other languages ("I am very happy today" in Arabic → "neutral" 0.998). The gate
refuses such text before tokenisation; the response then says ``unsupported_language`` with the detected
language (ISO 639-1) and the detector's probability.

Detector: ``py3langid`` (BSD-3-Clause; fork of langid.py, Lui & Baldwin, ACL 2012: byte n-gram naive Bayes
over 97 languages; the model, ``py3langid/data/model.npz.xz``, ships inside the package, nothing is
downloaded). It is restricted to its two-letter (ISO 639-1) labels (:data:`DETECTOR_LANGUAGES`), which folds
dialect labels such as ``arz``/``ary`` into ``ar`` and ``wuu``/``yue`` into ``zh``. Chosen over
``lingua-language-detector`` and ``langdetect`` by ``python -m benchmarks.language_id`` (numbers in
docs/model.md, "Language gate").

Decision rule (:meth:`LanguageGate.assess`), made so that English is almost never refused:

1. Clean: URLs, @mentions, #hashtags, e-mail addresses and every non-letter (digits, punctuation, emoji)
   are removed; letters are grouped by Unicode script (first word of the character's Unicode name).
2. Script: if at least :data:`MIN_SCRIPT_LETTERS` letters are in scripts other than Latin and they are at
   least :data:`MIN_SCRIPT_SHARE` of all letters, the detector's answer decides alone (no Latin-script
   word-count or English-probability safeguard): refused unless it names a supported language, which for
   English in a non-Latin script practically never happens; the language reported is the detector's.
3. Latin script: refused only when the cleaned text has at least :data:`MIN_WORDS` distinct words, the
   detector's top language is unsupported with probability ≥ :data:`MIN_CONFIDENCE`, and English's own
   probability is below :data:`MAX_ENGLISH_PROBABILITY`. Shorter or ambiguous texts ("ok", "lol",
   "omg!!!", a URL, a hashtag, emoji + one word) are used as English.

The constants were chosen on the sentences in ``tests/data/languages`` and the English corpora of
``../shared/data`` (``python -m benchmarks.language_gate``; see docs/model.md).

Thread safety: after construction :meth:`LanguageGate.assess` only reads the identifier's arrays
(``LanguageIdentifier.classify`` allocates its own score vector per call), so one gate serves every
preprocessing thread.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

#: Refuse non-Latin text only if it has at least this many letters outside the Latin script (two CJK
#: characters are already a word or two; one stray character in English text is not).
MIN_SCRIPT_LETTERS: Final[int] = 2
#: … and those letters are at least this share of all letters (English with one Chinese name stays used).
MIN_SCRIPT_SHARE: Final[float] = 0.5
#: Latin-script text needs at least this many distinct words (after cleaning, case-folded) before the
#: detector may refuse it ("HA HA HA HA HA" is one word).
MIN_WORDS: Final[int] = 4
#: Minimum probability of the detector's top (unsupported) language for a Latin-script refusal. Not higher:
#: related languages share the mass (Indonesian/Malay, Swedish/Norwegian/Danish: top 0.53–0.83 on our
#: sentences), and English is ruled out by the next constant.
MIN_CONFIDENCE: Final[float] = 0.5
#: English's own probability must be below this for a Latin-script refusal.
MAX_ENGLISH_PROBABILITY: Final[float] = 0.01

_NOISE = re.compile(r"https?://\S+|www\.\S+|\S+@\S+\.\S+|[@#]\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class LanguageVerdict:
    """The gate's answer for one text.

    Attributes:
        language: the detector's top language (ISO 639-1, e.g. ``"ar"``), or None when the text has no
            letters left after cleaning.
        confidence: the detector's probability of ``language`` in [0, 1] (None with ``language``).
        supported: False when the text is refused (``unsupported_language``).
    """

    language: str | None
    confidence: float | None
    supported: bool


def clean_text(text: str) -> str:
    """``text`` without URLs, e-mail addresses, @mentions and #hashtags; every non-letter character becomes
    a space (digits, punctuation, emoji, symbols); whitespace collapsed."""
    stripped = _NOISE.sub(" ", text)
    return " ".join("".join(c if c.isalpha() else " " for c in stripped).split())


def script_of(char: str) -> str:
    """The Unicode script of a letter, as the first word of its Unicode name (``LATIN``, ``ARABIC``,
    ``CJK``, ``HIRAGANA``, ``DEVANAGARI``, ``CYRILLIC`` …; ``UNKNOWN`` for unnamed code points)."""
    return unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]


def foreign_script_letters(cleaned: str) -> tuple[int, int]:
    """(letters outside the Latin script, all letters) of a :func:`clean_text` result."""
    scripts = Counter(script_of(c) for c in cleaned if c.isalpha())
    total = sum(scripts.values())
    return total - scripts.get("LATIN", 0), total


class LanguageGate:
    """Language identification + the refusal rule above; built once per model, shared by all threads.

    Args:
        supported: ISO 639-1 codes the text expert was trained on (the contract's ``languages``).

    Raises:
        ImportError: ``py3langid`` is not installed.
    """

    def __init__(self, supported: Iterable[str]) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.supported: frozenset[str] = frozenset(supported)
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._identifier.set_languages(
            [code for code in self._identifier.labels if len(code) == 2 and code.isalpha()]
        )

    @property
    def detector_languages(self) -> tuple[str, ...]:
        """The ISO 639-1 codes the detector may answer (the two-letter labels of py3langid's model)."""
        return tuple(self._identifier.nb_classes)

    def detect(self, cleaned: str) -> tuple[str, float, float]:
        """(top language, its probability, English's probability) of a :func:`clean_text` result."""
        ranked = self._identifier.rank(cleaned)
        language, confidence = ranked[0]
        return str(language), float(confidence), float(dict(ranked).get("en", 0.0))

    def assess(self, text: str) -> LanguageVerdict:
        """Apply the decision rule of this module to one text (any Unicode string; cost ≈ 1 ms)."""
        cleaned = clean_text(unicodedata.normalize("NFKC", text))
        if not cleaned:
            return LanguageVerdict(None, None, supported=True)
        language, confidence, english = self.detect(cleaned)
        confidence = round(confidence, 4)
        foreign, letters = foreign_script_letters(cleaned)
        if foreign >= MIN_SCRIPT_LETTERS and foreign >= MIN_SCRIPT_SHARE * letters:
            return LanguageVerdict(language, confidence, supported=language in self.supported)
        refused = (
            len(set(cleaned.casefold().split())) >= MIN_WORDS
            and language not in self.supported
            and confidence >= MIN_CONFIDENCE
            and english < MAX_ENGLISH_PROBABILITY
        )
        return LanguageVerdict(language, confidence, supported=not refused)
