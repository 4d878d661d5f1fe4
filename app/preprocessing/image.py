"""Image preprocessing shared by training and serving.

:func:`normalize_face` is the ONE face normalisation step: the face branch was trained on FER2013 crops
passed through it (``app/training``), and the service passes detected face crops through it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from app.contract import FACE_SIZE


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
