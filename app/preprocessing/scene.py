"""Scene preprocessing shared by training and serving.

:func:`scene_pixels` is the ONE step from a decoded image to the scene expert's ``scene`` input: the scene
head was trained on MVSA-Single images passed through it (``app.training.scene_stage``), and the service
passes every decoded image through it. Normalisation (ImageNet mean/std) happens inside the ONNX graph.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from app.contract import SCENE_SIZE

#: Pillow's ``reducing_gap`` for the resize: large images are first reduced by an integer factor with a box
#: filter (fast), then resampled; 3.0 keeps the result within rounding of a plain bilinear resize
#: (Pillow docs, ``Image.resize``).
REDUCING_GAP = 3.0


def scene_pixels(image: Image.Image, size: int = SCENE_SIZE) -> npt.NDArray[np.uint8]:
    """The scene encoder's input: the central square of the image, resized to ``size`` × ``size``.

    Steps: take the largest centred square (the shorter side, centred along the longer side; the encoders'
    ImageNet evaluation protocol also centre-crops), resize it with Pillow's bilinear filter (antialiased:
    its support scales with the reduction) using ``reducing_gap`` :data:`REDUCING_GAP`, keep RGB.

    Args:
        image: decoded Pillow image with EXIF orientation already applied
            (:func:`app.preprocessing.image.decode_image`); any mode is converted to RGB.
        size: output side S in pixels (default :data:`app.contract.SCENE_SIZE` = 224).

    Returns:
        uint8 array [S, S, 3], RGB, values 0..255.

    Raises:
        ValueError: the image has no pixels.
    """
    w, h = image.size
    if w <= 0 or h <= 0:
        raise ValueError("image has no pixels")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    out = rgb.resize(
        (size, size),
        Image.Resampling.BILINEAR,
        box=(left, top, left + side, top + side),
        reducing_gap=REDUCING_GAP,
    )
    return np.array(out, dtype=np.uint8).reshape(size, size, 3)
