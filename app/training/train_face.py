"""Fine-tune the ported mini-Xception on FER2013 Training; select the epoch on half of PublicTest."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from app.preprocessing.image import normalize_face
from app.training.common import channels_last
from app.training.face_model import MiniXception, tta_mean, tta_views


def normalise_all(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 48, 48] → float32 [N, 1, 64, 64] through ``app.preprocessing.image.normalize_face``."""
    return np.stack(
        [normalize_face(im) for im in tqdm(images, desc="normalize_face FER2013", mininterval=10)]
    )


@torch.inference_mode()
def face_logits(net: MiniXception, x: np.ndarray, tta: bool, batch_size: int = 64) -> np.ndarray:
    """7 emotion logits float32 [N, 7] of faces ``x`` [N, 1, 64, 64]; with ``tta`` averaged over the
    ``face_model.tta_views`` views (what the exported graph does)."""
    # a channels-last copy: same arithmetic, ~1.7× faster depthwise convolutions on CPU
    net = channels_last(copy.deepcopy(net).eval())
    out = []
    for s in range(0, len(x), batch_size):
        b = torch.from_numpy(x[s : s + batch_size])
        v = (tta_views(b) if tta else b).contiguous(memory_format=torch.channels_last)
        z = net(v)
        out.append((tta_mean(z, len(b)) if tta else z).numpy())
    return np.concatenate(out)


def _augment(
    b: torch.Tensor, gen: torch.Generator, rotation_deg: float = 10.0, zoom: float = 0.1, shift: float = 0.125
) -> torch.Tensor:
    """Per-face random horizontal flip and random affine warp (rotation ±``rotation_deg``°, scale
    1 ± ``zoom``, translation ± ``shift`` of the half-width, border replication): the augmentation of the
    mini-Xception paper's training script (Arriaga et al., 2017: rotation 10°, shifts 0.1, zoom 0.1, flip).
    b float32 [B, 1, 64, 64] → same shape."""
    n = b.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    b = torch.where(flip[:, None, None, None], torch.flip(b, dims=[3]), b)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * rotation_deg * np.pi / 180
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * zoom
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * shift
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(b.shape), align_corners=False)
    return F.grid_sample(b, grid, padding_mode="border", align_corners=False)


def finetune_face(
    net: MiniXception,
    x: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    label_smoothing: float = 0.0,
) -> tuple[MiniXception, dict[str, Any]]:
    """Adam with cosine decay, :func:`_augment` on every batch; keeps the epoch with the best selection
    accuracy (``val_idx``, with test-time views; epoch 0 = the port itself)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(net)
    best = float((face_logits(model, x[val_idx], True).argmax(1) == y[val_idx]).mean())
    best_state, best_epoch = copy.deepcopy(model.state_dict()), 0
    history = [round(best, 4)]
    tqdm.write(f"face epoch 0 (ported weights): selection acc {best:.3f}")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    n_steps = epochs * (len(train_idx) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_steps)
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = rng.permutation(train_idx)
        for s in tqdm(range(len(perm) // batch_size), desc=f"face epoch {ep + 1}/{epochs}", mininterval=15):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            b = _augment(torch.from_numpy(x[idx]), gen)
            loss = F.cross_entropy(model(b), torch.from_numpy(y[idx]), label_smoothing=label_smoothing)
            opt.zero_grad()
            torch.autograd.backward(loss)
            opt.step()
            sched.step()
        acc = float((face_logits(model, x[val_idx], True).argmax(1) == y[val_idx]).mean())
        history.append(round(acc, 4))
        tqdm.write(f"face epoch {ep + 1}: selection acc {acc:.3f} ({time.time() - t0:.0f} s)")
        if acc > best:
            best, best_state, best_epoch = acc, copy.deepcopy(model.state_dict()), ep + 1
    model.load_state_dict(best_state)
    model.eval()
    return model, {
        "best_heldout_acc7": best,
        "best_epoch": best_epoch,
        "selection_acc7_history": history,
        "label_smoothing": label_smoothing,
        "train_seconds": time.time() - t0,
    }
