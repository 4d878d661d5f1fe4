"""A model folder's text expert run by ONNX Runtime on the CPU: what ``eval/`` and ``msa train`` score
(TweetEval, the behavioural suite) is the exported graph the service serves, not the PyTorch model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.preprocessing.text import encode_text, load_tokenizer, pad_batch


def text_expert_probabilities(
    model_dir: Path, texts: list[str], batch_size: int = 64, threads: int = 0
) -> np.ndarray:
    """The text expert's probabilities float32 [N, 3] (LABELS order) from ``model_dir``'s ONNX graph, its
    ``tokenizer.json`` and ``config.json`` (model file, inputs, expert order; contract v2 only).
    ``threads``: ONNX Runtime intra-op threads (0: one per CPU core)."""
    config = json.loads((model_dir / "config.json").read_text("utf-8"))
    names = [e["name"] for e in config["experts"]]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    session = ort.InferenceSession(
        str(model_dir / config["model_file"]), opts, providers=["CPUExecutionProvider"]
    )
    tok = load_tokenizer(model_dir / "tokenizer.json")
    mask = np.asarray([[1.0 if n == "text" else 0.0 for n in names]], dtype=np.float32)
    encoded = [encode_text(tok, t) for t in texts]
    # Batches of similar length (sorted by token count, answers put back in input order), so little time
    # goes to padding each batch to its longest text; rows do not depend on their batch-mates (attention
    # mask).
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].num_tokens)
    out = []
    for s in range(0, len(order), batch_size):
        ids, attention = pad_batch([encoded[i] for i in order[s : s + batch_size]])
        b = len(ids)
        feeds: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": attention}
        for name, spec in config["inputs"].items():  # absent experts: zero inputs of length 1
            if name not in feeds and name != "expert_mask":
                shape = [b if d == "batch" else (d if isinstance(d, int) else 1) for d in spec["shape"]]
                feeds[name] = np.zeros(shape, dtype=spec["dtype"])
        feeds["expert_mask"] = np.repeat(mask, b, axis=0)
        probs = session.run(["expert_probabilities"], feeds)[0]
        out.append(probs[:, names.index("text")])
    if not out:
        return np.zeros((0, 3), dtype=np.float32)
    probs_sorted = np.concatenate(out).astype(np.float32)
    result = np.empty_like(probs_sorted)
    result[np.asarray(order)] = probs_sorted
    return result
