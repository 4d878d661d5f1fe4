"""CheckList behavioural suite of a model folder's text expert (Ribeiro et al., ACL 2020; issue 17, item 1).

Generates the tests of ``app/training/checklist_templates.py`` (by default the held-out half: frames and
lexicons never used in training), predicts every text with the folder's ONNX graph, text expert only
(``app.training.onnx_text.text_expert_probabilities``), and scores them: MFT fails when the argmax is not
among the expected labels, INV when any variant's label differs from the base's, DIR when the base class's
probability falls (intensifiers) or rises (reducers) by more than :data:`DIR_TOLERANCE`::

    python -m eval.checklist models/fused-sentiment [more model folders] [--half heldout] [--json OUT]

Prints a markdown table (test, capability, kind, n, failure rate per model) and the issue's bars.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

from app.training.checklist_suite import markdown, run_suite
from app.training.onnx_text import text_expert_probabilities


def _predict(model_dir: Path, texts: list[str], threads: int) -> np.ndarray:
    return text_expert_probabilities(model_dir, texts, threads=threads)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dirs", type=Path, nargs="+", help="model folders (contract v2)")
    p.add_argument("--half", choices=("heldout", "train"), default="heldout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (0: all cores)")
    p.add_argument("--json", type=Path, help="write every result (with failing examples) here")
    args = p.parse_args()
    runs = []
    for model_dir in args.model_dirs:
        predict = functools.partial(_predict, model_dir, threads=args.threads)
        runs.append(run_suite(predict, args.half, args.seed))
    print("\n".join(markdown([str(d) for d in args.model_dirs], runs)))
    if args.json:
        by_model = {str(d): run for d, run in zip(args.model_dirs, runs, strict=True)}
        args.json.write_text(json.dumps(by_model, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
