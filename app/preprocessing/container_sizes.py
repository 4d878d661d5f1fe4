"""Size fields of chunked audio containers (RIFF/WAVE, AIFF, CAF), read as hints.

A chunked container states its sizes twice: an outer size (RIFF / FORM: the whole file) and the size of
the chunk that holds the samples (``data`` / ``SSND`` / CAF ``data``). Writers get the outer one wrong
often (browser recorders such as RecordRTC write a RIFF size 8 bytes too large; streaming writers write 0
or 0xFFFFFFFF) and libsndfile and FFmpeg ignore it. The payload size is what tells a complete upload from
a cut one: libsndfile and FFmpeg both decode whatever bytes are there, so a cut upload would be decoded as a
shorter clip without notice. :func:`payload_shortfall` measures how many payload bytes are missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: Size values that mean "unknown, read to the end of the file" (streaming writers; libsndfile and FFmpeg
#: both read to the end for these in WAV, FFmpeg ``wavdec.c`` also for 0). CAF uses -1 (all bits set).
_UNKNOWN_SIZES: Final[frozenset[int]] = frozenset({0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF})

#: Payload bytes that may be missing without calling the upload cut: a writer that counted the 44-byte
#: WAV header (or 36 bytes of it) into the data size. 64 bytes are 2 ms of 16 kHz 16-bit mono.
HEADER_SLACK_BYTES: Final[int] = 64


@dataclass(frozen=True, slots=True)
class Payload:
    """Where a container's sample chunk starts and how long it says it is.

    Attributes:
        container: ``WAV``, ``AIFF`` or ``CAF``.
        offset: byte offset of the first payload byte (after the chunk header).
        declared: payload size in bytes as the chunk header states it; ``None`` when the header says
            "unknown" (0 / all bits set).
        available: payload bytes actually present (from ``offset`` to the end of the upload).
    """

    container: str
    offset: int
    declared: int | None
    available: int


def _walk(
    data: bytes, start: int, target: bytes, size_bytes: int, order: Literal["little", "big"], pad: bool
) -> tuple[int, int]:
    """Offset of ``target``'s payload and its size field; (-1, 0) if absent. Each step advances ≥ 8 bytes."""
    pos = start
    header = 4 + size_bytes
    while pos + header <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + header], order)
        if data[pos : pos + 4] == target:
            return pos + header, size
        # Chunks of odd size are followed by one pad byte in RIFF and AIFF (EA IFF 85), not in CAF.
        pos += header + size + (size & 1 if pad else 0)
    return -1, 0


def find_payload(data: bytes) -> Payload | None:
    """Locate the sample chunk of a RIFF/WAVE, AIFF/AIFC or CAF upload.

    Sources: Microsoft RIFF/WAVE (``data`` chunk, little-endian u32 sizes, odd chunks padded), Apple AIFF
    1.3 / AIFF-C (``SSND``, big-endian u32, padded) and Apple CAF (``data``, big-endian i64 after an
    8-byte file header; the size includes a 4-byte edit count). The outer RIFF/FORM size is not used.

    Args:
        data: the uploaded bytes.

    Returns:
        :class:`Payload`, or ``None`` when the bytes are none of these containers or hold no sample chunk.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        offset, size = _walk(data, 12, b"data", 4, "little", pad=True)
        container = "WAV"
    elif data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        offset, size = _walk(data, 12, b"SSND", 4, "big", pad=True)
        container = "AIFF"
    elif data[:4] == b"caff":
        offset, size = _walk(data, 8, b"data", 8, "big", pad=False)
        container = "CAF"
    else:
        return None
    if offset < 0:
        return None
    declared = None if size in _UNKNOWN_SIZES else size
    return Payload(container, offset, declared, max(0, len(data) - offset))


def payload_shortfall(payload: Payload) -> int:
    """Payload bytes the chunk header announces beyond those uploaded (0 when complete or unknown).

    A writer that counted its own header into the payload size (declared = file length - 8, as for the
    RIFF size) is a header fault, not a cut upload: a shortfall of at most :data:`HEADER_SLACK_BYTES`
    is not counted.

    Args:
        payload: from :func:`find_payload`.

    Returns:
        Missing bytes (≥ 0).
    """
    if payload.declared is None:
        return 0
    missing = payload.declared - payload.available
    return missing if missing > HEADER_SLACK_BYTES else 0
