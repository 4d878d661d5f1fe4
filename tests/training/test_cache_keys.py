"""Preprocessing cache keys (``app.training.cache``) cover the parameters and the code that produce them: the
same inputs give the same key; an edit to the producing function, a helper it calls, a constant it reads, a
log-mel parameter or the tokenizer bytes gives another key."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

from app.preprocessing import audio as audio_pre
from app.preprocessing import vad
from app.training import cache
from app.training.fingerprint import code_fingerprint
from app.training.text_model import package_model_dir

PRODUCER = """
HOP = {hop}


def helper(x):
    {doc}
    return x * HOP{extra}


def produce(x):
    return helper(x) + 1
"""


def _module(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    hop: int = 160,
    extra: str = "",
    doc: str = "pass",
) -> ModuleType:
    """A throw-away ``app.*`` module (the fingerprint walks only this package's code) with a producer."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(PRODUCER.format(hop=hop, extra=extra, doc=doc)), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"app._{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # inspect.getsource finds the file through it
    spec.loader.exec_module(mod)
    return mod


def _produce(mod: ModuleType) -> Callable[..., object]:
    fn: Callable[..., object] = mod.produce
    return fn


def test_same_producer_source_gives_the_same_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _module(tmp_path, monkeypatch, "fp_a")
    b = _module(tmp_path, monkeypatch, "fp_b")
    assert code_fingerprint(_produce(a)) == code_fingerprint(_produce(a))
    # same text in another module: different qualified name, so a different key (never a false hit)
    assert code_fingerprint(_produce(a)) != code_fingerprint(_produce(b))


def test_edit_of_a_helper_or_constant_reached_from_the_producer_changes_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = code_fingerprint(_produce(_module(tmp_path / "0", monkeypatch, "fp", hop=160)))
    other_constant = code_fingerprint(_produce(_module(tmp_path / "1", monkeypatch, "fp", hop=161)))
    other_helper = code_fingerprint(
        _produce(_module(tmp_path / "2", monkeypatch, "fp", hop=160, extra=" + 0  # edited"))
    )
    assert len({base, other_constant, other_helper}) == 3


@pytest.fixture()
def files() -> list[str]:
    return [f"/data/crema_d/clips/10{i:02d}_DFA_ANG_XX.wav" for i in range(5)]


def test_logmel_key_is_stable_and_follows_log_mel_code_and_parameters(
    files: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = cache.logmel_key(files)
    assert cache.logmel_key(list(files)) == key
    assert cache.logmel_key(files[:-1]) != key
    with monkeypatch.context() as m:
        m.setattr(audio_pre, "HOP_LENGTH", audio_pre.HOP_LENGTH + 1)
        assert cache.logmel_key(files) != key
    with monkeypatch.context() as m:  # another log-mel function (as after an edit of log_mel)
        fake = _module(tmp_path, m, "fake_log_mel")
        m.setattr(cache, "log_mel", fake.produce)
        assert cache.logmel_key(files) != key
    assert cache.logmel_key(files) == key


def test_mvsa_faces_key_follows_the_face_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = ["/data/mvsa_single/data/1.jpg", "/data/mvsa_single/data/2.jpg"]
    key = cache.mvsa_faces_key(images)
    assert cache.mvsa_faces_key(list(images)) == key
    fake = _module(tmp_path, monkeypatch, "fake_face")
    with monkeypatch.context() as m:  # another face function (as after an edit of the detector code)
        m.setattr(cache, "face_input", fake.produce)
        assert cache.mvsa_faces_key(images) != key
    other = tmp_path / "detector.onnx"  # other detector weights
    other.write_bytes(b"not the committed detector")
    monkeypatch.setattr(cache, "DETECTOR_FILE", other)
    assert cache.mvsa_faces_key(images) != key


def test_text_states_key_follows_tokenizer_bytes_encode_text_split_layer_and_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = tmp_path / "tokenizer.json"
    shutil.copyfile(package_model_dir() / "tokenizer.json", tok)
    texts = ["a fine day", "terrible service"]
    M = "minilm-l6"
    key = cache.text_states_key(texts, tok, 2, M, tmp_path)
    assert cache.text_states_key(list(texts), tok, 2, M, tmp_path) == key
    assert cache.text_states_key(texts, tok, 3, M, tmp_path) != key
    assert cache.text_states_key(texts[::-1], tok, 2, M, tmp_path) != key
    tok.write_bytes(tok.read_bytes() + b" ")  # one byte more: an edited tokenizer
    edited = cache.text_states_key(texts, tok, 2, M, tmp_path)
    assert edited != key
    shutil.copyfile(package_model_dir() / "tokenizer.json", tok)
    assert cache.text_states_key(texts, tok, 2, M, tmp_path) == key
    # another encoder (its weights file stood in by a local file: no download here)
    bge = tmp_path / "bge.onnx"
    bge.write_bytes(b"int8 graph")
    real = cache.text_encoder_weights
    monkeypatch.setattr(cache, "text_encoder_weights", lambda n, d: bge if n == "bge-small" else real(n, d))
    other = cache.text_states_key(texts, tok, 2, "bge-small", tmp_path)
    assert other != key
    bge.write_bytes(b"int8 graph, other weights")
    assert cache.text_states_key(texts, tok, 2, "bge-small", tmp_path) != other
    fake = _module(tmp_path, monkeypatch, "fake_encode_text")
    monkeypatch.setattr(cache, "encode_text", fake.produce)
    assert cache.text_states_key(texts, tok, 2, M, tmp_path) != key


def test_comment_or_docstring_edit_keeps_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = code_fingerprint(_produce(_module(tmp_path / "0", monkeypatch, "fp", doc='"""Scale by HOP."""')))
    reworded = _module(tmp_path / "1", monkeypatch, "fp", doc='"""Multiply by HOP."""', extra="  # note")
    assert code_fingerprint(_produce(reworded)) == base


def test_logmel_key_follows_the_voice_activity_trim_and_its_model(
    files: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = cache.logmel_key(files)
    with monkeypatch.context() as m:  # another trim function (as after an edit of trim_to_speech)
        fake = _module(tmp_path, m, "fake_trim")
        m.setattr(cache, "trim_to_speech", fake.produce)
        assert cache.logmel_key(files) != key
    with monkeypatch.context() as m:  # other VAD model bytes
        other = tmp_path / "other_vad.onnx"
        other.write_bytes(b"not the silero graph")
        m.setattr(cache, "VAD_MODEL_FILE", other)
        assert cache.logmel_key(files) != key
    with monkeypatch.context() as m:  # a constant the segmentation reads (silero's threshold)
        m.setattr(vad, "THRESHOLD", 0.6)
        assert cache.logmel_key(files) != key
    assert cache.logmel_key(files) == key


def test_speech_waveform_trims_silence_and_keeps_a_clip_without_speech() -> None:
    detector = vad.VoiceActivityDetector()
    cases = Path(__file__).resolve().parents[1] / "data" / "cases"
    x, _ = sf.read(cases / "lead_silence_20s.wav", dtype="float32")
    trimmed = cache.speech_waveform(detector, x)
    assert 0.5 * 16_000 < trimmed.size < 3 * 16_000  # the ~1 s utterance, not its 20 s of silence
    hum = (0.1 * np.sin(2 * np.pi * 50.0 * np.arange(32_000) / 16_000)).astype(np.float32)
    assert cache.speech_waveform(detector, hum) is hum
