"""Voice activity detection (app/preprocessing/vad.py) and the audio expert's speech gate (prepare_audio).

The segmentation is checked on hand-made per-frame probabilities against silero-vad 6.2.3's
``get_speech_timestamps_from_probs`` rules (threshold 0.5 / 0.35 hysteresis, segments ≤ 250 ms dropped,
silences < 100 ms bridged, 30 ms padding); the committed graph on real files (tests/data/cases).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.preprocessing import experts
from app.preprocessing.experts import MIN_SPEECH_S, Resources, SpeechFacts, prepare_audio
from app.preprocessing.vad import (
    FRAME_SAMPLES,
    VAD_MODEL_FILE,
    VAD_MODEL_SHA256,
    VoiceActivityDetector,
    file_sha256,
    segments_from_probabilities,
    speech_only,
    trim_to_speech,
)

CASES = Path(__file__).resolve().parents[2] / "data" / "cases"
F = FRAME_SAMPLES
PAD = 480  # 30 ms at 16 kHz


def _probs(*runs: tuple[float, int]) -> np.ndarray:
    """Per-frame probabilities from (value, frames) runs."""
    return np.concatenate([np.full(n, v, np.float32) for v, n in runs])


@pytest.fixture(scope="module")
def detector() -> VoiceActivityDetector:
    return VoiceActivityDetector(["CPUExecutionProvider"])


def _read(name: str) -> np.ndarray:
    x, rate = sf.read(CASES / name, dtype="float32")
    assert rate == 16_000
    return np.asarray(x)


def test_committed_graph_is_the_one_extracted_from_the_wheel() -> None:
    assert file_sha256(VAD_MODEL_FILE) == VAD_MODEL_SHA256


def test_no_speech_gives_no_segment() -> None:
    assert segments_from_probabilities(_probs((0.1, 100)), 100 * F) == []
    assert segments_from_probabilities(np.zeros(0, np.float32), 0) == []


def test_one_segment_is_padded_by_30_ms() -> None:
    probs = _probs((0.0, 10), (0.9, 20), (0.0, 10))
    assert segments_from_probabilities(probs, 40 * F) == [(10 * F - PAD, 30 * F + PAD)]


def test_segment_of_at_most_250_ms_is_dropped() -> None:
    # 7 frames = 224 ms ≤ 250 ms: dropped; 8 frames = 256 ms: kept
    assert segments_from_probabilities(_probs((0.0, 10), (0.9, 7), (0.0, 10)), 27 * F) == []
    assert len(segments_from_probabilities(_probs((0.0, 10), (0.9, 8), (0.0, 10)), 28 * F)) == 1


def test_short_silence_is_bridged_and_long_silence_splits() -> None:
    # 3 frames (96 ms) < 100 ms below 0.35: one segment; 10 frames (320 ms): two
    bridged = segments_from_probabilities(_probs((0.9, 20), (0.0, 3), (0.9, 20), (0.0, 10)), 53 * F)
    assert bridged == [(0, 43 * F + PAD)]
    split = segments_from_probabilities(_probs((0.9, 20), (0.0, 10), (0.9, 20), (0.0, 10)), 60 * F)
    assert split == [(0, 20 * F + PAD), (30 * F - PAD, 50 * F + PAD)]


def test_probability_between_the_two_thresholds_keeps_speech_going() -> None:
    # 0.4 is below the start threshold (0.5) but above neg_threshold (0.35): speech continues
    probs = _probs((0.9, 10), (0.4, 20), (0.0, 10))
    assert segments_from_probabilities(probs, 40 * F) == [(0, 30 * F + PAD)]
    assert segments_from_probabilities(_probs((0.4, 40)), 40 * F) == []  # never starts


def test_speech_to_the_end_of_the_clip_ends_there() -> None:
    assert segments_from_probabilities(_probs((0.0, 10), (0.9, 20)), 30 * F - 100) == [
        (10 * F - PAD, 30 * F - 100)
    ]


def test_speech_only_drops_the_edges_and_cuts_long_pauses() -> None:
    x = np.arange(100_000, dtype=np.float32)
    out = speech_only(x, [(10_000, 20_000), (60_000, 70_000)], max_pause_s=0.3, edge_s=0.0)
    assert out.waveform.size == 10_000 + 4_800 + 10_000
    assert out.speech_s == pytest.approx(20_000 / 16_000)
    assert out.waveform[0] == 10_000 and out.waveform[-1] == 69_999
    assert out.waveform[10_000 + 2_400] == 60_000 - 2_400  # second half of the kept pause leads into speech
    short_pause = speech_only(x, [(10_000, 20_000), (21_000, 30_000)], max_pause_s=0.3, edge_s=0.0)
    np.testing.assert_array_equal(short_pause.waveform, x[10_000:30_000])
    joined = speech_only(x, [(10_000, 20_000), (21_000, 30_000)], max_pause_s=0.0, edge_s=0.0)
    np.testing.assert_array_equal(joined.waveform, np.concatenate([x[10_000:20_000], x[21_000:30_000]]))
    assert speech_only(x, []).waveform.size == 0
    assert speech_only(x, []).speech_s == 0.0
    edges = speech_only(x, [(10_000, 20_000), (60_000, 70_000)], max_pause_s=0.0, edge_s=0.25)
    np.testing.assert_array_equal(
        edges.waveform, np.concatenate([x[6_000:20_000], x[60_000:74_000]])
    )  # 0.25 s = 4000 samples kept before the first and after the last segment
    assert edges.speech_s == out.speech_s
    at_the_ends = speech_only(x, [(1_000, 99_000)], edge_s=0.25)
    np.testing.assert_array_equal(at_the_ends.waveform, x)  # never beyond the clip


def test_probabilities_one_per_frame_and_in_range(detector: VoiceActivityDetector) -> None:
    x = _read("speech_16k.wav")
    p = detector.speech_probabilities(x)
    assert p.shape == (-(-x.size // F),) and p.dtype == np.float32
    assert 0.0 <= p.min() and p.max() <= 1.0
    assert p.max() > 0.9  # it is speech
    assert detector.speech_probabilities(np.zeros(0, np.float32)).shape == (0,)


def test_blocks_of_frames_carry_the_state(
    detector: VoiceActivityDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cutting a long clip into several ONNX calls gives the probabilities of one call (state carried)."""
    x = np.tile(_read("speech_16k.wav"), 4)
    whole = detector.speech_probabilities(x)
    monkeypatch.setattr("app.preprocessing.vad.MAX_FRAMES_PER_CALL", 7)
    np.testing.assert_allclose(detector.speech_probabilities(x), whole, atol=1e-6)


