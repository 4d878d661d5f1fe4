"""Train the audio branch on CREMA-D (speaker-independent actor split)."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from app.training.audio_model import AudioCNN
from app.training.data import CremaSet
from app.training.whisper_audio import POOLED_DIM, WhisperAudio

#: Training crop length in frames (1.5 s at 100 frames/s).
CROP_FRAMES = 150


def pad_feats(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mels float32 [T_i, 64] → zero-padded batch [B, max T, 64] and frame mask float32 [B, max T]."""
    t = max(len(f) for f in feats)
    x = np.zeros((len(feats), t, feats[0].shape[1]), dtype=np.float32)
    m = np.zeros((len(feats), t), dtype=np.float32)
    for i, f in enumerate(feats):
        x[i, : len(f)] = f
        m[i, : len(f)] = 1.0
    return torch.from_numpy(x), torch.from_numpy(m)


@torch.inference_mode()
def predict_logits(
    model: AudioCNN | WhisperAudio, feats: list[np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Emotion logits float32 [N, 6] of whole clips (eval mode, no gradients): the CNN on log-mels float32
    [T, 64] batched by length, or the Whisper expert's head on its cached pooled features float32 [768]."""
    model.eval()
    if isinstance(model, WhisperAudio):
        x = torch.from_numpy(np.stack(feats).astype(np.float32)) if feats else torch.zeros(0, POOLED_DIM)
        return model.from_pooled(x).numpy()
    order = np.argsort([len(f) for f in feats])
    out = np.zeros((len(feats), model.head.out_features), dtype=np.float32)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        x, m = pad_feats([feats[i] for i in idx])
        out[idx] = model(x, m).numpy()
    return out


def _crops(
    feats: list[np.ndarray],
    idx: np.ndarray,
    rng: np.random.Generator,
    views: list[list[np.ndarray]] | None = None,
) -> list[np.ndarray]:
    """A random 1.5 s crop of each clip ``idx``; with ``views`` (augmented copies, ``views[k][i]``), each
    clip's source is drawn uniformly from its clean log-mel and its copies."""
    crops = []
    for i in idx:
        f = feats[i]
        if views:
            k = int(rng.integers(len(views) + 1))
            f = views[k - 1][i] if k else f
        if len(f) > CROP_FRAMES:
            s = rng.integers(0, len(f) - CROP_FRAMES + 1)
            f = f[s : s + CROP_FRAMES]
        crops.append(f)
    return crops


@torch.no_grad()
def _recompute_bn(
    model: AudioCNN, feats: list[np.ndarray], idx: np.ndarray, seed: int, batch_size: int
) -> None:
    """Re-estimate BatchNorm running statistics (cumulative average) with one pass over training crops, as
    SWA requires after averaging weights (Izmailov et al., UAI 2018)."""
    rng = np.random.default_rng(seed + 1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            mod.reset_running_stats()
            mod.momentum = None
    model.train()
    aug, model.spec_augment = model.spec_augment, False
    perm = rng.permutation(idx)
    for b in range(len(perm) // batch_size):
        x, m = pad_feats(_crops(feats, perm[b * batch_size : (b + 1) * batch_size], rng))
        model(x, m)
    model.spec_augment = aug
    model.eval()


def _mixup_loss(
    model: AudioCNN,
    xn: torch.Tensor,
    m: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Cross-entropy (label smoothing 0.05) of a batch of normalised log-mels, mixed up with
    Beta(``alpha``, ``alpha``) weights when ``alpha`` > 0 (Zhang et al., ICLR 2018)."""
    if alpha > 0:
        lam = float(rng.beta(alpha, alpha))
        j = torch.from_numpy(rng.permutation(len(y)))
        xn = lam * xn + (1 - lam) * xn[j]
        m = torch.maximum(m, m[j])
        z = model.from_normalised(xn, m)
        return lam * F.cross_entropy(z, y, label_smoothing=0.05) + (1 - lam) * F.cross_entropy(
            z, y[j], label_smoothing=0.05
        )
    return F.cross_entropy(model.from_normalised(xn, m), y, label_smoothing=0.05)


def _train_epoch(
    model: AudioCNN,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    data: CremaSet,
    feats: list[np.ndarray],
    tr: np.ndarray,
    rng: np.random.Generator,
    batch_size: int,
    mixup_alpha: float,
    desc: str,
    views: list[list[np.ndarray]] | None = None,
) -> None:
    """One epoch over the training clips ``tr`` in random order, a random 1.5 s crop of each (of a clean or
    augmented version, see :func:`_crops`)."""
    model.train()
    perm = rng.permutation(tr)
    for b in tqdm(range(len(perm) // batch_size), desc=desc, mininterval=10):
        idx = perm[b * batch_size : (b + 1) * batch_size]
        x, m = pad_feats(_crops(feats, idx, rng, views))
        y = torch.from_numpy(data.emotion[idx])
        loss = _mixup_loss(model, model.normalise(x, m), m, y, mixup_alpha, rng)
        opt.zero_grad()
        torch.autograd.backward(loss)
        opt.step()
        sched.step()


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def train_audio(
    data: CremaSet,
    feats: list[np.ndarray],
    seed: int,
    epochs: int,
    lr: float = 3e-3,
    batch_size: int = 32,
    mixup_alpha: float = 0.0,
    swa_epochs: int = 0,
    views: list[list[np.ndarray]] | None = None,
) -> tuple[AudioCNN, dict[str, object]]:
    """Adam + one-cycle LR, random 1.5 s crops, SpecAugment, optional mixup (Zhang et al., ICLR 2018) of
    normalised log-mels with Beta(``mixup_alpha``, ``mixup_alpha``) weights. ``views``: augmented log-mels
    of the same clips (``views[k][i]`` float32 [T, 64]; only training rows are read), drawn per crop with
    the clean one (:func:`app.training.audio_augment.augment`).

    Model choice on the validation actors only: the best single epoch of the second half of the one-cycle
    schedule by 6-class accuracy (epochs of the first half, with the learning rate near its peak, are not
    evaluated, to save time), or — when
    ``swa_epochs`` > 1 — the average of the weights of the last ``swa_epochs`` epochs (BatchNorm statistics
    re-estimated) if its validation accuracy is at least as high.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AudioCNN()
    model.spec_augment = True
    tr = np.where(data.split == "train")[0]
    va = np.where(data.split == "val")[0]
    steps = epochs * (len(tr) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    best, best_epoch, best_state, history = -1.0, 0, None, []
    swa_states: list[dict[str, torch.Tensor]] = []
    t0 = time.time()

    def val_acc(net: AudioCNN) -> float:
        return float((predict_logits(net, [feats[i] for i in va]).argmax(1) == data.emotion[va]).mean())

    for ep in range(epochs):
        desc = f"audio epoch {ep + 1}/{epochs}"
        _train_epoch(model, opt, sched, data, feats, tr, rng, batch_size, mixup_alpha, desc, views)
        if swa_epochs > 1 and ep >= epochs - swa_epochs:
            swa_states.append(_state(model))
        if ep + 1 < (epochs + 1) // 2:  # time budget: no epoch of the high-LR first half is selected
            tqdm.write(f"audio epoch {ep + 1}: ({time.time() - t0:.0f} s)")
            continue
        acc = val_acc(model)
        history.append(round(acc, 4))
        if acc > best:
            best, best_epoch, best_state = acc, ep + 1, _state(model)
        tqdm.write(f"audio epoch {ep + 1}: val 6-class acc {acc:.3f} ({time.time() - t0:.0f} s)")
    assert best_state is not None
    info: dict[str, object] = {
        "best_val_acc6": best,
        "best_epoch": best_epoch,
        "val_acc6_history": history,
        "epochs": epochs,
        "mixup_alpha": mixup_alpha,
        "augmented_copies": len(views) if views else 0,
        "n_train_clips": int(len(tr)),
    }
    chosen = "best_epoch"
    if swa_states:
        model.load_state_dict(_average(swa_states))
        _recompute_bn(model, feats, tr, seed, batch_size)
        swa_acc = val_acc(model)
        info["swa_epochs"] = len(swa_states)
        info["swa_val_acc6"] = swa_acc
        tqdm.write(
            f"audio weight average of the last {len(swa_states)} epochs: val 6-class acc {swa_acc:.3f}"
        )
        if swa_acc >= best:
            chosen = "weight_average"
    if chosen == "best_epoch":
        model.load_state_dict(best_state)
    info["chosen"] = chosen
    info["train_seconds"] = time.time() - t0
    model.spec_augment = False
    model.eval()
    return model, info


def _average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of state dicts (in float32, cast back to each tensor's dtype)."""
    return {
        k: (torch.stack([s[k].float() for s in states]).mean(0)).to(v.dtype) for k, v in states[-1].items()
    }
