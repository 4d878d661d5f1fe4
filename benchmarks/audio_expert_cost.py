"""Model-only CPU cost of the audio expert of two model folders, side by side in one run (issue 16: choose the
audio encoder by accuracy and by CPU ms per second of audio).

    python -m benchmarks.audio_expert_cost OLD_MODELS_DIR NEW_MODELS_DIR [--rounds 20] [--threads 1 2]

Each folder is a models directory as the service reads it (``<dir>/fused-sentiment/config.json``; an older
commit's ``models`` folder from ``git worktree add``). For speech of 1, 3, 8 and 15 s (``examples/
speech.wav`` repeated; the content does not change the cost) the service's own audio path prepares the
inputs (``prepare_audio`` with the voice activity detector, then ``collate``), and the fused graph runs with
only the audio expert present, batch 1; and once with only a text present (what a text-only request pays
for the audio expert). Per model, thread count and input: median ms per ``session.run`` over ``--rounds``
rounds, the two models alternating within each round, and ms per second of speech. Preprocessing is not
timed. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import soundfile as sf

from app.config import REPO_ROOT
from app.contract import ModelContract
from app.inference.collate import collate
from app.preprocessing.experts import Resources, prepare_audio, prepare_text
from app.preprocessing.pipeline import PreparedItem
from app.preprocessing.text import load_tokenizer
from app.preprocessing.vad import VoiceActivityDetector


class Model:
    """One model folder's fused graph on the CPU and its contract."""

    def __init__(self, models_dir: Path, threads: int) -> None:
        folder = models_dir / "fused-sentiment"
        config = json.loads((folder / "config.json").read_text())
        self.contract = ModelContract.from_config(config)
        self.waveform = "waveform" in {t.name for t in self.contract.expert("audio").inputs}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / config.get("model_file", "1/model.onnx")), opts, providers=["CPUExecutionProvider"]
        )
        vad = VoiceActivityDetector(["CPUExecutionProvider"])
        self.resources = Resources(
            load_tokenizer(folder / "tokenizer.json"), vad, audio_waveform=self.waveform
        )

    def feeds(self, audio: np.ndarray | None, text: str | None) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        if audio is not None:
            part = prepare_audio(audio, self.resources)
            assert part.tensors is not None, "the benchmark clip must hold speech"
            parts["audio"] = dict(part.tensors)
        if text is not None:
            t = prepare_text(text, self.resources)
            assert t.tensors is not None
            parts["text"] = dict(t.tensors)
        return collate([PreparedItem.of(**parts)], contract=self.contract)

    def time_ms(self, feeds: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        self.session.run(None, feeds)
        return 1000 * (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    speech, sr = sf.read(REPO_ROOT / "examples" / "speech.wav", dtype="float32")
    assert sr == 16000 and speech.ndim == 1
    clips = {
        f"{s} s speech": np.tile(speech, int(np.ceil(s * 16000 / speech.size)))[: s * 16000]
        for s in (1, 3, 8, 15)
    }
    print("| model | threads | input | speech s (after VAD) | median ms | ms per s of speech |")
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        models = {"old": Model(args.old, threads), "new": Model(args.new, threads)}
        cases: dict[str, tuple[np.ndarray | None, str | None]] = {k: (v, None) for k, v in clips.items()}
        cases["text only"] = (None, "The parcel arrived on Tuesday.")
        for name, (audio, text) in cases.items():
            feeds = {k: m.feeds(audio, text) for k, m in models.items()}
            seconds = {
                k: (
                    float(f["audio_mask"].sum()) / (16000 if m.waveform else 100)
                    if audio is not None
                    else 0.0
                )
                for (k, m), f in zip(models.items(), feeds.values(), strict=True)
            }
            times: dict[str, list[float]] = {k: [] for k in models}
            for k, m in models.items():
                m.time_ms(feeds[k])  # warm-up
            for _ in range(args.rounds):
                for k, m in models.items():
                    times[k].append(m.time_ms(feeds[k]))
            for k in models:
                med = statistics.median(times[k])
                per_s = f"{med / seconds[k]:.1f}" if seconds[k] else "—"
                print(f"| {k} | {threads} | {name} | {seconds[k]:.2f} | {med:.1f} | {per_s} |", flush=True)


if __name__ == "__main__":
    main()
