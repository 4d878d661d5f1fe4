"""Image preprocessing shared by training and serving.

:func:`normalize_face` is the ONE face normalisation step: the face branch was trained on FER2013 crops
passed through it (``app/training``), and the service passes detected face crops through it.
:func:`decode_image` turns uploaded bytes into an RGB image at the size the experts need (serving, and the
scene expert's training images).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from app.contract import FACE_SIZE
from app.preprocessing.errors import (
    InputTooLargeError,
    PreprocessingError,
    UndecodableInputError,
    UnsupportedMediaError,
)
from app.preprocessing.png_chunks import PNG_SIGNATURE, drop_damaged_ancillary_chunks


def normalize_face(face: Image.Image | npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Turn a face crop into the face branch's input.

    Steps (mini-Xception preprocessing of the ``fer`` package, ``fer/utils`` ``preprocess_input``):
    grayscale with ITU-R 601-2 luma (Pillow ``convert("L")``: L = 0.299 R + 0.587 G + 0.114 B), bilinear
    resize to ``FACE_SIZE`` × ``FACE_SIZE`` = 64 × 64 pixels, then ``x / 127.5 - 1`` so 0 → -1, 255 → +1.

    Args:
        face: a Pillow image of any mode, or a uint8 array [H, W] (grayscale) or [H, W, 3] (RGB).

    Returns:
        float32 array [1, 64, 64] with values in [-1, 1].

    Raises:
        ValueError: if the array is not uint8 [H, W] / [H, W, 3] or the crop is empty.
    """
    if isinstance(face, Image.Image):
        img = face
    else:
        arr = np.asarray(face)
        if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
            raise ValueError(f"face must be uint8 [H, W] or [H, W, 3], got {arr.dtype} {arr.shape}")
        img = Image.fromarray(arr)
    if img.width == 0 or img.height == 0:
        raise ValueError("face crop is empty")
    if img.mode != "L":
        img = img.convert("RGB").convert("L") if img.mode not in ("RGB", "L") else img.convert("L")
    img = img.resize((FACE_SIZE, FACE_SIZE), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return out[None, :, :]


# --------------------------------------------------------------------------------------------------------
# Decoding of uploaded bytes (serving)
# --------------------------------------------------------------------------------------------------------

#: Pillow formats this service decodes. The format is detected from the bytes by Pillow's own magic-number
#: checks (``Image.open(..., formats=...)``), never from the client's Content-Type or file name.
SUPPORTED_IMAGE_FORMATS: Final[tuple[str, ...]] = (
    "JPEG",
    "MPO",
    "PNG",
    "GIF",
    "WEBP",
    "BMP",
    "TIFF",
    "AVIF",
)

#: Magic numbers of formats we recognise only to name them in a 415 message.
_KNOWN_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)


#: Longest side, in pixels, to which images are decoded when they are larger: JPEGs through libjpeg's DCT
#: scaling (1/2, 1/4 or 1/8 during decoding: :func:`dct_scale`), other formats by an integer box reduction
#: right after decoding (:func:`reduction_factor`), in both cases before EXIF orientation and colour
#: conversion, so those run on the small copy. What the experts need: the face detector looks at a
#: 640 px copy (``app.preprocessing.face.DETECTION_MAX_SIDE``), the scene expert at a 224 px square, and the
#: face expert at a 64 px crop. At 1,600 px (2.5 × 640) the smallest face the detector finds (about 16 px in
#: its copy) is still ≥ 40 px, near FER2013's own 48 px faces that the face expert was trained on; larger
#: faces give crops of the full 64 px or more. A 12 MP phone photo (4,032 × 3,024) is decoded at 2,016 ×
#: 1,512, a 48 MP one at 1/4 and a 200 MP one at 1/8 of its side.
WORK_SIDE: Final[int] = 1600
#: Pillow metadata key (``Image.info``) under which :func:`decode_image` records the image's size before any
#: reduction, after EXIF orientation: (width, height) in pixels. Read by :func:`original_size`.
ORIGINAL_SIZE_KEY: Final[str] = "msa_original_size"

