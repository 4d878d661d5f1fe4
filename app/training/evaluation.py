"""Final branch metrics of the shipped weights: held-out text vs VADER, float16 vs float32 text weights,
FER2013 PublicTest (7 emotions, 3 sentiments), CREMA-D test actors (6 emotions, 3 sentiments), and the
audio expert across corpora (EMOVO's held-out speakers, URDU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from app.contract import LABELS
from app.training import data as D
from app.training.branch_logits import BranchLogits
from app.training.branch_stages import AudioStage, FaceStage, speech_features
from app.training.calibration import Branches
from app.training.common import accuracy, macro_f1, plot_confusion, softmax
from app.training.fusion import FusedSentiment, text_only_log_probs
from app.training.run import Run
from app.training.text_stage import TextStage, eval_text
from app.training.train_audio import predict_logits


def text_metrics(run: Run, t: TextStage, lg: BranchLogits, final: FusedSentiment) -> dict[str, Any]:
    """The ``text`` section: held-out metrics of the shipped head, leave-one-out results, training record."""
    args = run.args
    return {
        "heldout": eval_text(
            run, t.data, lambda idx: text_only_log_probs(final.fusion, lg.text(final.text, idx))
        ),
        "leave_one_corpus_out": t.loco,
        "training": t.info,
        "mvsa_text": bool(args.mvsa_text),
        "epochs": args.text_epochs,
        "split_layer": int(t.data.split),
        "bf16_training": bool(args.text_bf16),
        "label_rule": f"mean rating <= -{D.VADER_NEUTRAL_BAND} negative, >= +{D.VADER_NEUTRAL_BAND} "
        "positive, else neutral (VADER corpora); MELD Sentiment column",
    }


def fp16_metrics(t: TextStage, b: Branches, lg: BranchLogits, final: FusedSentiment) -> dict[str, float]:
    """Effect of the float16 weight rounding on the text branch (the largest part of the graph) on the
    test splits: max |Δp|, macro-F1 in float32 and float16, argmax agreement."""
    ts = t.data.ts
    tt = np.where(ts.split == "test")[0]
    fp32_text = t.data.new_classifier()
    fp32_text.load_state_dict(b.fp32_text_state)
    fp32_text.eval()
    p32 = softmax(lg.text(fp32_text, tt))
    p16 = softmax(lg.text(final.text, tt))
    return {
        "text_test_max_abs_dprob": float(np.abs(p32 - p16).max()),
        "text_test_macro_f1_fp32": macro_f1(ts.labels[tt], p32.argmax(1)),
        "text_test_macro_f1_fp16": macro_f1(ts.labels[tt], p16.argmax(1)),
        "text_test_argmax_agreement": float((p32.argmax(1) == p16.argmax(1)).mean()),
    }


def _calibrated_branch_argmax(final: FusedSentiment, logits: np.ndarray, branch: int) -> np.ndarray:
    """Class decision [N] of one branch after the fusion's calibration and prior shift (uniform prior)."""
    n = len(logits)
    parts = [torch.zeros(n, 3), torch.zeros(n, 3), torch.zeros(n, 3)]
    parts[branch] = torch.from_numpy(logits)
    q: np.ndarray = final.fusion.calibrated(torch.stack(parts, 1))[:, branch].numpy()
    decision: np.ndarray = q.argmax(1)
    return decision


def face_metrics(
    run: Run, f: FaceStage, b: Branches, lg: BranchLogits, final: FusedSentiment
) -> dict[str, Any]:
    """The ``face`` section (FER2013 PublicTest) and its confusion matrices (7 emotions, 3 sentiments)."""
    fer, public, fer3 = f.fer, f.public, b.fer3
    fl = lg.emotion_public(final.face.net, public)
    fer3_pred_q = _calibrated_branch_argmax(final, lg.face(public, final.face), 1)
    out = {
        "ported_weights": f.ported,
        "training": f.info,
        "publictest_acc7": accuracy(fer.labels[public], fl.argmax(1)),
        "publictest_half_b_acc7": accuracy(
            fer.labels[f.public_b], lg.emotion_public(final.face.net, f.public_b).argmax(1)
        ),
        "publictest_macro_f1_3class": macro_f1(fer3[fer.labels[public]], fer3_pred_q),
        "publictest_macro_f1_3class_native_prior": macro_f1(
            fer3[fer.labels[public]], lg.face(public, final.face).argmax(1)
        ),
        "mapping": {D.FER_EMOTIONS[c]: LABELS[int(b.face_map[:, c].argmax())] for c in range(7)},
        "n_publictest": int(len(public)),
    }
    plot_confusion(
        fer.labels[public],
        fl.argmax(1),
        list(D.FER_EMOTIONS),
        "FER2013 PublicTest, 7 emotions",
        run.eval_dir / "confusion_face_7class.png",
    )
    plot_confusion(
        fer3[fer.labels[public]],
        fer3_pred_q,
        list(LABELS),
        "FER2013 PublicTest, 3 sentiments",
        run.eval_dir / "confusion_face_3class.png",
    )
    return out


