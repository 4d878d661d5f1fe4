"""The committed models/fused-sentiment/1/model.onnx follows the DESIGN.md contract (the version its
config.json declares: v2, experts text, face, scene, audio) on ONNX Runtime CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from app.contract import FACE_SIZE, LABELS, N_MELS, SCENE_SIZE, ModelContract

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "fused-sentiment"
ONNX_PATH = MODEL_DIR / "1" / "model.onnx"
CONTRACT = ModelContract.from_config(json.loads((MODEL_DIR / "config.json").read_text()))
OUTPUT_NAMES = list(CONTRACT.outputs)
N_EXPERTS = len(CONTRACT.experts)
TEXT, FACE, SCENE, AUDIO = (CONTRACT.expert_names.index(n) for n in ("text", "face", "scene", "audio"))
#: The audio expert's signal input: ``waveform`` [B, N] (Whisper expert, front end in the graph) or
#: ``audio_features`` [B, T, 64] (log-mel CNN).
AUDIO_IN = CONTRACT.expert("audio").inputs[0].name
WAVEFORM = AUDIO_IN == "waveform"


@pytest.fixture(scope="module")
def session():  # noqa: ANN201
    import onnxruntime as ort

    assert ONNX_PATH.is_file(), f"committed model missing: {ONNX_PATH}"
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(ONNX_PATH), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((MODEL_DIR / "config.json").read_text())


def _feeds(batch: int, text_len: int, frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    from app.preprocessing.text import encode_text, load_tokenizer, pad_batch

    tok = load_tokenizer(MODEL_DIR / "tokenizer.json")
    texts = [
        "I absolutely love this, best day ever!",
        "This is awful and I hate it.",
        "The bus leaves at nine.",
        "Not bad at all",
        "meh",
    ]
    ids, am = pad_batch([encode_text(tok, texts[i % len(texts)]) for i in range(batch)])
    if ids.shape[1] < text_len:
        pad = text_len - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)))
        am = np.pad(am, ((0, 0), (0, pad)))
    rng = np.random.default_rng(seed)
    return {
        "input_ids": ids,
        "attention_mask": am,
        "face": rng.uniform(-1, 1, (batch, 1, FACE_SIZE, FACE_SIZE)).astype(np.float32),
        "scene": rng.integers(0, 256, (batch, SCENE_SIZE, SCENE_SIZE, 3), dtype=np.uint8),
        **_audio(rng, batch, frames),
        CONTRACT.mask_input: np.ones((batch, N_EXPERTS), np.float32),
    }


def _audio(rng: np.random.Generator, batch: int, frames: int) -> dict[str, np.ndarray]:
    """Audio inputs of ``frames`` log-mel frames, or as many 10-ms hops of 16 kHz samples."""
    if WAVEFORM:
        n = frames * 160
        return {
            "waveform": (0.1 * rng.standard_normal((batch, n))).astype(np.float32),
            "audio_mask": np.ones((batch, n), np.float32),
        }
    return {
        "audio_features": rng.normal(-6, 3, (batch, frames, N_MELS)).astype(np.float32),
        "audio_mask": np.ones((batch, frames), np.float32),
    }


def test_graph_signature_follows_the_contract(config: dict) -> None:
    assert config.get("contract_version") == 2
    assert CONTRACT.expert_names == ("text", "face", "scene", "audio")
    assert CONTRACT.mask_input == "expert_mask"
    assert CONTRACT.outputs == ("probabilities", "expert_probabilities")
    m = onnx.load(str(ONNX_PATH), load_external_data=False)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    types = {i.name: i.type.tensor_type for i in m.graph.input}
    assert list(types) == list(CONTRACT.input_names)
    expect = {
        "input_ids": (7, 2),
        "attention_mask": (7, 2),
        "face": (1, 4),
        "scene": (2, 4),
        AUDIO_IN: (1, 2 if WAVEFORM else 3),
        "audio_mask": (1, 2),
        "expert_mask": (1, 2),
    }  # (elem_type, rank): 7 = int64, 1 = float32, 2 = uint8
    for name, (elem, rank) in expect.items():
        assert types[name].elem_type == elem
        dims = types[name].shape.dim
        assert len(dims) == rank
        assert dims[0].dim_param, f"{name}: batch axis must be dynamic"
    assert types["input_ids"].shape.dim[1].dim_param and types[AUDIO_IN].shape.dim[1].dim_param
    assert [d.dim_value for d in types["face"].shape.dim[1:]] == [1, FACE_SIZE, FACE_SIZE]
    assert [d.dim_value for d in types["scene"].shape.dim[1:]] == [SCENE_SIZE, SCENE_SIZE, 3]
    if not WAVEFORM:
        assert types["audio_features"].shape.dim[2].dim_value == N_MELS
    assert [o.name for o in m.graph.output] == OUTPUT_NAMES
    assert config["labels"] == list(LABELS)
    assert config["input_names"] == list(CONTRACT.input_names) and config["output_names"] == OUTPUT_NAMES


def test_committed_files_fit_the_size_budget() -> None:
    """Issue 12: the model files together (fused model and the detectors) ≤ 120 MB."""
    files = [p for d in (MODEL_DIR, MODEL_DIR.parent / "detectors") for p in d.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total <= 120e6, f"model files are {total / 1e6:.1f} MB"


@pytest.mark.parametrize(("batch", "text_len", "frames"), [(1, 12, 1), (4, 40, 250)])
def test_outputs_have_contract_shapes_and_are_distributions(
    session, batch: int, text_len: int, frames: int
) -> None:
    p, mp = session.run(OUTPUT_NAMES, _feeds(batch, text_len, frames))
    assert p.dtype == np.float32 and p.shape == (batch, 3)
    assert mp.dtype == np.float32 and mp.shape == (batch, N_EXPERTS, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(mp.sum(2), 1.0, atol=1e-5)


def test_absent_experts_are_ignored_and_give_the_prior(session, config: dict) -> None:
    """Every expert: garbage in an absent expert's inputs changes nothing; no expert present → the prior."""
    feeds = _feeds(4, 16, 80)
    mask = np.zeros((4, N_EXPERTS), np.float32)
    mask[0, TEXT] = 1
    mask[1, [FACE, SCENE, AUDIO]] = 1
    mask[2, SCENE] = 1
    feeds[CONTRACT.mask_input] = mask
    ref = session.run(OUTPUT_NAMES, feeds)
    bad = {k: v.copy() for k, v in feeds.items()}
    bad["input_ids"][1:] = 999_999_999
    bad["face"][[0, 2, 3]] = np.nan
    bad["scene"][[0, 3]] = 255 - bad["scene"][[0, 3]]
    bad[AUDIO_IN][[0, 2, 3]] = np.inf
    bad["audio_mask"][[0, 2, 3]] = np.nan
    got = session.run(OUTPUT_NAMES, bad)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_array_equal(g, r)
    prior = np.array([config["prior"][k] for k in LABELS], np.float32)
    np.testing.assert_allclose(ref[0][3], prior, atol=1e-6)
    absent = mask == 0
    np.testing.assert_allclose(ref[1][absent], np.broadcast_to(prior, (int(absent.sum()), 3)), atol=1e-6)
    np.testing.assert_allclose(ref[0][2], ref[1][2, SCENE], atol=1e-6)  # one expert: fused = that expert


