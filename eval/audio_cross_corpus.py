"""Cross-corpus scores of a model folder's audio expert through the service's audio path (issue 16, item 2).

Every clip of EMOVO's held-out speakers (``app.training.data.EMOVO_TEST_SPEAKERS``; surprise left out) and
of URDU is read at 16 kHz, run through ``app.preprocessing.experts.prepare_audio`` (voice activity
detection; log-mel or, for a Whisper expert, the samples) and the model's ONNX graph on the CPU with only
the audio expert present (``benchmarks.vad_robustness.AudioModel``: calibrated audio probabilities and
the 6-emotion head). Prints per corpus: clips, clips the detector refused, 3-class macro-F1 (argmax of
the calibrated probabilities, refused clips counted as wrong) and the head's 6-class accuracy on the clips'
mapped emotions.

The model folder is the service's (``SENTIMENT_MODEL_DIR``, default ``models``), so an earlier model is
scored from a checkout of an earlier revision::

    SENTIMENT_MODEL_DIR=/tmp/old/models python -m eval.audio_cross_corpus
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from app.preprocessing.experts import Resources, prepare_audio
from app.preprocessing.vad import VoiceActivityDetector
from app.training.cache import read_mono
from app.training.common import accuracy, macro_f1
from app.training.data import load_emovo, load_urdu
from benchmarks.vad_robustness import AudioModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("SENTIMENT_DATA_DIR", "../shared/data"))
    )
    args = p.parse_args()
    model = AudioModel()
    vad = VoiceActivityDetector(["CPUExecutionProvider"])
    res = Resources(tokenizer=None, vad=vad, audio_waveform=model.waveform)  # type: ignore[arg-type]
    print(f"model folder: {os.environ.get('SENTIMENT_MODEL_DIR', 'models')}")
    print("| corpus | clips | refused (no speech) | 3-class macro-F1 | 6-class head accuracy |")
    print("|---|---|---|---|---|")
    for name, sset in (
        ("EMOVO held-out speakers", load_emovo(args.data_dir)),
        ("URDU", load_urdu(args.data_dir)),
    ):
        rows = np.flatnonzero((sset.split == "test") & (sset.sentiment >= 0))
        p3, p6, refused = [], [], 0
        for i in rows:
            out = model.run(prepare_audio(read_mono(sset.files[i]), res))
            if out is None:
                refused += 1
                p3.append(-1)
                p6.append(-1)
                continue
            p3.append(int(np.argmax(out[0])))
            p6.append(int(np.argmax(out[1])))
        f1 = macro_f1(sset.sentiment[rows], np.asarray(p3))
        acc6 = accuracy(sset.emotion[rows], np.asarray(p6))
        print(f"| {name} | {len(rows)} | {refused} | {f1:.4f} | {acc6:.4f} |", flush=True)


if __name__ == "__main__":
    main()
