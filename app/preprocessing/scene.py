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


#: Reason the scene expert reports for an image without content: the grey levels of its
#: :func:`scene_pixels` square spread less than :data:`MIN_GREY_STD` (a blank or single-colour image).
BLANK_IMAGE = "blank_image"
#: Reason the scene expert reports for an image without spatial structure: neighbouring pixels of its square
#: correlate less than :data:`MIN_NEIGHBOUR_CORRELATION` (random noise, not a photo or a drawing).
NOT_A_PHOTO = "not_a_photo"
#: Least standard deviation of the square's grey levels (0..255, mean of R, G, B). On the 4,139 MVSA-Single
#: photos the scene head was trained and tested on: 2 are below 2.0 (blank images), the 0.1 % quantile is
#: 8.8 and the median 58.4 (``scene_content_reason`` over ``app.training.scene_stage.image_scene_pixels``).
MIN_GREY_STD = 2.0
#: Least Pearson correlation of horizontally adjacent grey levels of the square. Natural images correlate
#: strongly at lag 1 (their power spectrum falls with frequency); independent noise does not (≈ 0). On the
#: MVSA-Single photos the minimum is 0.68, the 0.1 % quantile 0.74 and the median 0.98, so 0.5 refuses
#: none of them.
MIN_NEIGHBOUR_CORRELATION = 0.5


def scene_content_reason(pixels: npt.NDArray[np.uint8]) -> str | None:
    """Whether a scene square holds anything the scene expert can judge (its head was trained on photos).

    Args:
        pixels: uint8 [S, S, 3] from :func:`scene_pixels`.

    Returns:
        ``None`` when it does; :data:`BLANK_IMAGE` when the grey levels' standard deviation is below
        :data:`MIN_GREY_STD`; :data:`NOT_A_PHOTO` when the lag-1 horizontal correlation of the grey levels
        is below :data:`MIN_NEIGHBOUR_CORRELATION`.
    """
    grey = pixels.astype(np.float32).mean(axis=-1)
    if float(grey.std()) < MIN_GREY_STD:
        return BLANK_IMAGE
    left, right = grey[:, :-1].ravel(), grey[:, 1:].ravel()
    a, b = left - left.mean(), right - right.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    correlation = float((a * b).sum()) / denominator if denominator > 0 else 1.0
    return NOT_A_PHOTO if correlation < MIN_NEIGHBOUR_CORRELATION else None