def test_speech_after_silence_is_found_and_trimmed(detector: VoiceActivityDetector) -> None:
    alone = trim_to_speech(detector, _read("speech_16k.wav"))
    late = trim_to_speech(detector, _read("lead_silence_20s.wav"))
    assert 0.7 < alone.speech_s < 1.9
    assert late.speech_s == pytest.approx(alone.speech_s, abs=0.1)
    assert late.waveform.size < 3 * 16_000  # the 20 s of silence are gone (speech + 2 × EDGE_S kept)
    assert trim_to_speech(detector, _read("room_noise_3s.wav")).speech_s == 0.0


def test_detector_uses_the_providers_it_is_given(detector: VoiceActivityDetector) -> None:
    assert detector.providers == ("CPUExecutionProvider",)
    # TensorRT is not asked for (the graph's LSTM is tiny); unknown lists fall back to the CPU
    assert VoiceActivityDetector(["TensorrtExecutionProvider"]).providers == ("CPUExecutionProvider",)


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="voice activity model"):
        VoiceActivityDetector(model_file=tmp_path / "absent.onnx")


def _resources(detector: VoiceActivityDetector) -> Resources:
    return Resources(tokenizer=None, vad=detector)  # type: ignore[arg-type]  # audio needs no tokenizer


def test_prepare_audio_gates_on_speech(detector: VoiceActivityDetector) -> None:
    res = _resources(detector)
    tap = prepare_audio(_read("short_20ms.wav"), res)
    assert (tap.used, tap.reason, tap.facts) == (False, experts.TOO_SHORT, SpeechFacts(None))
    noise = prepare_audio(_read("room_noise_3s.wav"), res)
    assert (noise.used, noise.reason, noise.facts) == (False, experts.NO_SPEECH, SpeechFacts(0.0))
    speech = prepare_audio(_read("lead_silence_20s.wav"), res)
    assert speech.used and speech.reason is None
    assert speech.facts.speech_s >= MIN_SPEECH_S
    assert speech.tensors is not None
    frames = speech.tensors["audio_features"].shape[0]
    assert frames < 400  # the ~1 s of speech + 2 × EDGE_S, not 21.9 s (2185 frames)
    assert speech.tensors["audio_mask"].shape == (frames,)


def test_prepare_audio_gives_a_waveform_expert_the_speech_samples(detector: VoiceActivityDetector) -> None:
    res = Resources(tokenizer=None, vad=detector, audio_waveform=True)  # type: ignore[arg-type]
    speech = prepare_audio(_read("lead_silence_20s.wav"), res)
    assert speech.used and speech.tensors is not None
    wave, mask = speech.tensors["waveform"], speech.tensors["audio_mask"]
    assert "audio_features" not in speech.tensors
    assert wave.dtype == mask.dtype == np.float32 and wave.ndim == 1
    assert 16000 * MIN_SPEECH_S <= wave.shape[0] < 16000 * 4  # the ~1 s of speech + edges, not 21.9 s
    assert mask.shape == wave.shape and (mask == 1).all()


def test_prepare_audio_cuts_a_waveform_experts_speech_at_the_window(
    detector: VoiceActivityDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert experts.WAVEFORM_WINDOW_SAMPLES == 160_000  # 10 s; shortened here below the clip's speech
    monkeypatch.setattr(experts, "WAVEFORM_WINDOW_SAMPLES", 8000)
    res = Resources(tokenizer=None, vad=detector, audio_waveform=True)  # type: ignore[arg-type]
    speech = prepare_audio(_read("lead_silence_20s.wav"), res)
    assert speech.tensors is not None
    assert speech.tensors["waveform"].shape == speech.tensors["audio_mask"].shape == (8000,)


def test_prepare_audio_minimum_is_on_speech_not_on_duration(
    detector: VoiceActivityDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _read("speech_16k.wav")
    monkeypatch.setattr(experts, "MIN_SPEECH_S", 1.5)  # more than the ~1 s of speech in a 1.87 s clip
    assert prepare_audio(x, _resources(detector)).reason == experts.NO_SPEECH
