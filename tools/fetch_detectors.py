"""Re-extract the committed Silero VAD graph from its PyPI wheel and check it.

    python tools/fetch_detectors.py            # download silero-vad 6.2.3 (no dependencies), extract, verify
    python tools/fetch_detectors.py --wheel W  # use a wheel already on disk

Steps: ``pip download --no-deps silero-vad==6.2.3`` (the package depends on torch/torchaudio, so it is never
installed); take ``silero_vad/data/silero_vad_16k_sequence.onnx`` out of the wheel; check its sha256 against
``app.preprocessing.vad.VAD_MODEL_SHA256``; check that it gives the same per-frame speech probabilities as
the stock streaming ``silero_vad/data/silero_vad.onnx`` run frame by frame (silero-vad ``OnnxWrapper``:
``input`` [1, 64 + 512], ``state`` [2, 1, 128], ``sr``) on generated audio; write it to
``models/detectors/`` (the stock graph is not kept).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.preprocessing.vad import (  # noqa: E402
    CONTEXT_SAMPLES,
    FRAME_SAMPLES,
    VAD_MODEL_FILE,
    VAD_MODEL_SHA256,
    VoiceActivityDetector,
)

PACKAGE, VERSION = "silero-vad", "6.2.3"
MEMBER = "silero_vad/data/silero_vad_16k_sequence.onnx"
STOCK = "silero_vad/data/silero_vad.onnx"


def stock_probabilities(path: Path, x: np.ndarray) -> np.ndarray:
    """Per-frame probabilities of the stock streaming graph, one ``session.run`` per 512-sample frame."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = -(-x.size // FRAME_SAMPLES)
    frames = np.zeros(n * FRAME_SAMPLES, np.float32)
    frames[: x.size] = x
    frames = frames.reshape(n, FRAME_SAMPLES)
    state, context, out = np.zeros((2, 1, 128), np.float32), np.zeros(CONTEXT_SAMPLES, np.float32), []
    for frame in frames:
        chunk = np.concatenate([context, frame])[None]
        p, state = session.run(None, {"input": chunk, "state": state, "sr": np.array(16_000, np.int64)})
        out.append(float(p[0, 0]))
        context = frame[-CONTEXT_SAMPLES:]
    return np.asarray(out, np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wheel", type=Path, help="silero_vad-6.2.3-py3-none-any.whl already downloaded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", f"{PACKAGE}=={VERSION}", "-d", tmp],
                check=True,
            )
            wheel = next(Path(tmp).glob("silero_vad-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            data, stock = z.read(MEMBER), z.read(STOCK)
        digest = hashlib.sha256(data).hexdigest()
        if digest != VAD_MODEL_SHA256:
            sys.exit(f"{MEMBER}: sha256 {digest}, expected {VAD_MODEL_SHA256}")
        candidate, stock_path = Path(tmp) / "sequence.onnx", Path(tmp) / "stock.onnx"
        candidate.write_bytes(data)
        stock_path.write_bytes(stock)
        rng = np.random.default_rng(0)
        t = np.arange(5 * 16_000) / 16_000
        x = (0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
        x += (0.01 * rng.standard_normal(x.size)).astype(np.float32)
        diff = np.abs(
            VoiceActivityDetector(model_file=candidate).speech_probabilities(x)
            - stock_probabilities(stock_path, x)
        )
        print(f"sequence vs stock graph: max |Δp| = {diff.max():.2e} over {diff.size} frames")  # noqa: T201 - a command-line tool
        if diff.max() > 1e-5:
            sys.exit("the sequence graph does not reproduce the stock graph")
        VAD_MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
        VAD_MODEL_FILE.write_bytes(data)
        print(f"wrote {VAD_MODEL_FILE} ({len(data)} bytes, sha256 {digest})")  # noqa: T201 - a command-line tool


if __name__ == "__main__":
    main()
