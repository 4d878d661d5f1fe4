"""decode_audio: real files generated with soundfile / PyAV in the test."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from app.contract import SAMPLE_RATE
from app.preprocessing.audio import decode_audio, log_mel, num_frames
from app.preprocessing.errors import InputTooLargeError, UndecodableInputError, UnsupportedMediaError
from tests.media import pyav_bytes, sf_bytes, tone


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


CASES = [
    # (container, subtype, sample rate, channels)
    ("WAV", "PCM_16", 16000, 1),
    ("WAV", "PCM_24", 44100, 1),
    ("WAV", "FLOAT", 48000, 1),
    ("WAV", "PCM_16", 8000, 2),
    ("WAV", "PCM_16", 44100, 2),
    ("FLAC", None, 48000, 2),
    ("OGG", "OPUS", 48000, 1),
    ("OGG", "VORBIS", 44100, 2),
    ("MP3", None, 44100, 2),
]


@pytest.mark.parametrize(("fmt", "subtype", "rate", "channels"), CASES, ids=lambda v: str(v))
def test_soundfile_formats_decode_to_16k_mono(
    fmt: str, subtype: str | None, rate: int, channels: int
) -> None:
    data = sf_bytes(tone(1.5, rate, channels, freq=440.0), rate, fmt, subtype)
    decoded = decode_audio(data, max_seconds=30)
    assert decoded.waveform.dtype == np.float32 and decoded.waveform.ndim == 1
    assert decoded.source_sample_rate == rate and decoded.source_channels == channels
    assert decoded.format == fmt
    assert decoded.duration_s == pytest.approx(1.5, abs=0.08)  # lossy codecs add a little padding
    assert _peak_hz(decoded.waveform) == pytest.approx(440, abs=5)  # resampled, not sped up or slowed
    assert 0.3 < np.abs(decoded.waveform).max() < 0.7  # amplitude 0.5 kept (mean of equal channels)


@pytest.mark.parametrize(
    ("container", "codec", "name"),
    [("mp4", "aac", "MP4"), ("webm", "libopus", "WEBM"), ("adts", "aac", "AAC")],
    ids=str,
)
def test_pyav_formats_decode(container: str, codec: str, name: str) -> None:
    data = pyav_bytes(tone(2.0, 48000), 48000, container, codec)
    with pytest.raises(Exception):  # noqa: B017 - libsndfile really cannot read these; PyAV must
        sf.read(io.BytesIO(data))
    decoded = decode_audio(data, max_seconds=30)
    assert decoded.duration_s == pytest.approx(2.0, abs=0.1)
    assert _peak_hz(decoded.waveform) == pytest.approx(440, abs=5)
    assert decoded.format == name  # one upper-case vocabulary with libsndfile's WAV / FLAC / OGG / MP3


def test_stereo_is_the_mean_of_channels() -> None:
    left, right = tone(1.0, 16000, freq=300), tone(1.0, 16000, freq=300) * 0.0
    decoded = decode_audio(sf_bytes(np.stack([left, right], axis=1), 16000, "WAV", "FLOAT"), max_seconds=30)
    np.testing.assert_allclose(decoded.waveform, left / 2, atol=1e-6)


def test_log_mel_shape_of_decoded_audio() -> None:
    decoded = decode_audio(sf_bytes(tone(2.0, 44100), 44100, "WAV", "PCM_16"), max_seconds=30)
    feats = log_mel(decoded.waveform)
    assert feats.shape == (num_frames(decoded.waveform.shape[0]), 64)


def test_too_long_is_rejected_from_the_header() -> None:
    with pytest.raises(InputTooLargeError):
        decode_audio(sf_bytes(tone(3.0, 8000), 8000, "WAV", "PCM_16"), max_seconds=2.0)
    with pytest.raises(InputTooLargeError):
        decode_audio(pyav_bytes(tone(3.0, 48000), 48000, "webm", "libopus"), max_seconds=2.0)


def test_nan_and_inf_are_rejected() -> None:
    x = tone(0.5, 16000)
    x[100] = np.nan
    with pytest.raises(UndecodableInputError, match="NaN"):
        decode_audio(sf_bytes(x, 16000, "WAV", "FLOAT"), max_seconds=30)
    x[100] = np.inf
    with pytest.raises(UndecodableInputError):
        decode_audio(sf_bytes(x, 16000, "WAV", "FLOAT"), max_seconds=30)


def test_empty_zero_frames_and_random_bytes() -> None:
    with pytest.raises(UndecodableInputError):
        decode_audio(b"", max_seconds=30)
    with pytest.raises(UndecodableInputError):
        decode_audio(sf_bytes(np.zeros(0, np.float32), 16000, "WAV", "PCM_16"), max_seconds=30)
    with pytest.raises(UnsupportedMediaError):
        decode_audio(np.random.default_rng(1).bytes(4000), max_seconds=30)


@pytest.mark.parametrize(("rate", "decoder"), [(16000, "libsndfile"), (48000, "pyav")])
def test_ogg_opus_goes_to_the_faster_decoder_for_its_original_rate(
    rate: int, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.preprocessing.audio as audio

    data = sf_bytes(tone(1.5, rate, 2, freq=440.0), rate, "OGG", "OPUS")
    assert audio._ogg_opus_input_rate(data) == rate
    assert audio._ogg_opus_input_rate(sf_bytes(tone(0.5, rate), rate, "OGG", "VORBIS")) is None
    used: list[str] = []
    real_pyav = audio._decode_pyav
    monkeypatch.setattr(audio, "_decode_pyav", lambda d, s: used.append("pyav") or real_pyav(d, s))
    decoded = decode_audio(data, max_seconds=30)
    assert used == ([] if decoder == "libsndfile" else ["pyav"])
    assert decoded.format == "OGG" and decoded.source_channels == 2
    assert decoded.duration_s == pytest.approx(1.5, abs=0.08)
    assert _peak_hz(decoded.waveform) == pytest.approx(440, abs=5)


def test_an_m4a_cut_before_its_index_is_undecodable_not_unsupported() -> None:
    data = pyav_bytes(tone(3.0, 48000), 48000, "mp4", "aac")  # FFmpeg writes the 'moov' index at the end
    assert data[4:8] == b"ftyp" and data.rfind(b"moov") > len(data) // 2
    with pytest.raises(UndecodableInputError, match="moov"):
        decode_audio(data[: len(data) // 2], max_seconds=30)
    heic = data[:8] + b"heic" + data[12 : len(data) // 2]  # an ISO media image brand: not audio at all
    with pytest.raises(UnsupportedMediaError):
        decode_audio(heic, max_seconds=30)
