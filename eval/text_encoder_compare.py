"""Compare text encoders for the text expert on TweetEval alone (development harness, not the shipped recipe).

Each run fine-tunes one encoder of :data:`app.training.text_model.TEXT_ENCODERS` the way ``msa train`` does
(frozen layers ``[0, split)`` cached, the layers above them + masked mean pooling + a linear head trained by
:func:`app.training.train_text.train_text`, AdamW with linear decay, bfloat16 autocast, seed 0) on
TweetEval's official train file only, selects the epoch on its val file and scores val and test. Two
decisions are printed per split: the head's raw argmax, and the answer after the shift from the training
prior (TweetEval train's class frequencies) to the uniform prior the service's fusion uses (temperature does
not change the argmax, so this is the text-only answer's label).

    python -m eval.text_encoder_compare --encoder minilm-l6 --split-layer 2
    python -m eval.text_encoder_compare --encoder bge-small --split-layer 6

Appends one JSON line per run to ``--out`` (default ``text_encoder_compare.jsonl``) and prints it. Frozen
states are cached in ``--cache-dir`` like ``msa train``'s (:func:`app.training.cache.text_states`).
Model selection uses val only; test is reported, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from app.training.cache import text_states
from app.training.common import macro_f1
from app.training.fusion import TextClassifier
from app.training.text_model import TEXT_ENCODERS, load_text_encoder, package_model_dir
from app.training.train_text import text_logits, train_text
from eval.text_tweeteval import read_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", choices=sorted(TEXT_ENCODERS), default="minilm-l6")
    p.add_argument("--split-layer", type=int, default=None, help="default: the encoder's msa train default")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate (head: 2e-3)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("SENTIMENT_DATA_DIR", "../shared/data"))
    )
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    p.add_argument("--out", type=Path, default=Path("text_encoder_compare.jsonl"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        split = TEXT_ENCODERS[args.encoder].split_layer(args.split_layer)
    except ValueError as exc:
        p.error(f"--split-layer: {exc}")
    parts = {s: read_split(args.data_dir, s) for s in ("train", "val", "test")}
    texts = [t for s in parts for t in parts[s][0]]
    labels = np.concatenate([parts[s][1] for s in parts])
    bounds = np.cumsum([0] + [len(parts[s][1]) for s in parts])
    idx = {s: np.arange(bounds[k], bounds[k + 1]) for k, s in enumerate(parts)}
    t0 = time.time()
    _, states = text_states(
        texts, package_model_dir() / "tokenizer.json", args.cache_dir, split, args.encoder
    )
    states_s = time.time() - t0
    torch.manual_seed(0)
    base = TextClassifier(load_text_encoder(args.encoder, args.cache_dir))
    model, info = train_text(
        base,
        states,
        labels,
        idx["train"],
        idx["val"],
        split,
        args.epochs,
        0,
        lr=args.lr,
        bf16=True,
        desc=f"{args.encoder} L{split}",
    )
    log_prior = np.log(np.bincount(labels[idx["train"]], minlength=3) / len(idx["train"]))
    result: dict[str, object] = {
        "encoder": args.encoder,
        "split_layer": split,
        "epochs": args.epochs,
        "lr": args.lr,
        "states_seconds": round(states_s),
        "train_seconds": round(info["train_seconds"]),
    }
    for s in ("val", "test"):
        logits = text_logits(model, states, idx[s], split)
        y = labels[idx[s]]
        result[f"{s}_macro_f1_raw"] = round(macro_f1(y, logits.argmax(1)), 4)
        result[f"{s}_macro_f1_uniform_prior"] = round(macro_f1(y, (logits - log_prior).argmax(1)), 4)
    line = json.dumps(result)
    print(line, flush=True)
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


if __name__ == "__main__":
    main()
