"""Speed of the voice activity detector (``app.preprocessing.vad``) and, on a GPU host, CUDA vs CPU.

    python -m benchmarks.vad_speed [--providers CUDAExecutionProvider,CPUExecutionProvider] [--seconds 10]

Runs :meth:`VoiceActivityDetector.speech_probabilities` on ``--seconds`` of CREMA-D-like audio (the turn2
speech clip repeated, tests/data/cases/speech_16k.wav) with the given execution providers and with the CPU
alone; prints ms per second of audio (median of 20 runs after 3 warm-up runs), the active providers, and
the largest probability difference between the two sessions. One intra-op thread, as in the service.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from app.preprocessing.vad import VoiceActivityDetector

SPEECH = Path(__file__).resolve().parents[1] / "tests" / "data" / "cases" / "speech_16k.wav"


def _ms_per_audio_second(vad: VoiceActivityDetector, x: np.ndarray) -> float:
    for _ in range(3):
        vad.speech_probabilities(x)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        vad.speech_probabilities(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000 / (x.size / 16_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--providers", default="CPUExecutionProvider")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    clip, _ = sf.read(SPEECH, dtype="float32")
    x = np.tile(clip, int(np.ceil(args.seconds * 16_000 / clip.size)))[: int(args.seconds * 16_000)]
    cpu = VoiceActivityDetector(["CPUExecutionProvider"])
    asked = VoiceActivityDetector(args.providers.split(","))
    for name, vad in (("asked", asked), ("cpu", cpu)):
        print(f"{name}: {vad.providers[0]}: {_ms_per_audio_second(vad, x):.2f} ms per second of audio")  # noqa: T201
    diff = np.abs(asked.speech_probabilities(x) - cpu.speech_probabilities(x)).max()
    print(f"max |Δp| {asked.providers[0]} vs CPU: {diff:.2e}")  # noqa: T201


if __name__ == "__main__":
    main()
