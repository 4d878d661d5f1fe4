"""Small synthetic runs of the training loops whose choices change the shipped weights: learned fusion (what
it may train) and the audio loop (mixup, weight averaging with BatchNorm re-estimation)."""

from __future__ import annotations

import numpy as np
import torch

from app.training.data import CremaSet
from app.training.learned_fusion import PairBatch, train_learned_fusion
from app.training.train_audio import _crops, predict_logits, train_audio

from .helpers import random_fused


def _pairs(n: int, seed: int) -> PairBatch:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    text = torch.randn(n, 384, generator=g)
    text[:, :3] += 3.0 * torch.nn.functional.one_hot(y, 3)  # a learnable text signal
    present = torch.ones(n, 3, dtype=torch.bool)
    present[:, 2] = False
    present[: n // 2, 1] = False
    return PairBatch(text, torch.randn(n, 10, 128, 4, 4, generator=g), present, y)


def test_learned_fusion_trains_weights_and_heads_but_keeps_temperatures_bias_and_encoders() -> None:
    model = random_fused(3)
    learned, info = train_learned_fusion(model, _pairs(256, 0), _pairs(128, 1), 0, max_epochs=15, patience=15)
    for name in ("log_temperature", "bias"):  # calibration and the common prior stay as they were
        torch.testing.assert_close(getattr(learned.fusion, name), getattr(model.fusion, name), rtol=0, atol=0)
    for name in ("encoder", "dropout"):
        for a, b in zip(
            getattr(learned.text, name).state_dict().values(),
            getattr(model.text, name).state_dict().values(),
            strict=True,
        ):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    face_before = dict(model.face.net.state_dict())
    for k, v in learned.face.net.state_dict().items():
        if not k.startswith("head."):
            torch.testing.assert_close(v, face_before[k], rtol=0, atol=0)
    assert not torch.allclose(learned.fusion.weight, model.fusion.weight)
    assert not torch.allclose(learned.text.head.weight, model.text.head.weight)
    history = info["val_nll_history"]
    assert isinstance(history, list)
    assert info["best_val_nll"] < history[0] - 0.05  # the text signal is learnable


def _crema(n: int, seed: int) -> tuple[CremaSet, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    emotion = rng.integers(0, 6, n)
    feats = []
    for e in emotion:
        f = rng.normal(-6.0, 2.0, (int(rng.integers(60, 220)), 64)).astype(np.float32)
        f[:, 8 * e : 8 * e + 8] += 4.0  # emotion-dependent band energy
        feats.append(f)
    split = np.array(["train"] * (n - 16) + ["val"] * 16)
    data = CremaSet([f"clip{i}" for i in range(n)], np.arange(n), emotion, np.zeros(n, np.int64), split)
    return data, feats


def test_audio_loop_with_mixup_and_weight_average_gives_a_padding_invariant_model() -> None:
    torch.set_num_threads(1)
    data, feats = _crema(80, 0)
    net, info = train_audio(data, feats, 0, epochs=3, batch_size=16, mixup_alpha=0.3, swa_epochs=2)
    assert info["chosen"] in ("best_epoch", "weight_average")
    assert info["swa_epochs"] == 2
    assert len(info["val_acc6_history"]) == 2  # epochs 2 and 3: the first half is not evaluated
    assert not net.training
    # the returned model is still padding-invariant (BatchNorm in eval mode, masked pooling)
    clip = feats[0]
    padded = np.concatenate([clip, np.full((50, 64), 40.0, np.float32)])
    with torch.no_grad():
        a = net(torch.from_numpy(clip)[None], torch.ones(1, len(clip)))
        m = torch.cat([torch.ones(1, len(clip)), torch.zeros(1, 50)], dim=1)
        b = net(torch.from_numpy(padded)[None], m)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    z = predict_logits(net, feats[-16:])
    assert z.shape == (16, 6) and np.isfinite(z).all()


def test_audio_crops_draw_clean_clips_and_their_augmented_copies_evenly() -> None:
    """With ``views`` (K augmented copies), each crop's source is the clean clip or one copy, uniformly."""
    feats = [np.full((200, 64), 0.0, np.float32) for _ in range(4)]
    views = [[np.full((200, 64), k + 1.0, np.float32) for _ in range(4)] for k in range(2)]
    rng = np.random.default_rng(0)
    sources = [int(c[0, 0]) for _ in range(600) for c in _crops(feats, np.arange(4), rng, views)]
    counts = np.bincount(sources, minlength=3)
    assert counts.sum() == 2400 and all(abs(c / 2400 - 1 / 3) < 0.05 for c in counts)
    assert all(len(c) == 150 for c in _crops(feats, np.arange(4), rng, views))  # 1.5 s crops
    assert {int(c[0, 0]) for c in _crops(feats, np.arange(4), rng)} == {0}  # no views: clean only


def test_audio_loop_records_its_augmented_copies() -> None:
    torch.set_num_threads(1)
    data, feats = _crema(48, 1)
    net, info = train_audio(data, feats, 0, epochs=2, batch_size=16, views=[feats])
    assert info["augmented_copies"] == 1 and info["n_train_clips"] == 32 and not net.training
