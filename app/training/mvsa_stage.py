"""MVSA-Single stage: text-only, image-only and fused evaluation on held-out image+text pairs, learned
fusion, and the rule that decides which fusion ships."""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.contract import LABELS
from app.training import data as D
from app.training.branch_logits import BranchLogits
from app.training.branch_stages import FaceStage
from app.training.calibration import Branches, Calibration, calibrate
from app.training.common import accuracy, channels_last, macro_f1, plot_confusion
from app.training.export import round_to_fp16
from app.training.fusion import FusedSentiment, text_only_log_probs
from app.training.learned_fusion import PairBatch, branch_logits, fused_forward, train_learned_fusion
from app.training.run import Run
from app.training.text_stage import TextStage, eval_text
from app.training.train_text import _batch

#: FER2013 PublicTest 7-class accuracy bar (issue 2)
FER_ACC7_BAR = 0.64
#: ECE bar after calibration (issue 2)
ECE_BAR = 0.05


@dataclass
class MvsaPairs:
    """MVSA-Single pairs with the frozen parts of the text and face branches run once: ``pooled`` float32
    [N, 384] sentence vectors, ``feat`` [N, V, 128, 4, 4] face view features, ``found`` bool [N]."""

    mv: D.MvsaSet
    found: np.ndarray
    pooled: np.ndarray
    feat: torch.Tensor

    def batch(self, rows: np.ndarray, target: np.ndarray) -> PairBatch:
        """The pairs ``rows`` with targets ``target[rows]``; text always present, face where found."""
        present = np.zeros((len(rows), 3), dtype=bool)
        present[:, 0] = True
        present[:, 1] = self.found[rows]
        r = torch.from_numpy(rows)
        return PairBatch(
            torch.from_numpy(self.pooled[rows]),
            self.feat[r],
            torch.from_numpy(present),
            torch.from_numpy(target[rows]),
        )


def mvsa_pairs(t: TextStage, model: FusedSentiment, faces: np.ndarray, found: np.ndarray) -> MvsaPairs:
    """Run the frozen upper text layers (from the cached states) and the face features on every pair."""
    data, mv = t.data, t.data.mv
    states, split = data.states, data.split
    mv_idx = np.arange(len(mv.texts)) + data.n
    with torch.no_grad():
        pooled = np.zeros((len(mv.texts), 384), dtype=np.float32)
        order = np.argsort([len(states[i]) for i in mv_idx])
        for s in range(0, len(order), 128):
            sel = order[s : s + 128]
            h, m = _batch(states, mv_idx[sel])
            pooled[sel] = model.text.pooled_from_states(h, m, split).numpy()
        ft = torch.from_numpy(faces).contiguous(memory_format=torch.channels_last)
        face_cl = channels_last(copy.deepcopy(model.face))  # faster, same arithmetic
        feat = torch.cat([face_cl.view_features(ft[s : s + 64]) for s in range(0, len(ft), 64)])
    return MvsaPairs(mv, found, pooled, feat.contiguous())


def mvsa_eval(fm: FusedSentiment, pairs: MvsaPairs, rows: np.ndarray) -> dict[str, Any]:
    """Fused, text-only and image-only (face subset) macro-F1 / accuracy / NLL of ``fm`` on pairs ``rows``
    against combined_label; returns {"metrics", "pred", "y"}."""
    mv = pairs.mv
    b = pairs.batch(rows, np.maximum(mv.combined_label, 0))
    with torch.no_grad():
        probs = fused_forward(fm, b, torch.arange(len(rows))).numpy()
        q = fm.fusion.calibrated(branch_logits(fm, b, torch.arange(len(rows)))).numpy()
    y = mv.combined_label[rows]
    fr = pairs.found[rows]
    res = {
        "n_pairs": int(len(rows)),
        "face_coverage": float(fr.mean()),
        "fused_macro_f1": macro_f1(y, probs.argmax(1)),
        "fused_accuracy": accuracy(y, probs.argmax(1)),
        "fused_nll": float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean()),
        "text_only_macro_f1": macro_f1(y, q[:, 0].argmax(1)),
        "text_only_accuracy": accuracy(y, q[:, 0].argmax(1)),
        "text_only_vs_text_label_macro_f1": macro_f1(mv.text_label[rows], q[:, 0].argmax(1)),
        "face_subset": {
            "n_pairs": int(fr.sum()),
            "image_only_macro_f1": macro_f1(y[fr], q[fr, 1].argmax(1)),
            "image_only_accuracy": accuracy(y[fr], q[fr, 1].argmax(1)),
            "image_only_vs_image_label_macro_f1": macro_f1(mv.image_label[rows][fr], q[fr, 1].argmax(1)),
            "text_only_macro_f1": macro_f1(y[fr], q[fr, 0].argmax(1)),
            "fused_macro_f1": macro_f1(y[fr], probs[fr].argmax(1)),
        },
    }
    return {"metrics": res, "pred": probs.argmax(1), "y": y}


