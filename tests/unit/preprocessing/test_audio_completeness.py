"""Never a partial clip as if complete: a stream is decoded to its end, or refused with the reason.

AMR files with DTX pauses are real recordings of the kind phones make (``tests/data/cases``) and AMR/3GP
files encoded here with OpenCORE's DTX; damage is made by editing packets of files generated in the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import app.preprocessing.audio as audio
from app.preprocessing.audio import decode_audio
from app.preprocessing.errors import UndecodableInputError
from tests.media import pyav_bytes, speech_with_pause, tone

CASES_DIR = Path(__file__).resolve().parents[2] / "data" / "cases"
#: Bytes per AMR-NB storage frame (ToC byte + speech bits) by frame type (RFC 4867 §5.3, 3GPP TS 26.101).
AMR_FRAME_BYTES = {0: 13, 1: 14, 2: 16, 3: 18, 4: 20, 5: 21, 6: 27, 7: 32, 8: 6, 15: 1}


def amr_frames(data: bytes) -> list[bytes]:
    """Split a raw ``#!AMR\\n`` file (RFC 4867 §5) into its storage frames."""
    assert data.startswith(b"#!AMR\n")
    frames, pos = [], 6
    while pos < len(data):
        size = AMR_FRAME_BYTES[(data[pos] >> 3) & 0x0F]
        frames.append(data[pos : pos + size])
        pos += size
    return frames


def dtx_amr(container: str = "amr") -> bytes:
    return pyav_bytes(speech_with_pause(), 8_000, container, "libopencore_amrnb", {"dtx": "1"})


@pytest.mark.parametrize("name", ["pause_dtx.amr", "pause_dtx.3gp"])
def test_amr_recording_with_dtx_pause_is_decoded_to_its_end(name: str) -> None:
    data = (CASES_DIR / name).read_bytes()
    frames = amr_frames(data) if name.endswith(".amr") else None
    decoded = decode_audio(data, max_seconds=30)
    assert decoded.duration_s == pytest.approx(5.2, abs=0.1)  # was 1.6 s: decoding stopped at the pause
    if frames is not None:
        assert decoded.waveform.shape[0] == len(frames) * 320  # every 20 ms frame, at 16 kHz
    assert float(abs(decoded.waveform[-8_000:]).max()) > 0.01  # speech after the pause is there


@pytest.mark.parametrize("container", ["amr", "3gp"])
def test_amr_encoded_with_dtx_is_decoded_to_its_end(container: str) -> None:
    data = dtx_amr(container)
    if container == "amr":
        types = {(f[0] >> 3) & 0x0F for f in amr_frames(data)}
        assert {8, 15} <= types  # the encoder really wrote SID and NO_DATA frames
    assert decode_audio(data, max_seconds=30).duration_s == pytest.approx(3.0, abs=0.05)


def test_without_a_dtx_decoder_the_pause_is_a_clear_422(monkeypatch: pytest.MonkeyPatch) -> None:
    # FFmpeg builds without OpenCORE: FFmpeg's own AMR decoder refuses every comfort-noise frame.
    monkeypatch.setattr(audio, "PREFERRED_DECODERS", {})
    for data in (dtx_amr("amr"), (CASES_DIR / "pause_dtx.3gp").read_bytes()):
        with pytest.raises(UndecodableInputError, match="packets could not be decoded"):
            decode_audio(data, max_seconds=30)


def test_one_refused_packet_is_concealed_with_silence_of_its_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "PREFERRED_DECODERS", {})  # FFmpeg's decoder refuses NO_DATA frames
    speech = pyav_bytes(tone(3.0, 8_000, freq=300.0), 8_000, "amr", "libopencore_amrnb")
    frames = amr_frames(speech)
    frames[50] = b"\x7c"  # NO_DATA (frame type 15)
    decoded = decode_audio(b"#!AMR\n" + b"".join(frames), max_seconds=30)
    assert decoded.waveform.shape[0] == len(frames) * 320  # nothing dropped, nothing shifted
    gap = decoded.waveform[50 * 320 + 40 : 51 * 320 - 40]  # the 20 ms frame, away from resampler edges
    assert float(abs(gap).max()) < 0.05 < float(abs(decoded.waveform[40 * 320 : 41 * 320]).max())


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [("webm", "libopus", 48_000), ("caf", "alac", 44_100), ("flac", "flac", 16_000)],
)
def test_stream_shorter_than_its_container_declares_is_refused(container: str, codec: str, rate: int) -> None:
    data = pyav_bytes(tone(2.0, rate), rate, container, codec)
    assert decode_audio(data, max_seconds=30).duration_s == pytest.approx(2.0, abs=0.1)
    with pytest.raises(UndecodableInputError, match="truncated"):
        decode_audio(data[: len(data) * 6 // 10], max_seconds=30)
