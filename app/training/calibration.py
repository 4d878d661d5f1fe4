"""From three trained branches to one calibrated product of experts: the emotion → sentiment maps (with the
data-driven choice for "surprise"), branch priors, the shipped float16 weights, a temperature per branch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.contract import LABELS, MODALITIES
from app.training import data as D
from app.training.branch_logits import BranchLogits
from app.training.branch_stages import AudioStage, FaceStage
from app.training.common import ece, fit_temperature, plot_reliability, softmax
from app.training.export import round_to_fp16
from app.training.face_model import MiniXception
from app.training.fusion import AudioClassifier, FaceClassifier, FusedSentiment, Fusion, TextClassifier
from app.training.run import Run
from app.training.text_stage import TextStage
from app.training.train_face import face_logits

#: FER2013 emotion → sentiment, surprise (5) left out: angry, disgust, fear, sad → negative; happy; neutral
FER_BASE_MAP = {0: 0, 1: 0, 2: 0, 3: 2, 4: 0, 6: 1}


def calibrate(
    run: Run,
    name: str,
    val_logits: np.ndarray,
    val_y: np.ndarray,
    test_logits: np.ndarray,
    test_y: np.ndarray,
    temp: float | None = None,
    plot: bool = True,
) -> tuple[float, dict[str, float]]:
    """Fit a temperature on the validation logits [N, 3] (or use ``temp``) and measure ECE (15 bins) / NLL
    on the test logits before and after; with ``plot`` writes ``eval/reliability_<name>.png``."""
    if temp is None:
        temp = fit_temperature(val_logits, val_y)
    before, after = softmax(test_logits), softmax(test_logits / temp)
    res = {
        "temperature": temp,
        "ece_before": ece(before, test_y),
        "ece_after": ece(after, test_y),
        "nll_before": float(-np.log(before[np.arange(len(test_y)), test_y] + 1e-12).mean()),
        "nll_after": float(-np.log(after[np.arange(len(test_y)), test_y] + 1e-12).mean()),
    }
    if plot:
        plot_reliability(
            before,
            after,
            test_y,
            f"{name} branch (test), T = {temp:.2f}",
            run.eval_dir / f"reliability_{name}.png",
        )
    return temp, res


def emotion_map(n_from: int, groups: dict[int, int | list[float]]) -> torch.Tensor:
    """Emotion → sentiment matrix float32 [3, n_from]: column ``src`` is one-hot at ``groups[src]`` (an
    int) or the given distribution over the 3 sentiments (a list)."""
    m = torch.zeros(3, n_from)
    for src, dst in groups.items():
        if isinstance(dst, int):
            m[dst, src] = 1.0
        else:
            m[:, src] = torch.tensor(dst)
    return m


def choose_surprise(run: Run, mv: D.MvsaSet, faces: np.ndarray, found: np.ndarray, net: MiniXception) -> int:
    """The sentiment for FER's "surprise": the one with the lowest mean NLL of MVSA-Single's image_label
    (train + val images with a detected face) under each choice; recorded in the run's metrics."""
    mv_face_logits = face_logits(net, faces, True)
    sel = np.where(found & np.isin(mv.split, ["train", "val"]) & (mv.image_label >= 0))[0]
    p7 = softmax(mv_face_logits[sel])
    surprise_scores = {}
    for dst, name in enumerate(LABELS):
        m = emotion_map(7, {**FER_BASE_MAP, 5: dst}).numpy()
        p3 = p7 @ m.T
        surprise_scores[name] = float(-np.log(p3[np.arange(len(sel)), mv.image_label[sel]] + 1e-12).mean())
    surprise_to = int(np.argmin([surprise_scores[n] for n in LABELS]))
    run.metrics["face_surprise_mapping"] = {
        "chosen": LABELS[surprise_to],
        "criterion": "mean NLL of MVSA-Single image_label (train+val images with a detected face) "
        "under each choice",
        "n_images": int(len(sel)),
        "nll": surprise_scores,
    }
    print(f"surprise → {LABELS[surprise_to]} ({surprise_scores})", flush=True)
    return surprise_to


