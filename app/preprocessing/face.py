"""Face detection shared by training (MVSA images) and serving (uploaded images).

Detector: OpenCV's Viola–Jones Haar cascade ``haarcascade_frontalface_default.xml`` (Viola & Jones, CVPR
2001; file shipped in ``opencv-python-headless`` 4.x under ``cv2.data.haarcascades``; the same cascade the
``fer`` package uses). It is frontal-only and misses small or strongly turned faces; images where it finds
nothing are treated as "no face", not as an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from app.preprocessing.image import normalize_face

#: Images are downscaled so their longest side is at most this many pixels before detection (speed);
#: boxes are mapped back to original coordinates.
DETECTION_MAX_SIDE: Final[int] = 640
#: ``detectMultiScale`` parameters: pyramid step 1.1 and 5 neighbours, as in the ``fer`` package.
SCALE_FACTOR: Final[float] = 1.1
MIN_NEIGHBORS: Final[int] = 5
#: Smallest face searched, in pixels of the downscaled image.
MIN_FACE_SIDE: Final[int] = 24
#: The crop given to :func:`normalize_face` extends the detected box by this fraction of its side on every
#: edge (Haar boxes are tighter than FER2013's crops, which include forehead and chin).
FACE_MARGIN: Final[float] = 0.1

_CASCADE_PATH: Final[Path] = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
_local = threading.local()


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A detected face in original image pixels: top-left corner (x, y), width and height."""

    x: int
    y: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height


def _cascade() -> cv2.CascadeClassifier:
    # CascadeClassifier is not safe to share between threads: one instance per thread.
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        cascade = cv2.CascadeClassifier(str(_CASCADE_PATH))
        if cascade.empty():
            raise RuntimeError(f"could not load Haar cascade {_CASCADE_PATH}")
        _local.cascade = cascade
    return cascade


def detect_faces(gray: npt.NDArray[np.uint8]) -> list[FaceBox]:
    """Detect frontal faces.

    Args:
        gray: uint8 grayscale image [H, W].

    Returns:
        Faces in original pixel coordinates, largest first (empty when none is found).
    """
    height, width = gray.shape
    scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
    small: npt.NDArray[np.uint8] = gray
    if scale < 1.0:
        small = np.asarray(
            cv2.resize(
                gray,
                (max(1, round(width * scale)), max(1, round(height * scale))),
                interpolation=cv2.INTER_AREA,
            ),
            dtype=np.uint8,
        )
    if min(small.shape) < MIN_FACE_SIDE:
        return []
    found = _cascade().detectMultiScale(
        small, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(MIN_FACE_SIDE, MIN_FACE_SIDE)
    )
    boxes = [
        FaceBox(round(x / scale), round(y / scale), round(w / scale), round(h / scale))
        for (x, y, w, h) in (found if len(found) else [])
    ]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def crop_face(image: Image.Image, box: FaceBox, margin: float = FACE_MARGIN) -> Image.Image:
    """Crop ``box`` grown by ``margin`` × its side on each edge, clipped to the image."""
    dx, dy = round(box.width * margin), round(box.height * margin)
    left, top = max(0, box.x - dx), max(0, box.y - dy)
    right, bottom = min(image.width, box.x + box.width + dx), min(image.height, box.y + box.height + dy)
    return image.crop((left, top, right, bottom))


def largest_face_input(image: Image.Image) -> tuple[npt.NDArray[np.float32] | None, list[FaceBox]]:
    """Detect faces in an RGB or L image and normalise the largest one for the face branch.

    Returns:
        ``(face, boxes)``: ``face`` is float32 [1, 64, 64] in [-1, 1] (:func:`normalize_face`) or None when
        no face is found; ``boxes`` are all detected faces, largest first.
    """
    gray_img = image.convert("L")
    boxes = detect_faces(np.asarray(gray_img, dtype=np.uint8))
    if not boxes:
        return None, boxes
    return normalize_face(crop_face(gray_img, boxes[0])), boxes