def audio_metrics(run: Run, a: AudioStage, lg: BranchLogits, final: FusedSentiment) -> dict[str, Any]:
    """The ``audio`` section (CREMA-D test actors) and its confusion matrices (6 emotions, 3 sentiments).
    ``final.audio.net`` is ``a.net`` (learned fusion does not train the audio branch)."""
    crema = a.crema
    at = np.where(crema.split == "test")[0]
    a6 = lg.audio6(at)
    a3 = _calibrated_branch_argmax(final, lg.audio(at), 2)
    out = {
        "training": a.info,
        "test_actors": sorted({int(v) for v in crema.actors[at]}),
        "n_test_clips": int(len(at)),
        "test_acc6": accuracy(crema.emotion[at], a6.argmax(1)),
        "test_macro_f1_3class": macro_f1(crema.sentiment[at], a3),
        "test_macro_f1_3class_native_prior": macro_f1(crema.sentiment[at], lg.audio(at).argmax(1)),
    }
    plot_confusion(
        crema.emotion[at],
        a6.argmax(1),
        list(D.CREMA_EMOTIONS),
        "CREMA-D test actors, 6 emotions",
        run.eval_dir / "confusion_audio_6class.png",
    )
    plot_confusion(
        crema.sentiment[at],
        a3,
        list(LABELS),
        "CREMA-D test actors, 3 sentiments",
        run.eval_dir / "confusion_audio_3class.png",
    )
    return out


def cross_corpus_metrics(run: Run, a: AudioStage, lg: BranchLogits, final: FusedSentiment) -> dict[str, Any]:
    """Cross-corpus scores of the audio expert: EMOVO's held-out speakers (:data:`D.EMOVO_TEST_SPEAKERS`;
    surprise left out) and all of URDU. Per corpus: n, 3-class macro-F1 after calibration (uniform prior,
    as the CREMA-D row), and the 6-emotion head's accuracy on the clips' mapped emotions."""
    out: dict[str, Any] = {}
    emovo, urdu = D.load_emovo(run.args.data_dir), D.load_urdu(run.args.data_dir)
    for name, sset in (("emovo_test_speakers", emovo), ("urdu", urdu)):
        rows = np.flatnonzero((sset.split == "test") & (sset.sentiment >= 0))
        feats = speech_features(run.args, [sset.files[i] for i in rows], name.split("_")[0])
        a6 = predict_logits(a.net, feats)
        p3 = softmax(a6) @ lg.audio_map.numpy().T
        a3 = _calibrated_branch_argmax(final, np.log(p3 + 1e-12).astype(np.float32), 2)
        out[name] = {
            "n": int(len(rows)),
            "macro_f1_3class": macro_f1(sset.sentiment[rows], a3),
            "acc6": accuracy(sset.emotion[rows], a6.argmax(1)),
        }
    return out


def evaluate_final(
    run: Run, t: TextStage, f: FaceStage, a: AudioStage, b: Branches, lg: BranchLogits, final: FusedSentiment
) -> None:
    """Record the final branch metrics of the shipped model ``final`` in ``run.metrics``."""
    run.metrics["text"] = text_metrics(run, t, lg, final)
    run.metrics["fp16_weights_vs_fp32"] = fp16_metrics(t, b, lg, final)
    run.metrics["face"] = face_metrics(run, f, b, lg, final)
    run.metrics["audio"] = audio_metrics(run, a, lg, final)
    run.metrics["audio"]["cross_corpus"] = cross_corpus_metrics(run, a, lg, final)
