"""A randomly initialised fused model (no downloads) for fusion / export tests."""

from __future__ import annotations

import numpy as np
import torch

from app.training.audio_model import AudioCNN
from app.training.face_model import MiniXception
from app.training.fusion import AudioClassifier, FaceClassifier, FusedSentiment, Fusion, TextClassifier
from app.training.text_model import MiniLM


def random_fused(seed: int = 0, text_layers: int = 6) -> FusedSentiment:
    """Random weights; ``text_layers``: 6 (MiniLM-L6's layout) or 12 (bge-small's)."""
    torch.manual_seed(seed)
    face_map = torch.zeros(3, 7)
    for src, dst in {0: 0, 1: 0, 2: 0, 3: 2, 4: 0, 5: 2, 6: 1}.items():
        face_map[dst, src] = 1.0
    audio_map = torch.zeros(3, 6)
    for src, dst in enumerate([0, 0, 0, 2, 1, 0]):
        audio_map[dst, src] = 1.0
    fusion = Fusion()
    with torch.no_grad():
        fusion.log_temperature.copy_(torch.log(torch.tensor([1.5, 0.8, 1.2])))
        fusion.log_branch_prior.copy_(
            torch.log(torch.tensor([[0.3, 0.3, 0.4], [0.5, 0.2, 0.3], [0.66, 0.17, 0.17]]))
        )
        fusion.log_prior.copy_(torch.log(torch.tensor([0.25, 0.4, 0.35])))
    model = FusedSentiment(
        TextClassifier(MiniLM(text_layers)),
        FaceClassifier(MiniXception(), face_map),
        AudioClassifier(AudioCNN(), audio_map),
        fusion,
    ).eval()
    # BatchNorm running statistics away from (0, 1) so that a bug in eval-mode BN would show
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return model


def inputs(batch: int, text_len: int, frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(batch, text_len)).astype(np.int64)
    return {
        "input_ids": ids,
        "attention_mask": np.ones((batch, text_len), dtype=np.int64),
        "face": rng.uniform(-1, 1, size=(batch, 1, 64, 64)).astype(np.float32),
        "audio_features": rng.normal(-5, 3, size=(batch, frames, 64)).astype(np.float32),
        "audio_mask": np.ones((batch, frames), dtype=np.float32),
        "modality_mask": np.ones((batch, 3), dtype=np.float32),
    }


def run_torch(model: FusedSentiment, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from app.contract import INPUT_NAMES

    with torch.no_grad():
        p, mp = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    return p.numpy(), mp.numpy()
