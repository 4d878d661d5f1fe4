"""VADER baseline (Hutto & Gilbert, ICWSM 2014; ``vaderSentiment`` package) on the same splits.

Compound score → class with the standard thresholds (compound ≥ 0.05 positive, ≤ −0.05 negative, else
neutral; vaderSentiment README), and, as a stronger baseline, with a symmetric threshold ``t`` chosen to
maximise macro-F1 on the split's training data.
"""

from __future__ import annotations

import numpy as np

from app.training.common import macro_f1

_CANDIDATES = np.round(np.arange(0.05, 0.95, 0.05), 2)


def vader_compound(texts: list[str]) -> np.ndarray:
    """VADER compound score float64 [N] in [-1, 1] of each text (Hutto & Gilbert, 2014)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: PLC0415

    sia = SentimentIntensityAnalyzer()
    return np.asarray([sia.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)


def vader_classes(compound: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Classes int64 [N] from compound scores: ≥ ``threshold`` positive, ≤ −``threshold`` negative, else
    neutral."""
    return np.where(compound >= threshold, 2, np.where(compound <= -threshold, 0, 1)).astype(np.int64)


def tune_threshold(compound: np.ndarray, y: np.ndarray) -> float:
    """The candidate threshold with the best macro-F1 of :func:`vader_classes` on (``compound``, ``y``)."""
    scores = [macro_f1(y, vader_classes(compound, t)) for t in _CANDIDATES]
    return float(_CANDIDATES[int(np.argmax(scores))])
