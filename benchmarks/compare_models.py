"""Side-by-side model-only latency of two ``model.onnx`` files (ONNX Runtime, CPU, same feeds, interleaved).

Use it when the graph changes but the service does not, e.g. before re-running the full ``python -m
benchmarks``. Each case (batch size × which modalities are present) runs both models in alternating rounds,
so machine noise hits both alike; the table reports the median and p90 ms per ``session.run`` and the ratio
new ÷ old of the medians.

    python -m benchmarks.compare_models OLD.onnx NEW.onnx [--rounds 200] [--threads 2]

Each model's inputs come from the ``config.json`` of its folder (``<folder>/1/model.onnx`` → ``<folder>/
config.json``; contract v1 when there is none): synthetic tensors of every expert's declared dtype and shape,
dynamic axes at typical sizes (text 32 tokens, 3 s of log-mel frames = 300, 3 s of 16 kHz waveform), the
image modality feeding every image expert (face and, in v2, scene). Values do not change the cost of these
graphs, shapes do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from app.contract import V1_CONTRACT, ModelContract

CASES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("text only", (1, 0, 0)),
    ("text + image", (1, 1, 0)),
    ("text + image + audio", (1, 1, 1)),
    ("audio only", (0, 0, 1)),
)


#: sizes of the dynamic axes in the synthetic feeds (per item)
AXIS_SIZES: dict[str, int] = {"text_length": 32, "frames": 300, "samples": 48_000}
#: CASES' modality order
MODALITIES: tuple[str, ...] = ("text", "image", "audio")


def contract_of(model_file: Path) -> ModelContract:
    """The contract in ``config.json`` two folders up from ``model_file`` (``<name>/1/model.onnx``); v1
    when there is none."""
    config = model_file.resolve().parent.parent / "config.json"
    if config.is_file():
        return ModelContract.from_config(json.loads(config.read_text()))
    return V1_CONTRACT


def feeds(
    batch: int, present: tuple[int, int, int], contract: ModelContract = V1_CONTRACT, seed: int = 0
) -> dict[str, np.ndarray]:
    """Contract inputs for ``batch`` rows with modalities ``present`` (text, image, audio: 1 or 0):
    random values of each input's dtype and shape (dynamic axes from :data:`AXIS_SIZES`, unknown ones 1),
    token ids with [CLS]/[SEP] at the ends, masks 1; an absent expert gets its dummy and mask 0."""
    rng = np.random.default_rng(seed)
    on = {m for m, p in zip(MODALITIES, present, strict=True) if p}
    out: dict[str, np.ndarray] = {}
    for expert in contract.experts:
        for spec in expert.inputs:
            if expert.modality not in on:
                out[spec.name] = np.repeat(spec.dummy()[None], batch, axis=0)
                continue
            shape = (batch, *(AXIS_SIZES.get(d, 1) if isinstance(d, str) else d for d in spec.shape))
            if spec.name == "input_ids":
                x = rng.integers(1000, 20000, shape).astype(spec.dtype)
                x[:, 0], x[:, -1] = 101, 102
            elif spec.name.endswith("mask"):
                x = np.ones(shape, spec.dtype)
            elif spec.dtype == "uint8":
                x = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                x = rng.uniform(-1, 1, shape).astype(spec.dtype)
            out[spec.name] = x
    mask = [1.0 if e.modality in on else 0.0 for e in contract.experts]
    out[contract.mask_input] = np.tile(np.asarray(mask, np.float32), (batch, 1))
    return out


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
    contracts = {"old": contract_of(args.old), "new": contract_of(args.new)}
    for batch in args.batches:
        for label, present in CASES:
            f = {name: feeds(batch, present, contracts[name]) for name in sessions}
            times: dict[str, list[float]] = {"old": [], "new": []}
            for name, s in sessions.items():  # warm-up
                s.run(None, f[name])
            for r in range(args.rounds):
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for name in order:
                    t0 = time.perf_counter()
                    sessions[name].run(None, f[name])
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
