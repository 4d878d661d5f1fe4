"""TweetEval sentiment macro-F1 of a model folder's text expert, next to VADER (issue 16, item 3).

Runs the folder's ONNX graph on CPU with only the text expert present (``expert_mask`` [1, 0, ...]), reads
the text expert's row of ``expert_probabilities`` (calibrated probabilities float32 [B, 3]) and scores the
argmax against ``tweeteval_sentiment/{split}.csv`` (SemEval-2017 Task 4A, TweetEval's official val / test
files; ``../shared/data/README.md``). VADER uses its compound score with the standard ±0.05 thresholds.
The language gate of the service is not applied: every tweet is scored, as in training's evaluation.

Used to compare the bundled model with an earlier one, e.g. with a checkout of an earlier revision in
``/tmp/old``::

    python -m eval.text_tweeteval models/fused-sentiment /tmp/old/models/fused-sentiment --split test

Prints one markdown row per model folder and split: n, macro-F1, accuracy, and VADER's macro-F1.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from app.training.common import accuracy, macro_f1
from app.training.data import LABEL_INDEX
from app.training.onnx_text import text_expert_probabilities
from app.training.vader_baseline import vader_classes, vader_compound


def read_split(data_dir: Path, split: str) -> tuple[list[str], np.ndarray]:
    """(texts, labels int64 [N]) of ``tweeteval_sentiment/<split>.csv``; raises FileNotFoundError."""
    with open(data_dir / "tweeteval_sentiment" / f"{split}.csv", encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["text"].strip()]
    return [r["text"].strip() for r in rows], np.asarray([LABEL_INDEX[r["label"]] for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dirs", type=Path, nargs="+", help="model folders (contract v2)")
    p.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("SENTIMENT_DATA_DIR", "../shared/data"))
    )
    p.add_argument("--split", choices=("val", "test"), nargs="+", default=["test"])
    args = p.parse_args()
    print("| model | split | n | macro-F1 | accuracy | VADER macro-F1 |")
    print("|---|---|---|---|---|---|")
    for split in args.split:
        texts, y = read_split(args.data_dir, split)
        vader = macro_f1(y, vader_classes(vader_compound(texts)))
        for model_dir in args.model_dirs:
            pred = text_expert_probabilities(model_dir, texts).argmax(1)
            print(
                f"| {model_dir} | {split} | {len(y)} | {macro_f1(y, pred):.4f} | {accuracy(y, pred):.4f} | "
                f"{vader:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
