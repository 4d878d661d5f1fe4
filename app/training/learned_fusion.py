"""Learned fusion on paired data (MVSA-Single image + text): one loss on the fused output, gradients flow
through :class:`~app.training.fusion.Fusion` into the trainable parameters of each branch.

Trainable: the fusion weights w_m, the text head (linear layer) and the face head (last convolution of
mini-Xception). Kept fixed: the branch temperatures (fit on each branch's own validation data; in the fused
output w_m already rescales each branch's log-probabilities, and fixed temperatures keep the per-modality
probabilities calibrated as measured) and the fusion bias b = 0: b is added to every request with any
modality present, so a b learned on MVSA-Single would move audio-only or face-only answers towards MVSA's
label distribution (mostly positive) instead of the common prior π the branches are re-targeted to.
Regularisation: L2 penalty λ Σ ‖θ − θ₀‖² towards the starting point (the product-of-experts model; "L2-SP",
Li et al., ICML 2018), so λ → ∞ recovers PoE. Optimiser: Adam or SGD (momentum 0.9). Early stopping on
validation NLL (patience epochs), best state restored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from app.training.fusion import FusedSentiment


@dataclass
class PairBatch:
    """Cached inputs of paired examples: the frozen parts of each branch are run once (text sentence vector,
    mini-Xception features before its last convolution, of each test-time view of the face)."""

    text_pooled: torch.Tensor  # [N, 384]
    face_feat: torch.Tensor  # [N, V, 128, 4, 4] (FaceClassifier.view_features)
    present: torch.Tensor  # [N, 3] bool
    y: torch.Tensor  # [N] int64


def branch_logits(model: FusedSentiment, b: PairBatch, idx: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] branch logits (audio rows are zeros; audio is never present in image+text pairs)."""
    zt = model.text.head(b.text_pooled[idx])
    zi = model.face.from_features(b.face_feat[idx])
    return torch.stack([zt, zi, torch.zeros_like(zt)], dim=1)


def fused_forward(model: FusedSentiment, b: PairBatch, idx: torch.Tensor, start: int = 0) -> torch.Tensor:  # noqa: ARG001
    """Fused probabilities [n, 3] for rows ``idx``."""
    probs: torch.Tensor = model.fusion(branch_logits(model, b, idx), b.present[idx])[0]
    return probs


def trainable_parameters(model: FusedSentiment) -> list[torch.nn.Parameter]:
    """What learned fusion trains: the fusion weights w, the text head, the face head (last convolution)."""
    return [
        model.fusion.weight,
        *model.text.head.parameters(),
        *model.face.net.head.parameters(),
    ]


def train_learned_fusion(
    model: FusedSentiment,
    train: PairBatch,
    val: PairBatch,
    start: int,
    optimizer: str = "adam",
    lr: float = 1e-3,
    l2: float = 1e-2,
    max_epochs: int = 100,
    patience: int = 8,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[FusedSentiment, dict[str, object]]:
    """Train :func:`trainable_parameters` of a copy of ``model`` on paired data (fused NLL + ``l2`` pull
    towards the start values), early stopping on the validation NLL; returns (model, training record)."""
    torch.manual_seed(seed)
    model = copy.deepcopy(model)
    model.eval()  # dropout off; BatchNorm uses running statistics
    for p in model.parameters():
        p.requires_grad_(False)
    params = trainable_parameters(model)
    for p in params:
        p.requires_grad_(True)
    init = [p.detach().clone() for p in params]
    opt = (
        torch.optim.Adam(params, lr=lr)
        if optimizer == "adam"
        else torch.optim.SGD(params, lr=lr, momentum=0.9)
    )
    n = train.y.shape[0]

    def val_nll() -> float:
        with torch.no_grad():
            p = fused_forward(model, val, torch.arange(val.y.shape[0]), start)
            return float(F.nll_loss(torch.log(p + 1e-12), val.y))

    best, best_state, bad, history = val_nll(), copy.deepcopy(model.state_dict()), 0, []
    history.append(best)
    for _ in range(max_epochs):
        perm = torch.randperm(n)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            probs = fused_forward(model, train, idx, start)
            loss = F.nll_loss(torch.log(probs + 1e-12), train.y[idx])
            loss = loss + l2 * sum(((q - q0) ** 2).sum() for q, q0 in zip(params, init, strict=True))
            opt.zero_grad()
            torch.autograd.backward(loss)
            opt.step()
        v = val_nll()
        history.append(v)
        if v < best - 1e-4:
            best, best_state, bad = v, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {
        "val_nll_history": [round(h, 4) for h in history],
        "best_val_nll": best,
        "epochs_run": len(history) - 1,
        "optimizer": optimizer,
        "lr": lr,
        "l2": l2,
    }
