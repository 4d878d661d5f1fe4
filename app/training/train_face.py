"""Fine-tune the ported mini-Xception on FER2013 Training; select the epoch on half of PublicTest."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from app.preprocessing.image import normalize_face
from app.training.face_model import MiniXception


def normalise_all(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 48, 48] → float32 [N, 1, 64, 64] through ``app.preprocessing.image.normalize_face``."""
    return np.stack(
        [normalize_face(im) for im in tqdm(images, desc="normalize_face FER2013", mininterval=10)]
    )


@torch.inference_mode()
def face_logits(net: MiniXception, x: np.ndarray, flip_tta: bool, batch_size: int = 512) -> np.ndarray:
    net.eval()
    out = []
    for s in range(0, len(x), batch_size):
        b = torch.from_numpy(x[s : s + batch_size])
        z = net(b)
        if flip_tta:
            z = 0.5 * (z + net(torch.flip(b, dims=[3])))
        out.append(z.numpy())
    return np.concatenate(out)


def _augment(b: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random translation by up to 4 px (replicate padding)."""
    flip = torch.rand(b.shape[0], generator=gen) < 0.5
    b = torch.where(flip[:, None, None, None], torch.flip(b, dims=[3]), b)
    p = F.pad(b, (4, 4, 4, 4), mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 9, (2,), generator=gen))
    return p[:, :, dy : dy + 64, dx : dx + 64]


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
) -> tuple[MiniXception, dict[str, float]]:
    """Adam with cosine decay; keeps the epoch with the best selection accuracy (epoch 0 = the port "
    "itself)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(net)
    best = float((face_logits(model, x[val_idx], True).argmax(1) == y[val_idx]).mean())
    best_state, best_epoch = copy.deepcopy(model.state_dict()), 0
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
            loss = F.cross_entropy(model(b), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = float((face_logits(model, x[val_idx], True).argmax(1) == y[val_idx]).mean())
        tqdm.write(f"face epoch {ep + 1}: selection acc {acc:.3f} ({time.time() - t0:.0f} s)")
        if acc > best:
            best, best_state, best_epoch = acc, copy.deepcopy(model.state_dict()), ep + 1
    model.load_state_dict(best_state)
    model.eval()
    return model, {"best_heldout_acc7": best, "best_epoch": best_epoch, "train_seconds": time.time() - t0}
