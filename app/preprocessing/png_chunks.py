"""PNG chunk CRCs judged as browsers judge them: a damaged ancillary chunk is dropped, not the image.

PNG (ISO/IEC 15948, W3C PNG 3rd ed. §5.4) protects every chunk with a CRC-32. A chunk whose type starts
with a lowercase letter (bit 5 of its first byte) is *ancillary*: text, time, colour hints, EXIF. libpng's
default for an ancillary chunk with a wrong CRC is to warn and discard the chunk (``PNG_CRC_DEFAULT`` in
png.h), and browsers and viewers show the image. Pillow checks those CRCs strictly and refuses the whole
file unless the process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set, which would also accept truncated
pixel data, so it is not an option: :func:`drop_damaged_ancillary_chunks` removes such chunks before Pillow
sees the bytes. Critical chunks (IHDR, PLTE, IDAT, IEND) are left alone: their damage is still an error.
"""

from __future__ import annotations

import zlib
from typing import Final

#: The 8-byte PNG file signature.
PNG_SIGNATURE: Final[bytes] = b"\x89PNG\r\n\x1a\n"


def _is_ancillary(chunk_type: bytes) -> bool:
    """Bit 5 of the first type byte set (a lowercase letter) = ancillary (PNG spec §5.4)."""
    return bool(chunk_type[0] & 0x20)


def drop_damaged_ancillary_chunks(data: bytes) -> tuple[bytes, list[str]]:
    """Remove ancillary chunks whose CRC-32 does not match their type and data.

    Walks the chunk sequence (4-byte big-endian length, 4-byte type, data, 4-byte CRC over type + data).
    The walk stops at IEND or at a chunk that runs past the end of the bytes (a truncated file is left to
    the decoder to refuse). Cost: one CRC over each ancillary chunk; critical chunks are skipped unread.

    Args:
        data: the uploaded bytes (anything; non-PNG bytes are returned unchanged).

    Returns:
        ``(bytes, dropped)``: the same object when nothing was dropped, else a copy without the damaged
        chunks; ``dropped`` names the removed chunk types (e.g. ``["tEXt"]``).
    """
    if not data.startswith(PNG_SIGNATURE):
        return data, []
    cuts: list[tuple[int, int]] = []  # byte ranges of the chunks dropped
    dropped: list[str] = []
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunk_type = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data) or chunk_type == b"IEND":
            break
        if _is_ancillary(chunk_type):
            stored = int.from_bytes(data[end - 4 : end], "big")
            if zlib.crc32(data[pos + 4 : end - 4]) & 0xFFFFFFFF != stored:
                dropped.append(chunk_type.decode("latin-1"))
                cuts.append((pos, end))
        pos = end
    if not cuts:
        return data, []
    parts, last = [], 0
    for start, stop in cuts:
        parts.append(data[last:start])
        last = stop
    parts.append(data[last:])
    return b"".join(parts), dropped
