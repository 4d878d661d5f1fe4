"""Bad-input corpus, audio (issue 5): every odd upload gets a prediction or its documented 4xx.

Files are generated here with soundfile (libsndfile) and PyAV (FFmpeg); nothing is committed. "Decoded
correctly" is checked through the API (duration, source sample rate and channel count as reported) and,
where the HTTP response cannot show it, on the decoded waveform.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.preprocessing.audio import decode_audio
from app.preprocessing.experts import MIN_SPEECH_S
from tests.media import pyav_bytes, sf_bytes, tone
from tests.robustness.helpers import assert_error, assert_prediction, post_file


def with_value(value: float) -> bytes:
    x = tone(1.0, 16_000)
    x[1000] = value
    return sf_bytes(x, 16_000, "WAV", "FLOAT")


def wav_with_format_tag(tag: int) -> bytes:
    """A 16 kHz mono WAV whose fmt chunk names codec ``tag`` (WAVE_FORMAT_*; 0x1234 is assigned to none)."""
    data = bytes(3200)
    fmt = struct.pack("<HHIIHH", tag, 1, 16_000, 32_000, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data))
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def wav16(seconds: float = 1.0) -> bytes:
    return sf_bytes(tone(seconds, 16_000), 16_000, "WAV", "PCM_16")


# (case id, bytes factory, expected): ("ok", seconds, source rate, channels) or (status, error.type).
Expected = tuple[object, ...]
CASES: list[tuple[str, Callable[[], bytes], Expected]] = [
    ("wav_u8", lambda: sf_bytes(tone(1.0, 16_000), 16_000, "WAV", "PCM_U8"), ("ok", 1.0, 16_000, 1)),
    ("wav_pcm16", wav16, ("ok", 1.0, 16_000, 1)),
    ("wav_pcm24", lambda: sf_bytes(tone(1.0, 16_000), 16_000, "WAV", "PCM_24"), ("ok", 1.0, 16_000, 1)),
    ("wav_pcm32", lambda: sf_bytes(tone(1.0, 16_000), 16_000, "WAV", "PCM_32"), ("ok", 1.0, 16_000, 1)),
    ("wav_float32", lambda: sf_bytes(tone(1.0, 16_000), 16_000, "WAV", "FLOAT"), ("ok", 1.0, 16_000, 1)),
    (
        "wav_float32_above_one",
        lambda: sf_bytes(tone(1.0, 16_000) * 6.0, 16_000, "WAV", "FLOAT"),
        ("ok", 1.0, 16_000, 1),
    ),
    ("wav_float32_nan", lambda: with_value(float("nan")), (422, "undecodable_input")),
    ("wav_float32_inf", lambda: with_value(float("inf")), (422, "undecodable_input")),
    ("wav_float32_minus_inf", lambda: with_value(float("-inf")), (422, "undecodable_input")),
    # Finite but absurd (1e20): its float32 power spectrum would overflow to NaN inside the model input.
    ("wav_float32_1e20", lambda: with_value(1e20), (422, "undecodable_input")),
    ("wav_float32_1e5", lambda: with_value(1e5), ("ok", 1.0, 16_000, 1)),
    ("mono", lambda: sf_bytes(tone(1.0, 16_000, 1), 16_000, "WAV", "PCM_16"), ("ok", 1.0, 16_000, 1)),
    ("stereo", lambda: sf_bytes(tone(1.0, 16_000, 2), 16_000, "WAV", "PCM_16"), ("ok", 1.0, 16_000, 2)),
    ("six_channels", lambda: sf_bytes(tone(1.0, 16_000, 6), 16_000, "WAV", "PCM_16"), ("ok", 1.0, 16_000, 6)),
    *[
        (
            f"rate_{rate}",
            lambda rate=rate: sf_bytes(tone(1.0, rate), rate, "WAV", "PCM_16"),
            ("ok", 1.0, rate, 1),
        )
        for rate in (8_000, 22_050, 44_100, 48_000, 96_000)
    ],
    ("flac", lambda: sf_bytes(tone(1.0, 44_100, 2), 44_100, "FLAC"), ("ok", 1.0, 44_100, 2)),
    ("ogg_vorbis", lambda: sf_bytes(tone(1.0, 44_100), 44_100, "OGG", "VORBIS"), ("ok", 1.0, 44_100, 1)),
    ("ogg_opus", lambda: sf_bytes(tone(1.0, 48_000), 48_000, "OGG", "OPUS"), ("ok", 1.0, 48_000, 1)),
    ("mp3", lambda: sf_bytes(tone(1.0, 44_100), 44_100, "MP3"), ("ok", 1.0, 44_100, 1)),
    ("m4a_aac", lambda: pyav_bytes(tone(1.0, 48_000), 48_000, "mp4", "aac"), ("ok", 1.0, 48_000, 1)),
    ("webm_opus", lambda: pyav_bytes(tone(1.0, 48_000), 48_000, "webm", "libopus"), ("ok", 1.0, 48_000, 1)),
    (
        "zero_frames_wav",
        lambda: sf_bytes(np.zeros(0, np.float32), 16_000, "WAV", "PCM_16"),
        (422, "undecodable_input"),
    ),
    ("header_only_wav", lambda: wav16()[:44], (422, "undecodable_input")),
    ("truncated_wav", lambda: wav16()[:20_000], (422, "undecodable_input")),
    (
        "header_only_flac",
        lambda: sf_bytes(tone(1.0, 16_000), 16_000, "FLAC")[:42],
        (422, "undecodable_input"),
    ),
    (
        "silence",
        lambda: sf_bytes(np.zeros(16_000, np.float32), 16_000, "WAV", "PCM_16"),
        ("ok", 1.0, 16_000, 1),
    ),
    (
        "longer_than_limit_wav",
        lambda: sf_bytes(tone(31.0, 8_000), 8_000, "WAV", "PCM_16"),
        (413, "input_too_large"),
    ),
    (
        "longer_than_limit_webm",
        lambda: pyav_bytes(tone(31.0, 16_000), 16_000, "webm", "libopus"),
        (413, "input_too_large"),
    ),
    ("random_bytes", lambda: np.random.default_rng(7).bytes(20_000), (415, "unsupported_media_type")),
    ("wav_unknown_codec", lambda: wav_with_format_tag(0x1234), (415, "unsupported_media_type")),
    ("wav_mu_law", lambda: sf_bytes(tone(1.0, 8_000), 8_000, "WAV", "ULAW"), ("ok", 1.0, 8_000, 1)),
    (
        "wav_ima_adpcm",
        lambda: sf_bytes(tone(1.0, 16_000), 16_000, "WAV", "IMA_ADPCM"),
        ("ok", 1.0, 16_000, 1),
    ),
    ("zero_bytes", lambda: b"", (422, "undecodable_input")),
    (
        "an_image_as_audio",
        lambda: bytes.fromhex("89504e470d0a1a0a") + bytes(64),
        (415, "unsupported_media_type"),
    ),
]


@pytest.mark.parametrize(("data_fn", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_audio_corpus(client: TestClient, data_fn: Callable[[], bytes], expected: Expected) -> None:
    r = post_file(client, "audio", data_fn())
    if expected[0] != "ok":
        assert_error(r, int(expected[0]), str(expected[1]))  # type: ignore[call-overload]
        return
    _, seconds, rate, channels = expected
    audio = assert_prediction(r)["modalities"]["audio"]
    # Every clip of this corpus is a tone: decoded in full, then not used (no speech; the VAD gate).
    expected_reason = "too_short" if seconds < MIN_SPEECH_S else "no_speech"
    assert (audio["used"], audio["reason"]) == (False, expected_reason)
    # Lossy codecs pad by up to one frame (AAC: 1024 samples); PCM is exact to 1 ms.
    assert audio["duration_s"] == pytest.approx(seconds, abs=0.03)
    assert (audio["sample_rate"], audio["channels"]) == (rate, channels)


def test_limit_is_exactly_the_setting(client: TestClient, settings: Settings) -> None:
    at_limit = sf_bytes(tone(settings.max_audio_seconds, 8_000), 8_000, "WAV", "PCM_16")
    assert_prediction(post_file(client, "audio", at_limit))
    over = sf_bytes(tone(settings.max_audio_seconds + 0.01, 8_000), 8_000, "WAV", "PCM_16")
    assert_error(post_file(client, "audio", over), 413, "input_too_large")


def test_unsigned_8_bit_is_centred_not_offset() -> None:
    # PCM_U8 stores 128 as silence; a decoder treating it as signed would add a DC offset of ±0.5.
    ref = decode_audio(wav16(), max_seconds=30).waveform
    u8 = decode_audio(sf_bytes(tone(1.0, 16_000), 16_000, "WAV", "PCM_U8"), max_seconds=30).waveform
    assert abs(float(u8.mean())) < 0.01
    np.testing.assert_allclose(u8, ref, atol=2 / 256)


def test_float_above_one_is_kept_not_clipped() -> None:
    decoded = decode_audio(sf_bytes(tone(1.0, 16_000) * 6.0, 16_000, "WAV", "FLOAT"), max_seconds=30)
    assert float(np.abs(decoded.waveform).max()) == pytest.approx(3.0, rel=1e-3)


def test_six_channels_are_averaged() -> None:
    x = np.zeros((16_000, 6), np.float32)
    x[:, 3] = tone(1.0, 16_000)  # one channel (e.g. LFE or centre) carries the signal
    decoded = decode_audio(sf_bytes(x, 16_000, "WAV", "FLOAT"), max_seconds=30)
    np.testing.assert_allclose(decoded.waveform, tone(1.0, 16_000) / 6, atol=1e-6)


def _without_xing_header(mp3: bytes) -> bytes:
    """Drop everything up to the first audio frame after the Xing/Info frame (a VBR MP3 as some encoders
    and stream rippers write it: no frame count in any header)."""
    xing = mp3.find(b"Xing")
    assert xing > 0
    start = mp3.find(b"\xff\xfb", xing)
    assert start > 0
    return mp3[start:]


def test_vbr_mp3_without_xing_header_is_decoded_in_full(client: TestClient, settings: Settings) -> None:
    # libsndfile estimates such a file's length from its first frame and stops there (20 s read as ~3 s).
    mp3 = _without_xing_header(sf_bytes(tone(20.0, 44_100), 44_100, "MP3"))
    audio = assert_prediction(post_file(client, "audio", mp3))["modalities"]["audio"]
    assert audio["duration_s"] == pytest.approx(20.0, abs=0.1)
    too_long = _without_xing_header(sf_bytes(tone(settings.max_audio_seconds + 10, 44_100), 44_100, "MP3"))
    assert_error(post_file(client, "audio", too_long), 413, "input_too_large")
