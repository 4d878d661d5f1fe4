"""Generated photos through the REAL committed model: the face in a large photo, rotated by EXIF, as a
thumbnail in a screenshot and mirrored gives the label of the face crop alone; a photo without a face does
not count as a face (issue 12 bars).

Faces: scikit-image's astronaut (a smiling face, public domain); backgrounds: scikit-image's ``coffee``
photo (no face), upscaled.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from tests.e2e.test_real_model import MODEL_FILE, MODEL_ROOT

pytestmark = pytest.mark.skipif(not MODEL_FILE.is_file(), reason=f"{MODEL_FILE} not committed yet")

#: The astronaut's head in the 512 × 512 photo and her face box inside the photo (set by hand).
HEAD = (140, 20, 312, 215)
FACE = (180, 60, 272, 175)


def _astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def _background(width: int, height: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee()).resize((width, height), Image.Resampling.BICUBIC)


def _jpeg(img: Image.Image, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    img.save(buf, format="JPEG", quality=90, **kwargs)
    return buf.getvalue()


def _photo_12mp() -> tuple[Image.Image, tuple[float, float, float, float]]:
    """A 4,032 × 3,024 photo (12.2 MP) with the astronaut's head pasted 700 px wide; the true face box."""
    bg = _background(4032, 3024)
    k = 700 / (HEAD[2] - HEAD[0])
    head = _astronaut().crop(HEAD)
    head = head.resize((round(head.width * k), round(head.height * k)), Image.Resampling.BICUBIC)
    x, y = 2200, 900
    bg.paste(head, (x, y))
    truth = (
        x + (FACE[0] - HEAD[0]) * k,
        y + (FACE[1] - HEAD[1]) * k,
        (FACE[2] - FACE[0]) * k,
        (FACE[3] - FACE[1]) * k,
    )
    return bg, truth


def _iou(a: dict[str, Any], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a["x"] + a["width"], b[0] + b[2]) - max(a["x"], b[0]))
    iy = max(0.0, min(a["y"] + a["height"], b[1] + b[3]) - max(a["y"], b[1]))
    return ix * iy / (a["width"] * a["height"] + b[2] * b[3] - ix * iy)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(settings=Settings(model_dir=MODEL_ROOT, max_batch_size=4))) as c:
        yield c


def _image_answer(client: TestClient, data: bytes) -> dict[str, Any]:
    r = client.post("/v1/predict", files={"image": ("photo.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture(scope="module")
def crop_label(client: TestClient) -> str:
    """The label of the face crop alone (the astronaut's head, 172 × 195 px)."""
    body = _image_answer(client, _jpeg(_astronaut().crop(HEAD)))
    assert body["modalities"]["image"]["face"]["used"] is True
    assert body["label"] == "positive", body  # a smiling face
    return str(body["label"])


def _assert_face_used(
    body: dict[str, Any], label: str, truth: tuple[float, float, float, float] | None
) -> None:
    face = body["modalities"]["image"]["face"]
    assert face["used"] is True and face["reason"] is None, face
    assert body["label"] == label, body
    used = face["faces"][face["used_face"]]
    if truth is not None:
        assert _iou(used, truth) >= 0.5, (used, truth)


def test_face_in_a_12_megapixel_photo(client: TestClient, crop_label: str) -> None:
    photo, truth = _photo_12mp()
    assert photo.width * photo.height >= 12_000_000
    body = _image_answer(client, _jpeg(photo))
    _assert_face_used(body, crop_label, truth)
    assert (body["modalities"]["image"]["width"], body["modalities"]["image"]["height"]) == (4032, 3024)


def test_same_photo_stored_with_exif_orientation_6(client: TestClient, crop_label: str) -> None:
    photo, truth = _photo_12mp()
    # Stored as a sensor would (rotated); EXIF 6 says "rotate 90° clockwise to display": displayed = photo.
    body = _image_answer(client, _jpeg(photo.transpose(Image.Transpose.ROTATE_90), orientation=6))
    assert (body["modalities"]["image"]["width"], body["modalities"]["image"]["height"]) == (4032, 3024)
    _assert_face_used(body, crop_label, truth)  # box in displayed (EXIF-transposed) pixels


def test_mirrored_photo(client: TestClient, crop_label: str) -> None:
    photo, (x, y, w, h) = _photo_12mp()
    body = _image_answer(client, _jpeg(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    _assert_face_used(body, crop_label, (photo.width - x - w, y, w, h))


def test_320px_thumbnail_inside_a_1080p_screenshot(client: TestClient, crop_label: str) -> None:
    shot = Image.new("RGB", (1920, 1080), (245, 245, 247))
    shot.paste(Image.new("RGB", (1920, 64), (40, 44, 52)), (0, 0))  # title bar
    shot.paste(Image.new("RGB", (300, 1016), (230, 232, 236)), (0, 64))  # side bar
    for row in range(12):  # lines of "text"
        shot.paste(Image.new("RGB", (700 - 37 * (row % 5), 14), (60, 60, 60)), (1000, 160 + 48 * row))
    thumb = _astronaut().resize((320, 320), Image.Resampling.LANCZOS)
    shot.paste(thumb, (500, 300))
    k = 320 / 512
    truth = (500 + FACE[0] * k, 300 + FACE[1] * k, (FACE[2] - FACE[0]) * k, (FACE[3] - FACE[1]) * k)
    buf = io.BytesIO()
    shot.save(buf, format="PNG")
    r = client.post("/v1/predict", files={"image": ("screenshot.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    _assert_face_used(r.json(), crop_label, truth)


def test_face_free_photo_face_not_used_and_no_label_without_other_evidence(client: TestClient) -> None:
    body = _image_answer(client, _jpeg(_background(3000, 2000)))
    image = body["modalities"]["image"]
    assert image["face"] == {
        "used": False,
        "reason": "no_face",
        "probabilities": None,
        "faces": [],
        "used_face": None,
    }
    if image.get("scene") is None:  # a model without a scene expert: nothing in the request was usable
        assert image["used"] is False and image["reason"] == "no_face"
        assert body["label"] is None and body["reason"] == "no_usable_evidence"
        assert body["probabilities_are_prior"] is True
    else:  # the scene expert answers for the image
        assert image["used"] is True and body["label"] is not None
