"""Side-by-side model-only latency of two ``model.onnx`` files (ONNX Runtime, CPU, same feeds, interleaved).

Use it when the graph changes but the service does not, e.g. before re-running the full ``python -m
benchmarks``. Each case (batch size × which modalities are present) runs both models in alternating rounds,
so machine noise hits both alike; the table reports the median and p90 ms per ``session.run`` and the ratio
new ÷ old of the medians.

    python -m benchmarks.compare_models OLD.onnx NEW.onnx [--rounds 200] [--threads 2]

Feeds are contract-shaped synthetic tensors (text 32 tokens, a 64×64 face, 3 s of log-mel frames = 300);
values do not change the cost of these graphs, shapes do.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from app.contract import FACE_SIZE, N_MELS

CASES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("text only", (1, 0, 0)),
    ("text + image", (1, 1, 0)),
    ("text + image + audio", (1, 1, 1)),
    ("audio only", (0, 0, 1)),
)


def feeds(batch: int, present: tuple[int, int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Contract inputs for ``batch`` rows with modality mask ``present`` (text, image, audio)."""
    rng = np.random.default_rng(seed)
    tokens, frames = 32, 300
    ids = rng.integers(1000, 20000, (batch, tokens)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {
        "input_ids": ids,
        "attention_mask": np.ones((batch, tokens), np.int64),
        "face": rng.uniform(-1, 1, (batch, 1, FACE_SIZE, FACE_SIZE)).astype(np.float32),
        "audio_features": rng.normal(-6, 2, (batch, frames, N_MELS)).astype(np.float32),
        "audio_mask": np.ones((batch, frames), np.float32),
        "modality_mask": np.tile(np.asarray(present, np.float32), (batch, 1)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    args = p.parse_args(argv)
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    sessions = {
        name: ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for name, path in (("old", args.old), ("new", args.new))
    }
    print(
        f"old: {args.old}\nnew: {args.new}\nORT {ort.__version__}, {args.threads} threads, "
        f"{args.rounds} rounds per case, interleaved\n"
    )
    print("| batch | modalities | old median (p90) ms | new median (p90) ms | new ÷ old |")
    print("|---|---|---|---|---|")
    for batch in args.batches:
        for label, present in CASES:
            f = feeds(batch, present)
            times: dict[str, list[float]] = {"old": [], "new": []}
            for s in sessions.values():  # warm-up
                s.run(None, f)
            for r in range(args.rounds):
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for name in order:
                    t0 = time.perf_counter()
                    sessions[name].run(None, f)
                    times[name].append((time.perf_counter() - t0) * 1e3)
            med = {k: statistics.median(v) for k, v in times.items()}
            p90 = {k: float(np.percentile(v, 90)) for k, v in times.items()}
            print(
                f"| {batch} | {label} | {med['old']:.2f} ({p90['old']:.2f}) | {med['new']:.2f} "
                f"({p90['new']:.2f}) | {med['new'] / med['old']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
