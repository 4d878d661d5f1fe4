"""Experts are data: a model with two more experts (a ``scene`` expert on the image field, uint8 input,
and a fifth, ``length``, on the text field) is served by adding a preprocessing function and a registry
entry for each, and listing them in the model's ``config.json`` — nothing else in ``app/`` changes.

The tiny graph here has five branches (linear → softmax each) fused as a product of experts with prior
correction; absent experts are replaced by the prior inside the graph (``Where(mask > 0.5, p, prior)``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from app.config import Settings
from app.inference.predictor import Predictor
from app.main import create_app
from app.preprocessing.experts import DEFAULT_EXPERTS, Expert, ExpertInput, Resources
from app.preprocessing.pipeline import RawInput
from app.preprocessing.text import normalize_text
from tests.media import face_jpeg
from tests.tiny_model import branch_nodes, branch_weights, write_expert_model

PRIOR = np.array([0.3, 0.4, 0.3], np.float32)
SCENE = 8
EXPERTS = [
    {"name": "text", "modality": "text", "inputs": ["input_ids", "attention_mask"]},
    {"name": "image", "modality": "image", "inputs": ["face"]},
    {"name": "audio", "modality": "audio", "inputs": ["audio_features", "audio_mask"]},
    {"name": "scene", "modality": "image", "inputs": ["scene"]},
    {"name": "length", "modality": "text", "inputs": ["text_chars"]},
]
W = {
    **branch_weights(np.random.default_rng(5)),
    "w_scene": np.random.default_rng(6).normal(0, 2, (3, 3)).astype(np.float32),
    "w_len": np.array([[0.05, 0.0, -0.05]], np.float32),
}
#: The tiny model's branch outputs, by expert name.
P_NODE = {"text": "p_text", "image": "p_face", "audio": "p_audio", "scene": "p_scene", "length": "p_length"}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _graph() -> onnx.ModelProto:
    n = helper.make_node
    consts = {
        **W,
        "prior": PRIOR[None, :],
        "ax12": np.array([1, 2], np.int64),
        "half": np.array(0.5, np.float32),
        "inv255": np.array(1 / 255, np.float32),
        "log_prior4": (4.0 * np.log(PRIOR))[None, :],
        **{f"m{i}": np.array([i], np.int64) for i in range(6)},
    }
    nodes = [
        *branch_nodes(),
        n("Cast", ["scene"], ["sf"], to=TensorProto.FLOAT),  # normalisation in the graph (contract v2)
        n("Mul", ["sf", "inv255"], ["sn"]),
        n("ReduceMean", ["sn", "ax12"], ["rgb"], keepdims=0),
        n("MatMul", ["rgb", "w_scene"], ["l_scene"]),
        n("Softmax", ["l_scene"], ["p_scene"], axis=-1),
        n("MatMul", ["text_chars", "w_len"], ["l_length"]),
        n("Softmax", ["l_length"], ["p_length"], axis=-1),
    ]
    for i, e in enumerate(x["name"] for x in EXPERTS):
        nodes += [
            n("Slice", ["expert_mask", f"m{i}", f"m{i + 1}", "m1"], [f"mk_{e}"]),
            n("Greater", [f"mk_{e}", "half"], [f"has_{e}"]),
            n("Where", [f"has_{e}", P_NODE[e], "prior"], [f"q_{e}"]),
            n("Log", [f"q_{e}"], [f"lq_{e}"]),
            n("Unsqueeze", [f"q_{e}", "ax1"], [f"u_{e}"]),
        ]
    names = [x["name"] for x in EXPERTS]
    nodes += [n("Sum", [f"lq_{e}" for e in names], ["lsum"]), n("Sub", ["lsum", "log_prior4"], ["fl"])]
    nodes += [n("Softmax", ["fl"], ["probabilities"], axis=-1)]
    nodes += [n("Concat", [f"u_{e}" for e in names], ["expert_probabilities"], axis=1)]
    f, i64, u8 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.UINT8
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, ["B", "L"]),
        helper.make_tensor_value_info("attention_mask", i64, ["B", "L"]),
        helper.make_tensor_value_info("face", f, ["B", 1, 64, 64]),
        helper.make_tensor_value_info("audio_features", f, ["B", "T", 64]),
        helper.make_tensor_value_info("audio_mask", f, ["B", "T"]),
        helper.make_tensor_value_info("scene", u8, ["B", SCENE, SCENE, 3]),
        helper.make_tensor_value_info("text_chars", f, ["B", 1]),
        helper.make_tensor_value_info("expert_mask", f, ["B", 5]),
    ]
    outputs = [
        helper.make_tensor_value_info("probabilities", f, ["B", 3]),
        helper.make_tensor_value_info("expert_probabilities", f, ["B", 5, 3]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    graph = helper.make_graph(nodes, "five_experts", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ---- the two new experts: a preprocessing function and a registry entry each
def prepare_scene(image: Image.Image, _: Resources) -> ExpertInput:
    """The whole image, RGB, resized to 8 × 8: uint8 [8, 8, 3]."""
    return ExpertInput({"scene": np.asarray(image.convert("RGB").resize((SCENE, SCENE)), dtype=np.uint8)})


def prepare_length(text: str, _: Resources) -> ExpertInput:
    """Characters after normalisation: float32 [1]."""
    return ExpertInput({"text_chars": np.array([len(normalize_text(text))], np.float32)})


REGISTRY = {
    **DEFAULT_EXPERTS,
    "scene": Expert("image", prepare_scene),
    "length": Expert("text", prepare_length),
}


@pytest.fixture(scope="module")
def five_settings(model_dir: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("five")
    extra = {
        "scene": {"dtype": "uint8", "shape": ["batch", SCENE, SCENE, 3]},
        "text_chars": {"dtype": "float32", "shape": ["batch", 1]},
    }
    tokenizer = model_dir / "fused-sentiment" / "tokenizer.json"
    write_expert_model(root, "five-experts", _graph(), tokenizer, EXPERTS, extra)
    return settings.model_copy(update={"model_dir": root, "model_name": "five-experts"})


def test_a_fifth_expert_is_served_from_a_registry_entry_and_config_json(five_settings: Settings) -> None:
    predictor = Predictor(five_settings, experts=REGISTRY)
    text = "What a lovely day it is"

    async def main() -> Any:
        await predictor.start()
        try:
            return await predictor.predict(RawInput(text=text, image=face_jpeg()))
        finally:
            await predictor.stop()

    prediction = asyncio.run(main())
    out = prediction.output
    assert out.modality_mask.tolist() == [1, 1, 0, 1, 1]  # text, face, (no audio), scene, length
    # The new experts' tensors reached their graph branches: their probabilities match numpy on the
    # known weights.
    chars = float(len(normalize_text(text)))
    np.testing.assert_allclose(out.modality_probabilities[4], _softmax(chars * W["w_len"][0]), atol=1e-5)
    scene = prediction.item.tensors("scene")
    assert scene is not None and scene["scene"].dtype == np.uint8
    rgb = scene["scene"].astype(np.float32).mean(axis=(0, 1)) / 255
    np.testing.assert_allclose(out.modality_probabilities[3], _softmax(rgb @ W["w_scene"]), atol=1e-5)
    np.testing.assert_allclose(out.modality_probabilities[2], PRIOR, atol=1e-6)  # absent audio → prior
    # Fused = product of the five experts with prior correction.
    logp = np.log(out.modality_probabilities).sum(0) - 4 * np.log(PRIOR)
    np.testing.assert_allclose(out.probabilities, _softmax(logp), atol=1e-5)


def test_absent_new_experts_do_not_change_the_fused_output(five_settings: Settings) -> None:
    predictor = Predictor(five_settings.model_copy(update={"warmup": False}), experts=REGISTRY)
    predictor.load()
    assert predictor.model is not None
    item = predictor.prepare(RawInput(audio=None, text=None, image=face_jpeg()))
    feeds = predictor.collate([item])
    assert feeds["expert_mask"].tolist() == [[0, 1, 0, 1, 0]]
    base, _ = predictor.model.run(feeds)
    feeds["text_chars"][:] = 1e3
    feeds["input_ids"][:] = 7
    feeds["audio_features"][:] = -3.0
    moved, _ = predictor.model.run(feeds)
    np.testing.assert_allclose(moved, base, atol=1e-6)


def test_the_http_api_serves_the_five_expert_model(five_settings: Settings) -> None:
    predictor = Predictor(five_settings, experts=REGISTRY)
    with TestClient(create_app(settings=five_settings, predictor=predictor)) as client:
        info = client.get("/v1/models").json()["models"][0]
        r = client.post(
            "/v1/predict", data={"text": "good"}, files={"image": ("f.jpg", face_jpeg(), "image/jpeg")}
        )
    assert {"scene", "text_chars", "expert_mask"} <= {i["name"] for i in info["inputs"]}
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modalities"]["text"]["used"] and body["modalities"]["image"]["used"]
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
