"""Scene stage: frozen MobileNetV2 features of MVSA-Single images (cached), a linear visual-sentiment head
trained on the train split and selected on val (macro-F1), a temperature fitted on val, ECE on test.

The encoder choice (MobileNetV2 vs EfficientNet-lite0 vs ViT-S/14) is measured in ``eval/scene_encoders.py``
and reported in ``docs/model.md``. Pixels come from the served path: ``decode_image`` (EXIF orientation,
RGB) → ``scene_pixels``; the flipped copies of the train images are the augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from app.contract import SCENE_SIZE
from app.preprocessing.image import decode_image
from app.preprocessing.scene import scene_pixels
from app.training import data as D
from app.training.common import ece, fit_temperature, macro_f1, softmax
from app.training.fingerprint import cache_key, code_fingerprint, file_fingerprint, versions
from app.training.scene_model import SceneClassifier, load_mobilenet_v2, shipped_encoder

#: largest image (width × height) read from the dataset; MVSA-Single's longest side is ≤ 256 px
MAX_PIXELS = 100_000_000
#: inverse L2 strengths C and class weightings tried for the head (selected on val macro-F1)
HEAD_GRID: tuple[tuple[float, str | None], ...] = tuple(
    (c, w) for w in (None, "balanced") for c in (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03)
)


def image_scene_pixels(path: str) -> np.ndarray:
    """uint8 [S, S, 3] of an image file through the served path (``decode_image`` → ``scene_pixels``)."""
    return scene_pixels(decode_image(Path(path).read_bytes(), max_pixels=MAX_PIXELS).image)


@torch.no_grad()
def scene_features(clf: SceneClassifier, paths: list[str], flip: bool, batch: int = 32) -> np.ndarray:
    """Frozen pooled features float32 [len(paths), 1280] (``clf.features``), of the mirrored images when
    ``flip``."""
    out = np.zeros((len(paths), 1280), dtype=np.float32)
    for s in tqdm(
        range(0, len(paths), batch), desc=f"scene features{' (flipped)' if flip else ''}", mininterval=10
    ):
        pix = np.stack([image_scene_pixels(p) for p in paths[s : s + batch]])
        if flip:
            pix = np.ascontiguousarray(pix[:, :, ::-1])
        out[s : s + batch] = clf.features(torch.from_numpy(pix)).numpy()
    return out


def scene_features_key(paths: list[str], weights: Path) -> str:
    """Cache key of :func:`mvsa_scene_features`: image names, the weights file, torch/Pillow versions and
    the code of ``decode_image``, ``scene_pixels``, the encoder and :func:`scene_features`."""
    params = {"size": SCENE_SIZE, "weights_sha256": file_fingerprint(weights), **versions("torch", "Pillow")}
    code = code_fingerprint(
        image_scene_pixels, scene_features, SceneClassifier, load_mobilenet_v2, shipped_encoder
    )
    return cache_key(params, code, [Path(p).name for p in paths])


def mvsa_scene_features(
    clf: SceneClassifier, paths: list[str], train: np.ndarray, weights: Path, cache_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Features of every image [N, 1280] and of the mirrored ``train`` rows [len(train), 1280], cached in
    ``cache_dir`` keyed by :func:`scene_features_key`."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"mvsa_scene_{scene_features_key(paths, weights)}.npz"
    if path.exists():
        z = np.load(path)
        if np.array_equal(z["train"], train):
            return z["feats"], z["flipped"]
    feats = scene_features(clf, paths, flip=False)
    flipped = scene_features(clf, [paths[i] for i in train], flip=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, feats=feats, flipped=flipped, train=train)
    tmp.rename(path)
    return feats, flipped


def warm_scene_cache(mv: D.MvsaSet, weights: Path, cache_dir: Path) -> None:
    """Compute (or find) the cached MVSA-Single scene features :func:`train_scene` will use, e.g. in the
    face worker process while the main process trains the text and audio branches."""
    clf = SceneClassifier(shipped_encoder(load_mobilenet_v2(weights))).eval()
    mvsa_scene_features(clf, mv.images, np.where(mv.split == "train")[0], weights, cache_dir)


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    grid: tuple[tuple[float, str | None], ...],
) -> tuple[torch.nn.Linear, dict[str, Any]]:
    """Multinomial logistic regression on standardised features, (C, class weight) chosen on val
    macro-F1; the standardisation is folded into the returned ``nn.Linear(1280, 3)``
    (W' = W / σ, b' = b − W' μ), so the graph needs no scaler."""
    sc = StandardScaler().fit(x)
    best: tuple[float, LogisticRegression | None, dict[str, Any]] = (-1.0, None, {})
    tried = []
    for c, w in grid:
        lr = LogisticRegression(C=c, class_weight=w, max_iter=3000).fit(sc.transform(x), y)
        f1 = macro_f1(val_y, lr.predict(sc.transform(val_x)))
        tried.append({"C": c, "class_weight": w, "val_macro_f1": f1})
        if f1 > best[0]:
            best = (f1, lr, {"C": c, "class_weight": w})
    f1, lr, choice = best
    assert lr is not None
    head = torch.nn.Linear(x.shape[1], 3)
    scale = 1.0 / sc.scale_
    w_fold = lr.coef_ * scale[None, :]
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w_fold).float())
        head.bias.copy_(torch.from_numpy(lr.intercept_ - w_fold @ sc.mean_).float())
    return head, {**choice, "val_macro_f1": f1, "grid": tried}


@dataclass
class SceneStage:
    """The scene expert with its trained head, its temperature and training prior [3] (uniform when the
    head was trained with balanced class weights), its metrics and the MVSA features it was trained on."""

    clf: SceneClassifier
    temperature: float
    prior: np.ndarray
    metrics: dict[str, Any]
    feats: np.ndarray  # float32 [N, 1280]: the frozen features of every MVSA-Single image


def train_scene(
    mv: D.MvsaSet, weights: Path, cache_dir: Path, grid: tuple[tuple[float, str | None], ...] = HEAD_GRID
) -> SceneStage:
    """Stage "scene": features (cached), head on train + flipped train (selected on val macro-F1),
    temperature on val, ECE before/after and macro-F1 on test."""
    clf = SceneClassifier(shipped_encoder(load_mobilenet_v2(weights))).eval()
    train = np.where(mv.split == "train")[0]
    feats, flipped = mvsa_scene_features(clf, mv.images, train, weights, cache_dir)
    y = mv.image_label
    val, test = np.where(mv.split == "val")[0], np.where(mv.split == "test")[0]
    head, info = fit_head(np.concatenate([feats[train], flipped]), np.concatenate([y[train], y[train]]),
                          feats[val], y[val], grid)  # fmt: skip
    clf.head = head
    with torch.no_grad():
        logits = clf.head(torch.from_numpy(feats)).numpy()
    temp = fit_temperature(logits[val], y[val])
    p_before, p_after = softmax(logits[test]), softmax(logits[test] / temp)
    prior = (
        np.full(3, 1.0 / 3.0)
        if info["class_weight"] == "balanced"
        else np.bincount(y[train], minlength=3) / len(train)
    )
    metrics = {
        **info,
        "temperature": temp,
        "ece_before_test": ece(p_before, y[test]),
        "ece_after_test": ece(p_after, y[test]),
        "test_macro_f1": macro_f1(y[test], p_after.argmax(1)),
        "train_prior": prior.tolist(),
        "n_train": int(len(train)),
        "n_val": int(len(val)),
        "n_test": int(len(test)),
    }
    return SceneStage(clf, temp, prior, metrics, feats)