@dataclass
class LearnedFusion:
    """Learned fusion next to the product of experts on the held-out pairs (``poe`` / ``lf``: results of
    :func:`mvsa_eval`), and its training record."""

    learned: FusedSentiment
    info: dict[str, Any]
    poe: dict[str, Any]
    lf: dict[str, Any]


def fit_learned_fusion(args: argparse.Namespace, model: FusedSentiment, pairs: MvsaPairs) -> LearnedFusion:
    """Train fusion weights + text/face heads on the train pairs (selection on val pairs), round to float16,
    and evaluate both fusions on the test pairs ('inconsistent' pairs have no 3-class target)."""
    mv = pairs.mv
    keep = mv.combined_label >= 0
    mtr = np.where(keep & (mv.split == "train"))[0]
    mva = np.where(keep & (mv.split == "val"))[0]
    mte = np.where(keep & (mv.split == "test"))[0]
    poe = mvsa_eval(model, pairs, mte)
    learned, lf_info = train_learned_fusion(
        model,
        pairs.batch(mtr, mv.combined_label),
        pairs.batch(mva, mv.combined_label),
        args.text_split_layer,
        optimizer=args.fusion_optimizer,
        lr=args.fusion_lr,
        l2=args.fusion_l2,
        seed=args.seed,
    )
    round_to_fp16(learned)
    return LearnedFusion(learned, lf_info, poe, mvsa_eval(learned, pairs, mte))


def text_bar(v: dict[str, Any]) -> bool:
    """Held-out text bar: the model's macro-F1 beats VADER at ±0.05 and VADER with a tuned threshold."""
    return bool(v["model_macro_f1"] > max(v["vader_macro_f1"], v["vader_tuned_macro_f1"]))


@dataclass
class HeadCheck:
    """What learned fusion did to the text and face heads on their own corpora."""

    poe_text: dict[str, Any]
    learned_text: dict[str, Any]
    learned_calib: dict[str, Any]
    fer_acc7: dict[str, float]
    bars_lost: list[str]


