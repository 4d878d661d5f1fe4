"""Held-out text macro-F1 of a model folder as the service answers it: its ONNX graph with only the text
expert present, on each corpus' test split of ``msa train``'s text data (``app.training.data.load_text``
with the folder's seed: VADER sub-corpora 70/15/15, MELD and TweetEval official test files).

The decision scored is the argmax of the text expert's calibrated probabilities (temperature, then the
prior shift from the text training prior to the uniform π), i.e. what a text-only request is answered; the
language gate of the service is not applied. ``msa train`` scores the same decision
(``app.training.fusion.text_only_log_probs``); this command re-measures a committed model without training::

    python -m eval.text_heldout models/fused-sentiment            # print card vs measured
    python -m eval.text_heldout models/fused-sentiment --write    # also update config.json and the card

``--write`` replaces ``metrics.text.heldout.<corpus>.model_macro_f1`` / ``model_accuracy`` in
``config.json`` (VADER's numbers are unchanged: they do not depend on the model), records the command in
``metrics.text.heldout_measured_by`` and re-renders ``MODEL_CARD.md`` and ``eval/REPORT.md``
(:func:`app.training.report.render`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from app.training import data as D
from app.training.common import accuracy, macro_f1
from app.training.onnx_text import text_expert_probabilities
from app.training.text_stage import HELDOUT_CORPORA


def served_heldout(model_dir: Path, data_dir: Path, seed: int) -> dict[str, dict[str, Any]]:
    """Per held-out corpus: ``n_test``, ``model_macro_f1`` and ``model_accuracy`` (4 decimals) of the served
    text-only answer of ``model_dir`` on that corpus' test rows. Raises ``DataMissingError`` when a data
    folder is missing."""
    ts = D.load_text(data_dir, seed, tweeteval=True, sst_phrases=0)  # SST adds training rows only
    te = np.where(ts.split == "test")[0]
    pred = text_expert_probabilities(model_dir, [ts.texts[i] for i in te]).argmax(1)
    out: dict[str, dict[str, Any]] = {}
    for corpus in HELDOUT_CORPORA:
        sel = ts.corpus[te] == corpus
        y = ts.labels[te[sel]]
        out[corpus] = {
            "n_test": int(sel.sum()),
            "model_macro_f1": round(macro_f1(y, pred[sel]), 4),
            "model_accuracy": round(accuracy(y, pred[sel]), 4),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path, nargs="?", default=Path("models/fused-sentiment"))
    p.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("SENTIMENT_DATA_DIR", "../shared/data"))
    )
    p.add_argument("--seed", type=int, default=0, help="msa train's --seed of the model (default 0)")
    p.add_argument("--write", action="store_true", help="update config.json and re-render the card")
    args = p.parse_args()
    config_path = args.model_dir / "config.json"
    config = json.loads(config_path.read_text("utf-8"))
    card = config["metrics"]["text"]["heldout"]
    measured = served_heldout(args.model_dir, args.data_dir, args.seed)
    print("| corpus | n | card macro-F1 | served macro-F1 | served accuracy |")
    print("|---|---|---|---|---|")
    for corpus, m in measured.items():
        old = card.get(corpus, {})
        if old and old["n_test"] != m["n_test"]:
            raise SystemExit(f"{corpus}: {m['n_test']} test rows, the card's split has {old['n_test']}")
        print(
            f"| {corpus} | {m['n_test']} | {old.get('model_macro_f1', float('nan')):.4f} | "
            f"{m['model_macro_f1']:.4f} | {m['model_accuracy']:.4f} |"
        )
    if args.write:
        for corpus, m in measured.items():
            card.setdefault(corpus, {}).update(m)
        config["metrics"]["text"]["heldout_measured_by"] = (
            f"python -m eval.text_heldout {args.model_dir} --write"
        )
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")
        from app.training.report import render

        render(args.model_dir)


if __name__ == "__main__":
    main()