@dataclass
class Branches:
    """The product-of-experts model (float16-rounded weights) and what its evaluation needs: the emotion →
    sentiment maps, FER's 7 → 3 class map ``fer3`` [7], the training priors per modality [3], and the text
    branch's float32 weights before rounding."""

    model: FusedSentiment
    face_map: torch.Tensor
    audio_map: torch.Tensor
    fer3: np.ndarray
    priors: dict[str, np.ndarray]
    fp32_text_state: dict[str, torch.Tensor]


def build_branches(t: TextStage, f: FaceStage, a: AudioStage, surprise_to: int) -> Branches:
    """Wrap the three networks as 3-sentiment classifiers, fuse them (PoE), round the weights to float16
    (every later metric is measured with the shipped weights) and compute the branch priors."""
    text_clf: TextClassifier = t.model
    face_map = emotion_map(7, {**FER_BASE_MAP, 5: surprise_to})
    face_clf = FaceClassifier(f.net, face_map, tta=True).eval()
    audio_map = emotion_map(6, {i: D.CREMA_TO_SENTIMENT[e] for i, e in enumerate(D.CREMA_EMOTIONS)})
    audio_clf = AudioClassifier(a.net, audio_map).eval()
    model = FusedSentiment(text_clf, face_clf, audio_clf, Fusion()).eval()
    fp32_text_state = {k: v.clone() for k, v in text_clf.state_dict().items()}
    round_to_fp16(model)
    ts, fer, crema = t.data.ts, f.fer, a.crema
    fer3 = np.array([face_map[:, c].argmax().item() for c in range(7)])
    priors = {
        "text": np.bincount(ts.labels[ts.split == "train"], minlength=3) / (ts.split == "train").sum(),
        "image": np.bincount(fer3[fer.labels[fer.split == "Training"]], minlength=3)
        / (fer.split == "Training").sum(),
        "audio": np.bincount(crema.sentiment[crema.split == "train"], minlength=3)
        / (crema.split == "train").sum(),
    }
    return Branches(model, face_map, audio_map, fer3, priors, fp32_text_state)


@dataclass
class Calibration:
    """Temperatures per modality (text, image, audio) and the calibration metrics of each branch."""

    temps: dict[str, float]
    metrics: dict[str, Any]


def calibrate_branches(
    run: Run, t: TextStage, f: FaceStage, a: AudioStage, b: Branches, lg: BranchLogits
) -> Calibration:
    """Temperatures on validation data (text: val splits; image: PublicTest half A; audio: val actors), ECE
    on test data (test splits, half B, test actors); written into the fusion with the branch priors and a
    uniform target prior π."""
    ts, fer, crema, model = t.data.ts, f.fer, a.crema, b.model
    calib: dict[str, Any] = {}
    tv, tt = np.where(ts.split == "val")[0], np.where(ts.split == "test")[0]
    text = model.text
    temp_t, calib["text"] = calibrate(
        run, "text", lg.text(text, tv), ts.labels[tv], lg.text(text, tt), ts.labels[tt]
    )
    hold, public_b = f.hold, f.public_b
    temp_f, calib["image"] = calibrate(
        run, "image", lg.face(hold), b.fer3[fer.labels[hold]], lg.face(public_b), b.fer3[fer.labels[public_b]]
    )
    av, at = np.where(crema.split == "val")[0], np.where(crema.split == "test")[0]
    temp_a, calib["audio"] = calibrate(
        run, "audio", lg.audio(av), crema.sentiment[av], lg.audio(at), crema.sentiment[at]
    )
    fusion = model.fusion
    with torch.no_grad():
        fusion.log_temperature.copy_(torch.log(torch.tensor([temp_t, temp_f, temp_a])))
        fusion.log_branch_prior.copy_(
            torch.log(torch.from_numpy(np.stack([b.priors[m] for m in MODALITIES])).float())
        )
        fusion.log_prior.copy_(torch.log(torch.full((3,), 1.0 / 3.0)))
    run.metrics["calibration"] = calib
    return Calibration({"text": temp_t, "image": temp_f, "audio": temp_a}, calib)
