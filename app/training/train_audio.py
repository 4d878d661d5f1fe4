"""Train the audio branch on CREMA-D (speaker-independent actor split)."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from app.training.audio_model import AudioCNN
from app.training.data import CremaSet

#: Training crop length in frames (1.5 s at 100 frames/s).
CROP_FRAMES = 150


def pad_feats(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(len(f) for f in feats)
    x = np.zeros((len(feats), t, feats[0].shape[1]), dtype=np.float32)
    m = np.zeros((len(feats), t), dtype=np.float32)
    for i, f in enumerate(feats):
        x[i, : len(f)] = f
        m[i, : len(f)] = 1.0
    return torch.from_numpy(x), torch.from_numpy(m)


@torch.inference_mode()
def predict_logits(model: AudioCNN, feats: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
    model.eval()
    order = np.argsort([len(f) for f in feats])
    out = np.zeros((len(feats), model.head.out_features), dtype=np.float32)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        x, m = pad_feats([feats[i] for i in idx])
        out[idx] = model(x, m).numpy()
    return out


def train_audio(
    data: CremaSet, feats: list[np.ndarray], seed: int, epochs: int, lr: float = 3e-3, batch_size: int = 32
) -> tuple[AudioCNN, dict[str, float]]:
    """Adam + one-cycle LR, random 1.5 s crops, SpecAugment; keeps the epoch with best validation accuracy."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AudioCNN()
    model.spec_augment = True
    tr = np.where(data.split == "train")[0]
    va = np.where(data.split == "val")[0]
    steps = epochs * (len(tr) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    best, best_state, history = -1.0, None, []
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = rng.permutation(tr)
        bar = tqdm(range(len(perm) // batch_size), desc=f"audio epoch {ep + 1}/{epochs}", mininterval=10)
        for b in bar:
            idx = perm[b * batch_size : (b + 1) * batch_size]
            crops = []
            for i in idx:
                f = feats[i]
                if len(f) > CROP_FRAMES:
                    s = rng.integers(0, len(f) - CROP_FRAMES + 1)
                    f = f[s : s + CROP_FRAMES]
                crops.append(f)
            x, m = pad_feats(crops)
            y = torch.from_numpy(data.emotion[idx])
            loss = F.cross_entropy(model(x, m), y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = float((predict_logits(model, [feats[i] for i in va]).argmax(1) == data.emotion[va]).mean())
        history.append(acc)
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
        tqdm.write(f"audio epoch {ep + 1}: val 6-class acc {acc:.3f} ({time.time() - t0:.0f} s)")
    assert best_state is not None
    model.load_state_dict(best_state)
    model.spec_augment = False
    model.eval()
    return model, {"best_val_acc6": best, "epochs": epochs, "train_seconds": time.time() - t0}
