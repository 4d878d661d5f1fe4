"""Size fields of WAV/AIFF/CAF are hints; only a sample chunk cut short is a truncated upload.

Each WAV is built byte by byte here, with the header faults real writers produce; the expected durations
are what libsndfile and FFmpeg decode from the same bytes (checked by hand with both when written).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from app.preprocessing.audio import decode_audio
from app.preprocessing.container_sizes import find_payload, payload_shortfall
from app.preprocessing.errors import UndecodableInputError
from tests.media import sf_bytes, tone

CASES_DIR = Path(__file__).resolve().parents[2] / "data" / "cases"
RATE = 16_000
PCM = (tone(1.0, RATE) * 32767).astype("<i2").tobytes()  # 16 000 samples, 32 000 bytes
FMT = struct.pack("<HHIIHH", 1, 1, RATE, 2 * RATE, 2, 16)  # PCM, mono, 16 kHz, 16 bit
FMT_CHUNK = b"fmt " + struct.pack("<I", len(FMT)) + FMT


def chunk(cid: bytes, body: bytes, size: int | None = None, pad: bool = True) -> bytes:
    """A RIFF chunk; ``size`` overrides the size field; odd bodies get their pad byte unless ``pad=False``."""
    field = len(body) if size is None else size
    return cid + struct.pack("<I", field) + body + (b"\0" if pad and len(body) % 2 else b"")


def wav(*chunks: bytes, riff: int | None = None) -> bytes:
    """``RIFF <size> WAVE`` + chunks; ``riff`` overrides the RIFF size field."""
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if riff is None else riff) + body


FULL = len(PCM) // 2
COMPLETE: list[tuple[str, bytes, int]] = [
    ("plain", wav(FMT_CHUNK, chunk(b"data", PCM)), FULL),
    ("riff_size_8_too_large", wav(FMT_CHUNK, chunk(b"data", PCM), riff=36 + len(PCM) + 8), FULL),
    ("riff_size_too_small", wav(FMT_CHUNK, chunk(b"data", PCM), riff=36), FULL),
    ("riff_size_0", wav(FMT_CHUNK, chunk(b"data", PCM), riff=0), FULL),
    ("data_size_unknown_ffffffff", wav(FMT_CHUNK, chunk(b"data", PCM, size=0xFFFFFFFF)), FULL),
    # A streaming writer that never went back to fill the size in: FFmpeg reads to the end of the file.
    ("data_size_0_streaming_writer", wav(FMT_CHUNK, chunk(b"data", PCM, size=0)), FULL),
    # The writer counted its 36 header bytes into the data size (as if it were the RIFF size).
    ("data_size_counts_the_header", wav(FMT_CHUNK, chunk(b"data", PCM, size=len(PCM) + 36)), FULL),
    # A data size smaller than the bytes: libsndfile and FFmpeg both stop at the declared end.
    ("data_size_smaller", wav(FMT_CHUNK, chunk(b"data", PCM, size=len(PCM) // 2)), FULL // 2),
    (
        "odd_list_chunk_padded",
        wav(FMT_CHUNK, chunk(b"LIST", b"INFOabc"), chunk(b"data", PCM)),
        FULL,
    ),
    (
        "list_chunk_after_data",
        wav(FMT_CHUNK, chunk(b"data", PCM), chunk(b"LIST", b"INFOabcd")),
        FULL,
    ),
    (
        "riff_size_too_large_list_after_data",
        wav(FMT_CHUNK, chunk(b"data", PCM), chunk(b"LIST", b"INFOabcd"), riff=10**6),
        FULL,
    ),
]


@pytest.mark.parametrize(("data", "samples"), [c[1:] for c in COMPLETE], ids=[c[0] for c in COMPLETE])
def test_complete_wav_is_decoded_whatever_its_size_fields_say(data: bytes, samples: int) -> None:
    decoded = decode_audio(data, max_seconds=30)
    assert decoded.waveform.shape[0] == samples
    expected = np.frombuffer(PCM, "<i2")[:samples].astype(np.float32) / 32768
    np.testing.assert_allclose(decoded.waveform, expected, atol=1e-4)


def test_recordrtc_wav_with_riff_size_8_too_large_is_decoded_in_full() -> None:
    data = (CASES_DIR / "recordrtc_riffsize.wav").read_bytes()
    assert int.from_bytes(data[4:8], "little") == len(data)  # RIFF size counts 8 bytes too many
    data_size = int.from_bytes(data[40:44], "little")
    decoded = decode_audio(data, max_seconds=30)
    assert decoded.waveform.shape[0] == data_size // 2  # every sample of the data chunk


CUT: list[tuple[str, bytes]] = [
    ("cut_mid_data", wav(FMT_CHUNK, chunk(b"data", PCM))[:20_000]),
    ("header_only", wav(FMT_CHUNK, chunk(b"data", PCM))[:44]),
    (
        "riff_size_8_too_large_and_cut",
        wav(FMT_CHUNK, chunk(b"data", PCM), riff=len(PCM) + 44)[:20_000],
    ),
    ("aiff_cut", sf_bytes(tone(1.0, RATE), RATE, "AIFF", "PCM_16")[:20_000]),
    ("caf_cut", sf_bytes(tone(1.0, RATE), RATE, "CAF", "PCM_16")[:20_000]),
]


@pytest.mark.parametrize("data", [c[1] for c in CUT], ids=[c[0] for c in CUT])
def test_sample_chunk_cut_short_is_a_truncated_upload(data: bytes) -> None:
    with pytest.raises(UndecodableInputError, match="truncated"):
        decode_audio(data, max_seconds=30)


def test_aiff_with_wrong_form_size_is_decoded_in_full() -> None:
    data = bytearray(sf_bytes(tone(1.0, RATE), RATE, "AIFF", "PCM_16"))
    data[4:8] = (len(data) + 100).to_bytes(4, "big")  # FORM size: a hint, like RIFF's
    assert decode_audio(bytes(data), max_seconds=30).waveform.shape[0] == RATE


def test_payload_is_found_in_each_container() -> None:
    for fmt in ("WAV", "AIFF", "CAF"):
        data = sf_bytes(tone(1.0, RATE), RATE, fmt, "PCM_16")
        payload = find_payload(data)
        assert payload is not None and payload.container == fmt
        assert payload_shortfall(payload) == 0
        cut = find_payload(data[: len(data) // 2])
        assert cut is not None and payload_shortfall(cut) > 0
    assert find_payload(sf_bytes(tone(1.0, RATE), RATE, "FLAC")) is None
    assert find_payload(b"RIFF\xff\xff\xff\xffWAVE" + b"JUNK" + b"\xff" * 8) is None  # no data chunk
