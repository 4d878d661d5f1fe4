"""PNG CRC damage: a bad ancillary chunk is dropped as libpng and browsers do; critical damage is 422."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from app.preprocessing.errors import UndecodableInputError
from app.preprocessing.image import decode_image
from app.preprocessing.png_chunks import drop_damaged_ancillary_chunks
from tests.media import astronaut, image_bytes

CASES_DIR = Path(__file__).resolve().parents[2] / "data" / "cases"
LIMIT = 50_000_000


def chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of every chunk of a PNG."""
    out, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8], pos, pos + 12 + length))
        pos += 12 + length
    return out


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "made by a test")
    info.add_itxt("Description", "a face", zip=True)
    return image_bytes(astronaut().resize((96, 96)), "PNG", pnginfo=info)


def flip_crc(data: bytes, chunk_type: bytes) -> bytes:
    """The same PNG with the last CRC byte of the first ``chunk_type`` chunk inverted."""
    end = next(end for cid, _, end in chunks(data) if cid == chunk_type)
    return data[: end - 1] + bytes([data[end - 1] ^ 0xFF]) + data[end:]


def test_case_file_with_bad_text_chunk_crc_decodes_like_in_a_browser() -> None:
    data = (CASES_DIR / "png_bad_anc_crc.png").read_bytes()
    text = next((s, e) for cid, s, e in chunks(data) if cid == b"tEXt")
    assert zlib.crc32(data[text[0] + 4 : text[1] - 4]) != int.from_bytes(data[text[1] - 4 : text[1]], "big")
    decoded = decode_image(data, max_pixels=LIMIT)
    assert (decoded.width, decoded.height, decoded.format) == (512, 512, "PNG")


@pytest.mark.parametrize("chunk_type", [b"tEXt", b"iTXt"])
def test_bad_ancillary_crc_gives_the_same_pixels(chunk_type: bytes) -> None:
    good = png_with_text()
    decoded = decode_image(flip_crc(good, chunk_type), max_pixels=LIMIT)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # not the process-wide switch
    expected = Image.open(io.BytesIO(good)).convert("RGB")
    np.testing.assert_array_equal(np.asarray(decoded.image), np.asarray(expected))


def test_only_the_damaged_chunk_is_dropped() -> None:
    good = png_with_text()
    repaired, dropped = drop_damaged_ancillary_chunks(flip_crc(good, b"tEXt"))
    assert dropped == ["tEXt"]
    assert [c for c, _, _ in chunks(repaired)] == [c for c, _, _ in chunks(good) if c != b"tEXt"]
    assert drop_damaged_ancillary_chunks(good) == (good, [])
    assert drop_damaged_ancillary_chunks(b"not a png") == (b"not a png", [])


def test_bad_ihdr_crc_is_a_corrupt_image_not_an_unknown_format() -> None:
    with pytest.raises(UndecodableInputError, match="PNG"):
        decode_image(flip_crc(png_with_text(), b"IHDR"), max_pixels=LIMIT)


def test_damaged_pixel_data_and_truncation_are_still_refused() -> None:
    good = png_with_text()
    idat = next((s, e) for cid, s, e in chunks(good) if cid == b"IDAT")
    middle = (idat[0] + idat[1]) // 2
    damaged = good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :]
    for data in (damaged, good[: len(good) // 2], flip_crc(good, b"tEXt")[: len(good) // 2]):
        with pytest.raises(UndecodableInputError):
            decode_image(data, max_pixels=LIMIT)