# Pillow's own decompression-bomb check (MAX_IMAGE_PIXELS, 89.5 MP: a warning, an error above twice that,
# raised by ``Image.open``) is replaced by :func:`decode_image`'s checks, which read the size from the header
# before any pixel is decoded and allow large baseline JPEGs, which are decoded at reduced size.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An uploaded image decoded to RGB.

    Attributes:
        image: Pillow image, mode ``RGB``, EXIF orientation applied, first frame of animations; its longest
            side is reduced towards :data:`WORK_SIDE` when the file is larger (``image.width / width`` is
            the factor).
        format: the format detected from the bytes (Pillow name, e.g. ``JPEG``).
        width: pixels of the file after EXIF orientation (before any reduction).
        height: pixels of the file after EXIF orientation (before any reduction).
        frames: number of frames in the file (> 1 for animations; only the first is used).
    """

    image: Image.Image
    format: str
    width: int
    height: int
    frames: int


def dct_scale(width: int, height: int, work_side: int = WORK_SIDE) -> int:
    """The JPEG DCT scaling denominator for an image of ``width`` × ``height`` pixels: the largest of
    8, 4, 2 whose scaled longest side is still ≥ ``work_side``, else 1 (libjpeg decodes at 1/8, 1/4, 1/2
    directly, skipping most of the inverse DCT and all of the full-size pixel buffer)."""
    longest = max(width, height)
    for denominator in (8, 4, 2):
        if longest // denominator >= work_side:
            return denominator
    return 1


def reduction_factor(width: int, height: int, work_side: int = WORK_SIDE) -> int:
    """The integer factor f ≥ 1 for ``Image.reduce`` (a box filter: each output pixel is the mean of an
    f × f block) that brings the longest side down to no less than ``work_side``."""
    return max(1, max(width, height) // work_side)


def original_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) in pixels of the file ``image`` was decoded from (after EXIF orientation), as
    :func:`decode_image` recorded it; the image's own size for any other image."""
    size = image.info.get(ORIGINAL_SIZE_KEY)
    if isinstance(size, tuple) and len(size) == 2:
        return int(size[0]), int(size[1])
    return image.width, image.height


