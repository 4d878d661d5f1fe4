"""The export-friendly MiniLM re-implementation against sentence-transformers' all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.preprocessing.text import encode_text, load_tokenizer, pad_batch
from app.training.text_model import load_minilm, masked_mean, package_model_dir

st = pytest.importorskip("sentence_transformers")


def test_minilm_port_matches_sentence_transformers() -> None:
    model_dir = package_model_dir()
    texts = ["I love this movie!", "Terrible service, never again.", "The meeting is at 5 pm in room 3, ok?"]
    ids, mask = pad_batch([encode_text(load_tokenizer(model_dir / "tokenizer.json"), t) for t in texts])
    with torch.no_grad():
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        ours = masked_mean(load_minilm().eval()(ids_t, mask_t), mask_t)
    ours = torch.nn.functional.normalize(ours, dim=-1).numpy()
    ref = st.SentenceTransformer(str(model_dir), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
