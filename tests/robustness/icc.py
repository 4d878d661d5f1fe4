"""A minimal ICC v2 CMYK input profile built in the test (no CMYK profile ships with Pillow or the OS).

Structure per ICC.1:2001-04 (version 2.1): 128-byte header, tag table, then ``desc`` (textDescriptionType),
``cprt`` (textType), ``wtpt`` (XYZType, D50) and ``A2B0`` (lut16Type ``mft2``: 4 inputs → Lab PCS, a 2-point
grid per ink, identity matrix and linear 1-D tables). The CLUT holds the Lab colour of each of the 16 ink
corners (0 % / 100 % of C, M, Y, K), computed from ``corner_rgb`` through LittleCMS's sRGB → Lab transform;
LittleCMS interpolates between them.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable

from PIL import Image, ImageCms

RGB = tuple[int, int, int]


def naive_cmyk_to_rgb(c: int, m: int, y: int, k: int) -> RGB:
    """Ink fractions 0/1 → sRGB 0..255 the usual way: R = 255 (1 - C)(1 - K), etc."""
    return (round(255 * (1 - c) * (1 - k)), round(255 * (1 - m) * (1 - k)), round(255 * (1 - y) * (1 - k)))


def _lab16(rgb: RGB) -> tuple[int, int, int]:
    lab = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), rgb),
        ImageCms.createProfile("sRGB"),
        ImageCms.createProfile("LAB"),
        outputMode="LAB",
    )
    assert lab is not None
    lightness, a, b = lab.getpixel((0, 0))  # type: ignore[misc]
    # Pillow LAB: L 0..255 for 0..100, a/b + 128 as bytes. ICC v2 16-bit Lab: L 0..0xFF00, (a + 128) × 256.
    return round(lightness / 255 * 0xFF00), a * 256, b * 256


def _tag(sig: bytes, payload: bytes) -> tuple[bytes, bytes]:
    return sig, payload + b"\0" * (-len(payload) % 4)


def cmyk_profile(corner_rgb: Callable[[int, int, int, int], RGB] = naive_cmyk_to_rgb) -> bytes:
    """Bytes of an ICC v2 CMYK → Lab input profile whose ink corners look like ``corner_rgb``."""
    name = b"test CMYK profile\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(name)) + name + struct.pack(">II", 0, 0)
    desc += struct.pack(">HB", 0, 0) + b"\0" * 67
    cprt = b"text" + b"\0" * 4 + b"public domain\0"
    d50 = (0.9642, 1.0, 0.8249)
    wtpt = b"XYZ " + b"\0" * 4 + b"".join(struct.pack(">i", round(v * 65536)) for v in d50)
    lut = b"mft2" + b"\0" * 4 + struct.pack(">BBBB", 4, 3, 2, 0)
    lut += b"".join(struct.pack(">i", 65536 if i % 4 == 0 else 0) for i in range(9))  # identity matrix
    lut += struct.pack(">HH", 2, 2)
    lut += struct.pack(">HH", 0, 65535) * 4  # input tables
    for corner in itertools.product((0, 1), repeat=4):  # first channel (C) varies slowest
        lut += struct.pack(">HHH", *_lab16(corner_rgb(*corner)))
    lut += struct.pack(">HH", 0, 65535) * 3  # output tables
    tags = [_tag(b"desc", desc), _tag(b"cprt", cprt), _tag(b"wtpt", wtpt), _tag(b"A2B0", lut)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, payload in tags:
        table += sig + struct.pack(">II", offset + len(data), len(payload))
        data += payload
    size = offset + len(data)
    header = struct.pack(">I4sI4s4s4s", size, b"\0" * 4, 0x02100000, b"scnr", b"CMYK", b"Lab ")
    header += struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 4 + struct.pack(">I", 0)
    header += b"\0" * 8 + b"\0" * 8 + struct.pack(">I", 0)
    header += b"".join(struct.pack(">i", round(v * 65536)) for v in d50) + b"\0" * 4
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + data