def test_padding_text_and_audio_does_not_change_the_output(session) -> None:
    base = _feeds(1, 0, 137, seed=4)
    padded = {k: v.copy() for k, v in base.items()}
    padded["input_ids"] = np.pad(base["input_ids"], ((0, 0), (0, 20)), constant_values=0)
    padded["attention_mask"] = np.pad(base["attention_mask"], ((0, 0), (0, 20)))
    pad = 63 * 160 if WAVEFORM else 63
    tail = ((0, 0), (0, pad)) if WAVEFORM else ((0, 0), (0, pad), (0, 0))
    padded[AUDIO_IN] = np.pad(base[AUDIO_IN], tail, constant_values=0.0 if WAVEFORM else -13.8)
    padded["audio_mask"] = np.pad(base["audio_mask"], ((0, 0), (0, pad)))
    for r, g in zip(session.run(OUTPUT_NAMES, base), session.run(OUTPUT_NAMES, padded), strict=True):
        np.testing.assert_allclose(g, r, atol=1e-5)


def test_text_branch_separates_obvious_sentiment(session) -> None:
    feeds = _feeds(3, 0, 10)
    feeds[CONTRACT.mask_input][:] = 0
    feeds[CONTRACT.mask_input][:, TEXT] = 1
    _, mp = session.run(OUTPUT_NAMES, feeds)
    assert mp[0, TEXT].argmax() == 2 and mp[1, TEXT].argmax() == 0  # "love ... best day" / "awful ... hate"
