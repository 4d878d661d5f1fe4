"""Image preprocessing shared by training and serving.

:func:`normalize_face` is the ONE face normalisation step: the face branch was trained on FER2013 crops
passed through it (``app/training``), and the service passes detected face crops through it.
:func:`decode_image` turns uploaded bytes into an RGB image (serving only).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

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


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An uploaded image decoded to RGB.

    Attributes:
        image: Pillow image, mode ``RGB``, EXIF orientation applied, first frame of animations.
        format: the format detected from the bytes (Pillow name, e.g. ``JPEG``).
        width: pixels after EXIF orientation.
        height: pixels after EXIF orientation.
        frames: number of frames in the file (> 1 for animations; only the first is used).
    """

    image: Image.Image
    format: str
    width: int
    height: int
    frames: int


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


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode uploaded image bytes to an RGB Pillow image.

    Steps: drop PNG ancillary chunks with a wrong CRC, as libpng and browsers do
    (:func:`~app.preprocessing.png_chunks.drop_damaged_ancillary_chunks`); detect the format from the bytes
    (Pillow, restricted to :data:`SUPPORTED_IMAGE_FORMATS`); check
    width × height from the header against ``max_pixels`` before decoding any pixel data (decompression
    bombs); take the first frame of animations; decode; apply the EXIF orientation tag
    (``ImageOps.exif_transpose``); convert any mode to RGB (16-bit scaled, not clipped; alpha and palette
    transparency composited onto white; CMYK through its ICC profile when it has one).

    Args:
        data: the uploaded bytes.
        max_pixels: largest accepted width × height.

    Returns:
        :class:`DecodedImage`.

    Raises:
        UndecodableInputError: empty or truncated/corrupt data in a supported format, including a PNG
            whose critical chunks (IHDR, PLTE, IDAT) are damaged (422).
        UnsupportedMediaError: not a supported image format (415).
        InputTooLargeError: more than ``max_pixels`` pixels (413).
    """
    if not data:
        raise UndecodableInputError("image is empty (0 bytes)")
    Image.init()  # register every plugin so ``formats`` can name them (idempotent)
    formats = [f for f in SUPPORTED_IMAGE_FORMATS if f in Image.OPEN]
    data, _ = drop_damaged_ancillary_chunks(data)
    try:
        img = Image.open(io.BytesIO(data), formats=formats)
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
    try:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise UndecodableInputError("image has no pixels")
        if width * height > max_pixels:
            raise InputTooLargeError(
                f"image has {width}×{height} = {width * height} pixels, more than the limit of {max_pixels}"
            )
        frames = int(getattr(img, "n_frames", 1) or 1)
        if frames > 1:
            img.seek(0)
        img.load()
        fmt = str(img.format or "unknown")
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, the pixels are fine
            oriented = img
        rgb = _to_rgb(oriented if oriented is not None else img)
        rgb.load()
    except PreprocessingError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"image has too many pixels (limit {max_pixels})") from exc
    except Exception as exc:  # noqa: BLE001 - as above: any decoder failure on untrusted bytes
        raise UndecodableInputError("image data is truncated or corrupt") from exc
    finally:
        img.close()
    return DecodedImage(image=rgb, format=fmt, width=rgb.width, height=rgb.height, frames=frames)
