"""Audio robustness of the shipped model + Silero VAD on CREMA-D test actors (issue 16 bars).

    python -m benchmarks.vad_robustness [--clips 120] [--seed 0]

For a seeded subset of the test actors' clips (the split of ``app.training.data.load_crema``: actors
shuffled with seed 0, 70/15/15 %), each clip is run through the service's audio path
(``app.preprocessing.experts.prepare_audio`` with the VAD, collation, the committed ONNX model on the CPU)
alone and in variants: 1 / 5 / 20 s of digital silence before or after, 3 s of −60 dBFS white noise
before, a 1.5 s pause (silence) inserted in the middle, the 8 kHz telephone version (soxr to 8 kHz and back)
and a 300–3400 Hz band-pass. Per variant: % of clips whose audio label (argmax of the audio expert's 3
probabilities) equals the clip's own, max and mean |Δp|, and clips the gate dropped. The same table without
the VAD (the whole waveform, the behaviour before) is printed next to it. Also: 6-class emotion
accuracy (the audio network's head: the output of the Gemm node reading ``...audio.net.head.weight``, added
as a graph output) and 3-class
macro-F1 with and without the VAD, and the speech seconds the VAD finds. Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import soxr

from app.config import Settings
from app.contract import LABELS, SAMPLE_RATE, WAVEFORM_WINDOW_SAMPLES
from app.inference.collate import collate
from app.inference.repository import load_spec
from app.preprocessing import experts
from app.preprocessing.audio import log_mel
from app.preprocessing.experts import ExpertInput, Resources, prepare_audio
from app.preprocessing.pipeline import PreparedItem
from app.preprocessing.vad import EDGE_S, MAX_PAUSE_S, VoiceActivityDetector, trim_to_speech
from app.training.cache import read_mono
from app.training.data import CREMA_EMOTIONS, load_crema

#: initializer name of the audio network's head weight (its Gemm node's output is the 6 emotion logits)
HEAD_WEIGHT_SUFFIX = "audio.net.head.weight"
Variant = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def _bandpass(x: np.ndarray, lo: float = 300.0, hi: float = 3400.0) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, x.size).astype(np.float32)


def _noise(rng: np.random.Generator, seconds: float, dbfs: float) -> np.ndarray:
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 10 ** (dbfs / 20)).astype(np.float32)


VARIANTS: dict[str, Variant] = {
    "lead 1 s silence": lambda x, _: np.concatenate([_silence(1), x]),
    "lead 5 s silence": lambda x, _: np.concatenate([_silence(5), x]),
    "lead 20 s silence": lambda x, _: np.concatenate([_silence(20), x]),
    "trail 1 s silence": lambda x, _: np.concatenate([x, _silence(1)]),
    "trail 5 s silence": lambda x, _: np.concatenate([x, _silence(5)]),
    "trail 20 s silence": lambda x, _: np.concatenate([x, _silence(20)]),
    "lead 3 s −60 dBFS noise": lambda x, r: np.concatenate([_noise(r, 3, -60), x]),
    "1.5 s inner pause": lambda x, _: np.concatenate([x[: x.size // 2], _silence(1.5), x[x.size // 2 :]]),
    "8 kHz round trip": lambda x, _: soxr.resample(soxr.resample(x, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)[
        : x.size
    ].astype(np.float32),
    "300–3400 Hz band-pass": lambda x, _: _bandpass(x),
}


class AudioModel:
    """The committed model on the CPU with the 6-emotion head as an extra output."""

    def __init__(self) -> None:
        settings = Settings()
        spec = load_spec(settings.model_dir, settings.model_name, settings.model_version)
        model = onnx.load(str(spec.model_file))
        self.head = next(
            n.output[0]
            for n in model.graph.node
            if n.op_type == "Gemm" and any(i.endswith(HEAD_WEIGHT_SUFFIX) for i in n.input)
        )
        model.graph.output.append(onnx.ValueInfoProto(name=self.head))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        self.contract = spec.contract
        self.audio_index = [e.name for e in spec.contract.experts].index("audio")
        self.order = [spec.labels.index(label) for label in LABELS]
        #: the audio expert reads the speech samples (Whisper expert) instead of log-mel frames
        self.waveform = "waveform" in {t.name for t in spec.contract.expert("audio").inputs}

    def run(self, part: ExpertInput) -> tuple[np.ndarray, np.ndarray] | None:
        """(audio probabilities [3] in LABELS order, emotion logits [6]), None when not used."""
        if part.tensors is None:
            return None
        feeds = collate([PreparedItem.of(audio=dict(part.tensors))], contract=self.contract)
        _, experts, head = self.session.run([*self.contract.outputs, self.head], feeds)
        return np.asarray(experts[0, self.audio_index])[self.order], np.asarray(head[0])


def _no_vad(x: np.ndarray, waveform: bool) -> ExpertInput:
    if waveform:
        w = x[:WAVEFORM_WINDOW_SAMPLES]
        return ExpertInput({"waveform": w, "audio_mask": np.ones(w.shape[0], np.float32)})
    mel = log_mel(x)
    return ExpertInput({"audio_features": mel, "audio_mask": np.ones(mel.shape[0], np.float32)})


def _macro_f1(y: np.ndarray, p: np.ndarray, k: int = 3) -> float:
    f1 = []
    for c in range(k):
        tp, fp, fn = np.sum((p == c) & (y == c)), np.sum((p == c) & (y != c)), np.sum((p != c) & (y == c))
        f1.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(f1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=120, help="clips of the test actors (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pause", type=float, default=None, help="try another MAX_PAUSE_S (s)")
    parser.add_argument("--edge", type=float, default=None, help="try another EDGE_S (s)")
    parser.add_argument("--only", default=None, help="run only the variants whose name contains this")
    args = parser.parse_args()
    if args.max_pause is not None or args.edge is not None:
        experts.trim_to_speech = functools.partial(  # type: ignore[assignment]
            trim_to_speech,
            max_pause_s=MAX_PAUSE_S if args.max_pause is None else args.max_pause,
            edge_s=EDGE_S if args.edge is None else args.edge,
        )
    variants = {k: v for k, v in VARIANTS.items() if args.only is None or args.only in k}
    crema = load_crema(Settings().data_dir)
    test = np.flatnonzero(crema.split == "test")
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(test)[: args.clips] if args.clips else test
    vad = VoiceActivityDetector(["CPUExecutionProvider"])
    model = AudioModel()
    res = Resources(tokenizer=None, vad=vad, audio_waveform=model.waveform)  # type: ignore[arg-type]

    rows: dict[str, dict[str, list[Any]]] = {m: {} for m in ("vad", "no_vad")}
    acc: dict[str, list[tuple[int, int, int, int]]] = {"vad": [], "no_vad": []}
    speech_s, vad_ms, audio_s = [], 0.0, 0.0
    for i in idx:
        x = read_mono(crema.files[i])
        t0 = time.perf_counter()
        speech_s.append(trim_to_speech(vad, x).speech_s)
        vad_ms += (time.perf_counter() - t0) * 1000
        audio_s += x.size / SAMPLE_RATE
        for mode, prep in (
            ("vad", lambda w: prepare_audio(w, res)),
            ("no_vad", lambda w: _no_vad(w, model.waveform)),
        ):
            base = model.run(prep(x))
            if base is None:
                acc[mode].append((int(crema.emotion[i]), -1, int(crema.sentiment[i]), -1))
                continue
            p0, head = base
            acc[mode].append(
                (int(crema.emotion[i]), int(np.argmax(head)), int(crema.sentiment[i]), int(np.argmax(p0)))
            )
            for name, make in variants.items():
                out = model.run(prep(make(x, rng)))
                row = rows[mode].setdefault(name, [])
                row.append(
                    None
                    if out is None
                    else (int(np.argmax(out[0]) == np.argmax(p0)), float(np.abs(out[0] - p0).max()))
                )

    pause = args.max_pause if args.max_pause is not None else MAX_PAUSE_S
    edge = EDGE_S if args.edge is None else args.edge
    print(
        f"CREMA-D test actors: {len(idx)} clips (seed {args.seed}), {len(CREMA_EMOTIONS)} emotions, "
        f"pauses cut to {pause} s, edges kept {edge} s\n"
    )
    report(variants, rows, acc, np.array(speech_s), vad_ms / audio_s)


def report(
    variants: dict[str, Variant],
    rows: dict[str, dict[str, list[Any]]],
    acc: dict[str, list[tuple[int, int, int, int]]],
    s: np.ndarray,
    vad_ms_per_s: float,
) -> None:
    """Print the Markdown table and the accuracy / speech / time lines."""
    print(
        "| variant | same label (VAD) | max / mean |Δp| (VAD) | dropped (VAD) "
        "| same label (no VAD) | max |Δp| (no VAD) |"
    )
    print("|---|---|---|---|---|---|")
    for name in variants:
        cells = []
        for mode in ("vad", "no_vad"):
            got = [r for r in rows[mode].get(name, []) if r is not None]
            dropped = len(rows[mode].get(name, [])) - len(got)
            same = 100 * np.mean([r[0] for r in got]) if got else float("nan")
            dps = [r[1] for r in got]
            cells.append(
                (
                    same,
                    max(dps, default=float("nan")),
                    float(np.mean(dps)) if dps else float("nan"),
                    dropped,
                    len(got),
                )
            )
        v, n = cells
        print(f"| {name} | {v[0]:.1f} % of {v[4]} | {v[1]:.3f} / {v[2]:.3f} | {v[3]} ", end="")
        print(f"| {n[0]:.1f} % | {n[1]:.3f} |")
    print()
    for mode in ("vad", "no_vad"):
        a = np.array(acc[mode])
        used = a[:, 1] >= 0
        acc6 = float(np.mean(a[used, 0] == a[used, 1]))
        f1 = _macro_f1(a[used, 2], a[used, 3])
        print(f"- {mode}: audio used on {used.sum()} of {len(a)} clips; ", end="")
        print(f"6-class accuracy {acc6:.3f}; 3-class macro-F1 {f1:.3f}")
    print(
        f"- speech found by the VAD per clip: min {s.min():.2f} s, "
        f"1st percentile {np.percentile(s, 1):.2f} s, median {np.median(s):.2f} s; "
        f"clips under 0.5 s: {(s < 0.5).sum()}"
    )
    print(f"- VAD time (trim_to_speech, 1 thread, this machine): {vad_ms_per_s:.1f} ms per second of audio")


if __name__ == "__main__":
    main()