def _sniff_name(data: bytes) -> str | None:
    head = data[:64].lstrip()
    for magic, name in _KNOWN_SIGNATURES:
        if head.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace").strip()
        return f"ISO media ({brand})" if brand else "ISO media"
    return None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB without clipping high bit depths or dropping alpha onto black."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grayscale: Pillow's convert("L") clips at 255; scale the range instead.
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        gray = np.clip(np.rint(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(np.rint(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "CMYK":
        icc = img.info.get("icc_profile")
        if icc:
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                dst = ImageCms.createProfile("sRGB")
                converted = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
                if converted is not None:
                    return converted
            except Exception:  # noqa: BLE001 - a broken ICC profile falls back to the plain conversion
                pass
        return img.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if mode == "P" or has_alpha:
        rgba = img.convert("RGBA")
        if has_alpha:
            # Transparent pixels composited onto white (how browsers show them), not onto black.
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return rgba.convert("RGB")
    return img.convert("RGB")


#: Formats Pillow decodes through libjpeg, which can scale during decoding (``Image.draft``).
DCT_SCALED_FORMATS: Final[tuple[str, ...]] = ("JPEG", "MPO")
_EXIF_ORIENTATION: Final[int] = 0x0112
#: EXIF Orientation value → the transpose that turns the stored pixels upright (EXIF 2.32, tag 0x0112; the
#: table of ``PIL.ImageOps.exif_transpose``). Applied after the reduction, so it moves few pixels.
_ORIENTATION_TRANSPOSE: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


#: JPEG start-of-frame markers of sequential (one pass over the data) Huffman coding: baseline and extended
#: (ITU-T T.81, Table B.1: SOF0, SOF1). Progressive (SOF2), lossless and arithmetic-coded frames are not.
_SEQUENTIAL_SOF: Final[frozenset[int]] = frozenset({0xC0, 0xC1})
_SOF_MARKERS: Final[frozenset[int]] = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_streams_in_one_scan(data: bytes) -> bool:
    """Whether libjpeg can decode this JPEG row by row in bounded memory: a sequential frame (SOF0/SOF1)
    whose first scan holds every component (an interleaved scan). Otherwise (progressive, or a sequential
    file with one scan per component) libjpeg keeps all DCT coefficients of the image in memory whatever
    the output scale: measured on a 196 MP non-interleaved file of 2.3 MB, 1.17 GB at peak. Reads the
    marker segments up to the first start of scan (ITU-T T.81, B.2); False for anything unreadable."""
    if not data.startswith(b"\xff\xd8"):
        return False
    pos, frame_components, sequential = 2, None, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return False
        segment = data[pos + 4 : pos + 2 + length]
        if marker in _SOF_MARKERS:
            if len(segment) < 6:
                return False
            sequential, frame_components = marker in _SEQUENTIAL_SOF, segment[5]
        elif marker == 0xDA:  # start of scan: Ns components in this scan
            return bool(
                sequential and segment and frame_components is not None and segment[0] == frame_components
            )
        pos += 2 + length
    return False


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1–8) of an opened image; 1 when absent or unreadable (a broken EXIF block is
    ignored, the pixels are fine)."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - untrusted metadata
        return 1
    return value if value in _ORIENTATION_TRANSPOSE else 1


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """Box-reduce by ``factor``; modes other than RGB and L (palette, alpha, 16-bit, CMYK) are converted to
    RGB first (:func:`_to_rgb`), so palette indices are never averaged and transparent pixels are
    composited before they are mixed with opaque ones."""
    if img.mode not in ("RGB", "L"):
        img = _to_rgb(img)
    return img.reduce(factor)


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    max_jpeg_pixels: int | None = None,
    work_side: int | None = WORK_SIDE,
) -> DecodedImage:
    """Decode uploaded image bytes to an RGB Pillow image, at the size the experts need.

    Steps: drop PNG ancillary chunks with a wrong CRC, as libpng and browsers do
    (:func:`~app.preprocessing.png_chunks.drop_damaged_ancillary_chunks`); detect the format from the bytes
    (Pillow, restricted to :data:`SUPPORTED_IMAGE_FORMATS`); check width × height from the header against
    the limit before decoding any pixel data (decompression bombs); take the first frame of animations;
    decode, a JPEG larger than ``work_side`` at 1/2, 1/4 or 1/8 of its size (:func:`dct_scale`, libjpeg's
    DCT scaling); box-reduce any other image larger than ``work_side`` by an integer factor
    (:func:`reduction_factor`); apply the EXIF orientation tag; convert any mode to RGB (16-bit scaled, not
    clipped; alpha and palette transparency composited onto white; CMYK through its ICC profile when it has
    one). The size before reduction is recorded in the image's ``info`` (:func:`original_size`), so face
    boxes can be reported in the file's pixels.

    Args:
        data: the uploaded bytes.
        max_pixels: largest accepted width × height.
        max_jpeg_pixels: largest accepted width × height of a sequential JPEG whose first scan holds
            every component (:func:`jpeg_streams_in_one_scan`: what cameras write), which is decoded at
            reduced size in bounded memory; None → ``max_pixels``. Other JPEGs (progressive, one scan per
            component) keep ``max_pixels``: libjpeg buffers all of their DCT coefficients, at full size.
        work_side: longest side to reduce larger images towards (default :data:`WORK_SIDE`); None decodes
            at full size.

    Returns:
        :class:`DecodedImage` (``width``, ``height``: the file's size after EXIF orientation).

    Raises:
        UndecodableInputError: empty or truncated/corrupt data in a supported format, including a PNG
            whose critical chunks (IHDR, PLTE, IDAT) are damaged (422).
        UnsupportedMediaError: not a supported image format (415).
        InputTooLargeError: more pixels than the limit for its format (413).
    """
    if not data:
        raise UndecodableInputError("image is empty (0 bytes)")
    Image.init()  # register every plugin so ``formats`` can name them (idempotent)
    formats = [f for f in SUPPORTED_IMAGE_FORMATS if f in Image.OPEN]
    data, _ = drop_damaged_ancillary_chunks(data)
    try:
        source = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"image has too many pixels (limit {max_pixels})") from exc
    except UnidentifiedImageError as exc:
        if data.startswith(PNG_SIGNATURE):
            # Pillow reports a PNG with a damaged critical chunk (e.g. a wrong IHDR CRC) as "cannot identify".
            raise UndecodableInputError("PNG file is corrupt: its header chunks could not be read") from exc
        name = _sniff_name(data)
        detail = f" (looks like {name})" if name else ""
        raise UnsupportedMediaError(
            f"image is not in a supported format{detail}; supported: {', '.join(SUPPORTED_IMAGE_FORMATS)}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: Pillow's plugins raise OSError, ValueError,
        # SyntaxError, but also RuntimeError (AVIF: "Missing or empty image item"), TypeError (TIFF: "Missing
        # dimensions"), ... (found by mutation fuzzing); all mean "cannot read this file", never a 500.
        raise UndecodableInputError("image header could not be read") from exc
    rgb: Image.Image | None = None
    try:
        width, height = source.size
        if width <= 0 or height <= 0:
            raise UndecodableInputError("image has no pixels")
        fmt = str(source.format or "unknown")
        scalable = fmt in DCT_SCALED_FORMATS and jpeg_streams_in_one_scan(data)
        jpeg_limit = scalable and max_jpeg_pixels is not None
        limit = max_jpeg_pixels if jpeg_limit and max_jpeg_pixels is not None else max_pixels
        if width * height > limit:
            kind = "baseline JPEG" if jpeg_limit else "image"
            why = ""
            if fmt in DCT_SCALED_FORMATS and not jpeg_limit and max_jpeg_pixels is not None:
                why = (
                    f" (a progressive or non-interleaved JPEG is decoded whole; baseline JPEGs as cameras "
                    f"write them may have up to {max_jpeg_pixels})"
                )
            raise InputTooLargeError(
                f"image has {width}×{height} = {width * height} pixels, more than the {kind} limit of "
                f"{limit}{why}"
            )
        frames = int(getattr(source, "n_frames", 1) or 1)
        if frames > 1:
            source.seek(0)
        if work_side is not None and fmt in DCT_SCALED_FORMATS:
            denominator = dct_scale(width, height, work_side)
            if denominator > 1:
                # max(1, ...): a 4 × 20,000 strip still decodes (Pillow's draft divides by the size asked).
                source.draft(None, (max(1, width // denominator), max(1, height // denominator)))
        source.load()
        if source.size == (height, width) and fmt not in DCT_SCALED_FORMATS:
            width, height = height, width  # libtiff applies the orientation itself while decoding
        # Read after decoding, as ImageOps.exif_transpose does: a TIFF's tag is gone once libtiff applied it.
        orientation = _orientation(source)
        img: Image.Image = source
        if work_side is not None:
            factor = reduction_factor(img.width, img.height, work_side)
            if factor > 1:
                img = _reduce(img, factor)
        if orientation in _ORIENTATION_TRANSPOSE:
            img = img.transpose(_ORIENTATION_TRANSPOSE[orientation])
        rgb = _to_rgb(img)
        rgb.load()
        upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        rgb.info[ORIGINAL_SIZE_KEY] = upright
    except PreprocessingError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"image has too many pixels (limit {max_pixels})") from exc
    except Exception as exc:  # noqa: BLE001 - as above: any decoder failure on untrusted bytes
        raise UndecodableInputError("image data is truncated or corrupt") from exc
    finally:
        if rgb is not source:
            source.close()
    return DecodedImage(image=rgb, format=fmt, width=upright[0], height=upright[1], frames=frames)
