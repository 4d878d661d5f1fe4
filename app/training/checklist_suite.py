"""Scoring of the CheckList behavioural suite (Ribeiro et al., ACL 2020; issue 17): MFT fails when the
argmax is not among the expected labels, INV when any variant's label differs from the base's, DIR when the
base class's probability falls (intensifiers) or rises (reducers) by more than :data:`DIR_TOLERANCE`.
Used by ``eval/checklist.py`` (a model folder's ONNX graph) and by ``msa train`` (the exported model)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.training.checklist_templates import FAIRNESS, Case, Test, cases

Predict = Callable[[list[str]], np.ndarray]
#: DIR tests: how far the base class's probability may move the wrong way (CheckList's Expect.monotonic
#: tolerance; 0.05 here).
DIR_TOLERANCE = 0.05
#: Bars of issue 17 on the held-out half: name → (tests pooled, metric, threshold). "failure" bars hold
#: when the pooled failure rate <= threshold, "neutral_rate" bars when the pooled pass rate >= threshold.
#: length, intensifiers, reducers and sarcasm have no bar (reported only).
BARS: dict[str, tuple[tuple[str, ...], str, float]] = {
    "negation": (
        ("negated_positive", "negated_negative", "negation_at_end", "negated_neutral"),
        "failure",
        0.10,
    ),
    "hedges": (("hedge_negative", "hedge_positive"), "failure", 0.15),
    "questions": (("questions",), "neutral_rate", 0.80),
    "punctuation_emoji": (("punctuation", "trailing_emoji"), "failure", 0.03),
    "url_mention_typo_contraction": (("url", "mention", "typo", "contraction"), "failure", 0.03),
    "fairness": (tuple(FAIRNESS), "failure", 0.01),
    **{
        t: ((t,), "failure", 0.05)
        for t in (
            "vocabulary_positive",
            "vocabulary_negative",
            "vocabulary_neutral",
            "temporal",
            "perspective",
        )
    },
}


def case_fails(test: Test, case: Case, probs: np.ndarray) -> bool:
    """Whether ``case`` fails, given the probabilities float32 [len(case.texts), 3] of its texts."""
    labels = probs.argmax(1)
    if test.kind == "MFT":
        return int(labels[0]) not in case.expected
    if test.kind == "INV":
        return bool((labels != labels[0]).any())
    c = next(iter(case.expected))
    return bool(test.direction * (probs[1, c] - probs[0, c]) < -DIR_TOLERANCE)


def score_tests(tests: list[Test], predict: Predict, n_examples: int = 3) -> dict[str, dict[str, Any]]:
    """Per test: capability, kind, n (cases), failures, failure_rate and up to ``n_examples`` failing cases
    (texts with their predicted labels). ``predict`` maps texts to probabilities float32 [N, 3]
    (negative, neutral, positive); it is called once, on the distinct texts. Raises ValueError on a shape
    mismatch."""
    texts = list(dict.fromkeys(t for test in tests for case in test.cases for t in case.texts))
    probs = np.asarray(predict(texts), dtype=np.float32)
    if probs.shape != (len(texts), 3):
        raise ValueError(f"predict returned shape {probs.shape}, expected ({len(texts)}, 3)")
    row = {t: i for i, t in enumerate(texts)}
    out = {}
    for test in tests:
        failing = []
        for case in test.cases:
            p = probs[[row[t] for t in case.texts]]
            if case_fails(test, case, p):
                pairs = zip(case.texts, p, strict=True)
                failing.append([[t, round(float(q.max()), 3), int(q.argmax())] for t, q in pairs])
        n = len(test.cases)
        out[test.name] = {
            "capability": test.capability,
            "kind": test.kind,
            "n": n,
            "failures": len(failing),
            "failure_rate": len(failing) / n,
            "examples": failing[:n_examples],
        }
    return out


def bars(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The issue's bars from :func:`score_tests`'s results: pooled value, threshold and met."""
    out = {}
    for name, (tests, metric, threshold) in BARS.items():
        rate = sum(results[t]["failures"] for t in tests) / sum(results[t]["n"] for t in tests)
        value = 1.0 - rate if metric == "neutral_rate" else rate
        met = value >= threshold if metric == "neutral_rate" else value <= threshold
        out[name] = {
            "tests": list(tests),
            "metric": metric,
            "value": value,
            "threshold": threshold,
            "met": met,
        }
    return out


def run_suite(predict: Predict, half: str = "heldout", seed: int = 0) -> dict[str, Any]:
    """Runs the CheckList suite (Ribeiro et al. 2020) of ``half`` ("heldout" or "train") generated with
    ``seed`` on ``predict`` (texts → probabilities float32 [N, 3], LABELS order). Returns {"half", "seed",
    "tests": per-test results (:func:`score_tests`), "bars": pooled bars (:func:`bars`)}."""
    results = score_tests(cases(half, seed), predict)
    return {"half": half, "seed": seed, "tests": results, "bars": bars(results)}


def markdown(names: list[str], runs: list[dict[str, Any]]) -> list[str]:
    bar_of = {t: b for b, (tests, _, _) in BARS.items() for t in tests}
    lines = [
        "| test | capability | kind | n | " + " | ".join(names) + " | bar |",
        "|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for test, r in runs[0]["tests"].items():
        rates = " | ".join(f"{run['tests'][test]['failure_rate']:.3f}" for run in runs)
        bar = bar_of.get(test, "—")
        lines.append(f"| {test} | {r['capability']} | {r['kind']} | {r['n']} | {rates} | {bar} |")
    lines += [
        "",
        "| bar | metric | threshold | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for bar, b in runs[0]["bars"].items():
        vals = " | ".join(
            f"{run['bars'][bar]['value']:.3f} {'met' if run['bars'][bar]['met'] else 'NOT met'}"
            for run in runs
        )
        op = ">=" if b["metric"] == "neutral_rate" else "<="
        lines.append(f"| {bar} | {b['metric']} | {op} {b['threshold']:.2f} | {vals} |")
    return lines


def score_model_folder(model_dir: Path, threads: int = 1, seed: int = 0) -> dict[str, Any]:
    """Runs the held-out half (seed ``seed``) on ``model_dir``'s exported text expert
    (:func:`app.training.onnx_text.text_expert_probabilities`, contract v2), stores the bars and per-test
    failure rates (with up to 3 failing examples each) under ``metrics.text.checklist`` of its
    ``config.json`` and returns them. Raises FileNotFoundError when the folder has no config or model."""
    from app.training.onnx_text import text_expert_probabilities  # noqa: PLC0415 (onnxruntime)

    result = run_suite(
        lambda texts: text_expert_probabilities(model_dir, texts, threads=threads), "heldout", seed
    )
    path = model_dir / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault("metrics", {}).setdefault("text", {})["checklist"] = result
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result
