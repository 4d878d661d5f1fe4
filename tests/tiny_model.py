"""A tiny ONNX graph with the fused-model contract's inputs and outputs, for tests that must not depend on
the trained model.

Branches: text = masked mean of an embedding table → linear; face = flatten → linear; audio = masked mean of
the log-mel frames → linear; each → softmax. Fusion is the product of experts with prior correction from
DESIGN.md: log p(y|x_S) = Σ_{m∈S} log p_m − (|S|−1) log π, where absent modalities are replaced by π
(``Where(modality_mask > 0.5, p_m, π)``), so the fused output does not depend on the dummy inputs.
Weights are random with a fixed seed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EMBED = 8
PRIOR = np.array([0.3, 0.4, 0.3], dtype=np.float32)


def branch_weights(rng: np.random.Generator, vocab_size: int = 30522) -> dict[str, np.ndarray]:
    """Random weights and constants of the three v1 branches (:func:`branch_nodes`)."""
    return {
        "emb": rng.normal(0, 1.0, (vocab_size, EMBED)).astype(np.float32),
        "w_text": rng.normal(0, 1.0, (EMBED, 3)).astype(np.float32),
        "w_face": rng.normal(0, 0.05, (64 * 64, 3)).astype(np.float32),
        "w_audio": rng.normal(0, 0.1, (64, 3)).astype(np.float32),
        "b": np.array([0.1, 0.0, -0.1], dtype=np.float32),
        "ax1": np.array([1], dtype=np.int64),
        "ax2": np.array([2], dtype=np.int64),
        "one": np.array(1.0, dtype=np.float32),
    }


def branch_nodes() -> list[onnx.NodeProto]:
    """Nodes of the v1 branches up to their probabilities ``p_text``, ``p_face``, ``p_audio`` [B, 3]."""
    n = helper.make_node
    return [
        # text: masked mean of embeddings
        n("Gather", ["emb", "input_ids"], ["tok"]),
        n("Cast", ["attention_mask"], ["amask"], to=TensorProto.FLOAT),
        n("Unsqueeze", ["amask", "ax2"], ["amask3"]),
        n("Mul", ["tok", "amask3"], ["tok_m"]),
        n("ReduceSum", ["tok_m", "ax1"], ["tok_sum"], keepdims=0),
        n("ReduceSum", ["amask", "ax1"], ["tok_cnt"], keepdims=1),
        n("Max", ["tok_cnt", "one"], ["tok_cnt1"]),
        n("Div", ["tok_sum", "tok_cnt1"], ["text_vec"]),
        n("MatMul", ["text_vec", "w_text"], ["text_l0"]),
        n("Add", ["text_l0", "b"], ["text_logits"]),
        n("Softmax", ["text_logits"], ["p_text"], axis=-1),
        # face
        n("Flatten", ["face"], ["face_flat"], axis=1),
        n("MatMul", ["face_flat", "w_face"], ["face_logits"]),
        n("Softmax", ["face_logits"], ["p_face"], axis=-1),
        # audio: masked mean over frames
        n("Unsqueeze", ["audio_mask", "ax2"], ["fmask3"]),
        n("Mul", ["audio_features", "fmask3"], ["aud_m"]),
        n("ReduceSum", ["aud_m", "ax1"], ["aud_sum"], keepdims=0),
        n("ReduceSum", ["audio_mask", "ax1"], ["aud_cnt"], keepdims=1),
        n("Max", ["aud_cnt", "one"], ["aud_cnt1"]),
        n("Div", ["aud_sum", "aud_cnt1"], ["aud_vec"]),
        n("MatMul", ["aud_vec", "w_audio"], ["audio_logits"]),
        n("Softmax", ["audio_logits"], ["p_audio"], axis=-1),
    ]


def build_tiny_model(path: Path, vocab_size: int = 30522, seed: int = 0) -> Path:
    """Write the tiny model to ``path`` (opset 17, dynamic batch/length axes) and return ``path``."""
    inits = {
        **branch_weights(np.random.default_rng(seed), vocab_size),
        "prior": PRIOR[None, :],
        "log_prior2": (2.0 * np.log(PRIOR))[None, :],
        "half": np.array(0.5, dtype=np.float32),
        "m0": np.array([0], dtype=np.int64),
        "m1": np.array([1], dtype=np.int64),
        "m2": np.array([2], dtype=np.int64),
        "m3": np.array([3], dtype=np.int64),
    }
    n = helper.make_node
    nodes = [
        *branch_nodes(),
        # absent → prior
        n("Slice", ["modality_mask", "m0", "m1", "m1"], ["mm_t"]),
        n("Slice", ["modality_mask", "m1", "m2", "m1"], ["mm_i"]),
        n("Slice", ["modality_mask", "m2", "m3", "m1"], ["mm_a"]),
        n("Greater", ["mm_t", "half"], ["has_t"]),
        n("Greater", ["mm_i", "half"], ["has_i"]),
        n("Greater", ["mm_a", "half"], ["has_a"]),
        n("Where", ["has_t", "p_text", "prior"], ["q_text"]),
        n("Where", ["has_i", "p_face", "prior"], ["q_face"]),
        n("Where", ["has_a", "p_audio", "prior"], ["q_audio"]),
        # product of experts with prior correction
        n("Log", ["q_text"], ["l_t"]),
        n("Log", ["q_face"], ["l_i"]),
        n("Log", ["q_audio"], ["l_a"]),
        n("Add", ["l_t", "l_i"], ["l_ti"]),
        n("Add", ["l_ti", "l_a"], ["l_sum"]),
        n("Sub", ["l_sum", "log_prior2"], ["fused_logits"]),
        n("Softmax", ["fused_logits"], ["probabilities"], axis=-1),
        n("Unsqueeze", ["q_text", "ax1"], ["u_t"]),
        n("Unsqueeze", ["q_face", "ax1"], ["u_i"]),
        n("Unsqueeze", ["q_audio", "ax1"], ["u_a"]),
        n("Concat", ["u_t", "u_i", "u_a"], ["modality_probabilities"], axis=1),
    ]
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, ["B", "L"]),
        helper.make_tensor_value_info("attention_mask", i64, ["B", "L"]),
        helper.make_tensor_value_info("face", f, ["B", 1, 64, 64]),
        helper.make_tensor_value_info("audio_features", f, ["B", "T", 64]),
        helper.make_tensor_value_info("audio_mask", f, ["B", "T"]),
        helper.make_tensor_value_info("modality_mask", f, ["B", 3]),
    ]
    outputs = [
        helper.make_tensor_value_info("probabilities", f, ["B", 3]),
        helper.make_tensor_value_info("modality_probabilities", f, ["B", 3, 3]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_fused_sentiment",
        inputs,
        outputs,
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


#: ``config.json`` inputs of the text, face and audio experts (the v1 tensors), for tiny models with more.
BASE_INPUTS: dict[str, dict[str, Any]] = {
    "input_ids": {"dtype": "int64", "shape": ["batch", "text_length"]},
    "attention_mask": {"dtype": "int64", "shape": ["batch", "text_length"]},
    "face": {"dtype": "float32", "shape": ["batch", 1, 64, 64]},
    "audio_features": {"dtype": "float32", "shape": ["batch", "audio_frames", 64]},
    "audio_mask": {"dtype": "float32", "shape": ["batch", "audio_frames"]},
}


def write_expert_model(
    root: Path,
    name: str,
    model: onnx.ModelProto,
    tokenizer: Path,
    experts: list[dict[str, Any]],
    extra_inputs: dict[str, dict[str, Any]],
    **config: Any,
) -> None:
    """A model folder ``root/name`` (``1/model.onnx``, ``tokenizer.json``, ``config.json``) for a graph with
    an ``expert_mask`` [B, E] input and ``probabilities`` / ``expert_probabilities`` outputs: the experts'
    entries, :data:`BASE_INPUTS` plus ``extra_inputs``, and any other ``config`` keys."""
    folder = root / name
    (folder / "1").mkdir(parents=True)
    onnx.save(model, str(folder / "1" / "model.onnx"))
    shutil.copy(tokenizer, folder / "tokenizer.json")
    mask = {"expert_mask": {"dtype": "float32", "shape": ["batch", len(experts)]}}
    document = {
        "name": name,
        "labels": ["negative", "neutral", "positive"],
        "experts": experts,
        "inputs": {**BASE_INPUTS, **extra_inputs, **mask},
        "mask_input": "expert_mask",
        "output_names": ["probabilities", "expert_probabilities"],
        **config,
    }
    (folder / "config.json").write_text(json.dumps(document), encoding="utf-8")