def check_learned_heads(
    run: Run, t: TextStage, f: FaceStage, b: Branches, cal: Calibration, lg: BranchLogits, lf: LearnedFusion
) -> HeadCheck:
    """Learned fusion changed the text and face heads (not the temperatures): their bars on the branch
    corpora (held-out text vs VADER, ECE, FER2013 accuracy) before and after."""
    model, learned, ts, fer = b.model, lf.learned, t.data.ts, f.fer
    tt = np.where(ts.split == "test")[0]
    poe_text = eval_text(run, t.data, lambda idx: text_only_log_probs(model.fusion, lg.text(model.text, idx)))
    learned_text = eval_text(
        run, t.data, lambda idx: text_only_log_probs(learned.fusion, lg.text(learned.text, idx))
    )
    no_val = (np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    pb = f.public_b
    learned_calib = {
        "text": calibrate(
            run, "text", *no_val, lg.text(learned.text, tt), ts.labels[tt], temp=cal.temps["text"], plot=False
        )[1],
        "image": calibrate(
            run, "image", *no_val, lg.face(pb, learned.face), b.fer3[fer.labels[pb]],
            temp=cal.temps["image"], plot=False,
        )[1],
    }  # fmt: skip
    fer_acc7 = {
        name: accuracy(fer.labels[f.public], lg.emotion_public(m.face.net, f.public).argmax(1))
        for name, m in (("poe", model), ("learned", learned))
    }
    bars_lost = [
        f"text held-out {c}" for c in poe_text if text_bar(poe_text[c]) and not text_bar(learned_text[c])
    ]
    bars_lost += [
        f"ECE {k}"
        for k in ("text", "image")
        if cal.metrics[k]["ece_after"] <= ECE_BAR < learned_calib[k]["ece_after"]
    ]
    if fer_acc7["poe"] >= FER_ACC7_BAR > fer_acc7["learned"]:
        bars_lost.append("FER2013 7-class accuracy")
    return HeadCheck(poe_text, learned_text, learned_calib, fer_acc7, bars_lost)


def _recalibrate_shipped_heads(
    run: Run,
    t: TextStage,
    f: FaceStage,
    b: Branches,
    cal: Calibration,
    lg: BranchLogits,
    final: FusedSentiment,
) -> None:
    """Learned fusion ships: measure the text and image calibration rows on its heads (same temperatures)."""
    ts, fer, pb = t.data.ts, f.fer, f.public_b
    tt = np.where(ts.split == "test")[0]
    no_val = (np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    run.metrics["calibration_before_learned_fusion"] = {k: dict(v) for k, v in cal.metrics.items()}
    _, cal.metrics["text"] = calibrate(
        run, "text", *no_val, lg.text(final.text, tt), ts.labels[tt], temp=cal.temps["text"]
    )
    _, cal.metrics["image"] = calibrate(
        run, "image", *no_val, lg.face(pb, final.face), b.fer3[fer.labels[pb]], temp=cal.temps["image"]
    )


def choose_fusion(
    run: Run, t: TextStage, f: FaceStage, b: Branches, cal: Calibration, lg: BranchLogits, lf: LearnedFusion
) -> tuple[FusedSentiment, bool]:
    """Issue 2's rule: ship learned fusion if it beats the product of experts on the held-out pairs (higher
    macro-F1 and lower NLL of the fused output), and it must not lose a bar that the product-of-experts
    branches meet (learned fusion also adapts the text and face heads to MVSA-Single). Records
    ``metrics["mvsa"]``, writes ``eval/confusion_mvsa_fused.png``; returns (shipped model, learned?)."""
    heads = check_learned_heads(run, t, f, b, cal, lg, lf)
    beats_poe = (
        lf.lf["metrics"]["fused_macro_f1"] > lf.poe["metrics"]["fused_macro_f1"]
        and lf.lf["metrics"]["fused_nll"] < lf.poe["metrics"]["fused_nll"]
    )
    ship_learned = beats_poe and not heads.bars_lost
    final = lf.learned if ship_learned else b.model
    chosen = lf.lf if ship_learned else lf.poe
    if ship_learned:
        _recalibrate_shipped_heads(run, t, f, b, cal, lg, final)
    plot_confusion(
        chosen["y"],
        chosen["pred"],
        list(LABELS),
        "MVSA-Single held-out, fused (text + image)",
        run.eval_dir / "confusion_mvsa_fused.png",
    )
    run.metrics["mvsa"] = mvsa_metrics(run.args, t, lf, heads, beats_poe, ship_learned)
    return final, ship_learned


def _heldout_summary(text: dict[str, Any]) -> dict[str, Any]:
    keys = ("model_macro_f1", "vader_macro_f1", "vader_tuned_macro_f1")
    return {c: {k: v[k] for k in keys} for c, v in text.items()}


def mvsa_metrics(
    args: argparse.Namespace, t: TextStage, lf: LearnedFusion, heads: HeadCheck, beats_poe: bool, ship: bool
) -> dict[str, Any]:
    """The ``mvsa`` section of the metrics: both fusions on the held-out pairs and the shipping decision."""
    learned = lf.learned
    return {
        "split": f"random 60/20/20 (seed {args.seed + 100}) of {len(t.data.mv.ids)} pairs; 'inconsistent' "
        "pairs excluded",
        "product_of_experts": lf.poe["metrics"],
        "learned_fusion": lf.lf["metrics"],
        "learned_fusion_training": lf.info,
        "learned_fusion_learned_values": {
            "weight": learned.fusion.weight.tolist(),
            "bias": learned.fusion.bias.tolist(),
            "temperature": torch.exp(learned.fusion.log_temperature).tolist(),
        },
        "learned_text_branch_keeps_vader_bars": all(text_bar(v) for v in heads.learned_text.values()),
        "learned_beats_poe_on_heldout_pairs": beats_poe,
        "bars_lost_by_learned_heads": heads.bars_lost,
        "learned_heads_calibration": heads.learned_calib,
        "fer_publictest_acc7": heads.fer_acc7,
        "text_heldout_learned_head": _heldout_summary(heads.learned_text),
        "text_heldout_before_learned_fusion": _heldout_summary(heads.poe_text),
        "shipped": "learned" if ship else "product_of_experts",
    }
