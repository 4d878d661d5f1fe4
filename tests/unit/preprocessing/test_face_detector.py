"""The RetinaFace detector, the choice of face, alignment and the v1 expert-name alias."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.contract import ModelContract
from app.preprocessing.face import (
    FaceBox,
    aligned_crop,
    choice_key,
    default_detector,
    detection_scale,
    face_input,
    nms,
)
from tests.media import astronaut

#: The astronaut's head in the 512 × 512 photo (set by hand).
HEAD = (140, 20, 312, 215)


def _background(width: int, height: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee()).resize((width, height), Image.Resampling.BICUBIC)


@pytest.mark.parametrize(
    ("size", "position"), [((320, 240), (40, 30)), ((400, 300), (300, 200)), ((420, 280), (200, 90))]
)
def test_avatar_size_faces_are_found(size: tuple[int, int], position: tuple[int, int]) -> None:
    # A small image (a chat crop, a profile card) with a 20-px face (head crop scaled so the face box is
    # ~20 px wide): the detector sees it upscaled (detection_scale 1.5–2). In a photo far larger than 640 px
    # a 20-px face is below what the downscaled copy can show (docs/benchmarks.md).
    shot = _background(*size)
    k = 20 / 92  # the face box is 92 px wide in the 512-px photo
    head = astronaut().crop(HEAD)
    shot.paste(head.resize((round(head.width * k), round(head.height * k))), position)
    found = default_detector().detect(shot)
    assert found.chosen is not None
    box = found.faces[found.chosen]
    assert abs(box.x - (position[0] + 40 * k)) <= 6 and abs(box.y - (position[1] + 40 * k)) <= 8
    assert 12 <= box.width <= 32


def test_no_face_in_a_face_free_photo() -> None:
    face, found = face_input(_background(2000, 1500))
    assert face is None and found.faces == () and found.chosen is None


def test_boxes_and_landmarks_in_original_pixels_of_a_large_photo() -> None:
    photo = _background(4000, 3000)
    head = astronaut().crop(HEAD).resize((860, 975))
    photo.paste(head, (2500, 1000))
    found = default_detector().detect(photo)
    assert found.chosen is not None
    box = found.faces[found.chosen]
    # face box 180..272 × 60..175 of the photo → ×5 in the pasted head
    assert abs(box.x - (2500 + 40 * 5)) < 40 and abs(box.y - (1000 + 40 * 5)) < 60
    (lx, ly), (rx, ry) = box.landmarks[:2]
    assert 2500 < lx < rx < 2500 + 860 and abs(ly - ry) < 30  # eyes: image-left first, level


def test_alignment_levels_the_eyes_of_a_rotated_face() -> None:
    upright, _ = face_input(astronaut())
    tilted, found = face_input(astronaut().rotate(25, resample=Image.Resampling.BICUBIC, expand=True))
    assert upright is not None and tilted is not None
    (lx, ly), (rx, ry) = found.faces[found.chosen or 0].landmarks[:2]
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx)) + 25) < 8  # the landmarks see the tilt
    corr = np.corrcoef(upright.ravel(), tilted.ravel())[0, 1]
    unaligned = np.asarray(
        aligned_crop(astronaut().rotate(25, expand=True), FaceBox(*_box(found), landmarks=())).resize(
            (64, 64)
        )
    )
    corr_unaligned = np.corrcoef(upright.ravel(), unaligned.ravel().astype(np.float32))[0, 1]
    assert corr > 0.9 and corr > corr_unaligned + 0.1


def _box(found: object) -> tuple[int, int, int, int]:
    f = found.faces[found.chosen]  # type: ignore[attr-defined]
    return f.x, f.y, f.width, f.height


def test_mirrored_image_gives_a_mirrored_box_and_a_mirrored_crop() -> None:
    face, found = face_input(astronaut())
    face_m, found_m = face_input(astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert face is not None and face_m is not None
    a, b = found.faces[0], found_m.faces[0]
    assert abs((512 - b.x - b.width) - a.x) <= 3 and abs(b.y - a.y) <= 3
    # not identical: the landmarks of the mirror image differ by a pixel or two
    assert np.corrcoef(face[0, :, ::-1].ravel(), face_m.ravel())[0, 1] > 0.9


def test_choice_prefers_a_clear_large_face_over_a_tiny_more_certain_one() -> None:
    big = FaceBox(0, 0, 100, 120, score=0.95)
    tiny = FaceBox(200, 0, 12, 14, score=0.999)
    assert choice_key(big, 1.0) > choice_key(tiny, 1.0)
    # Among faces above the size prior, the score decides, not the size.
    sure = FaceBox(0, 0, 60, 70, score=0.999)
    unsure = FaceBox(0, 0, 200, 240, score=0.85)
    assert choice_key(sure, 1.0) > choice_key(unsure, 1.0)


def test_detection_scale_downscales_large_and_upscales_small_images() -> None:
    assert detection_scale(4000, 3000) == pytest.approx(640 / 4000)
    assert detection_scale(400, 300) == pytest.approx(1.6)
    assert detection_scale(100, 50) == 2.0


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7], dtype=np.float32)
    assert nms(boxes, scores, 0.4) == [1, 2]


def test_v1_image_expert_is_the_face_expert() -> None:
    v1 = ModelContract.from_config({"modalities": ["text", "image", "audio"]})
    assert v1.expert_names == ("text", "face", "audio")
    assert v1.expert("face").modality == "image" and [t.name for t in v1.expert("face").inputs] == ["face"]
    named = ModelContract.from_config(
        {"experts": [{"name": "image", "modality": "image", "inputs": ["face"]}]}
    )
    assert named.expert_names == ("face",)


@pytest.mark.parametrize(("size", "position"), [((4000, 3000), (2500, 1000)), ((900, 1600), (100, 700))])
def test_fixed_canvas_finds_the_same_faces(size: tuple[int, int], position: tuple[int, int]) -> None:
    """SENTIMENT_SHAPE_BUCKETS on a GPU: every image is padded into one 640-px square (one input shape for
    cuDNN); the faces, in original pixels, are those of the unpadded input (landscape and portrait)."""
    from app.preprocessing.face import DETECTION_MAX_SIDE, FaceDetector

    photo = _background(*size)
    head = astronaut().crop(HEAD)
    photo.paste(head.resize((head.width * 2, head.height * 2)), position)
    plain = default_detector()
    fixed = FaceDetector(plain.session, fixed_canvas=True)
    seen: list[tuple[int, ...]] = []
    real_run = fixed.session.run

    class Recording:
        def run(self, names: object, feeds: dict[str, np.ndarray]) -> object:
            seen.append(feeds["input"].shape)
            return real_run(names, feeds)

    fixed.session = Recording()
    want, got = plain.detect(photo), fixed.detect(photo)
    assert seen == [(1, 3, DETECTION_MAX_SIDE, DETECTION_MAX_SIDE)]
    assert want.chosen is not None and got.chosen is not None and len(got.faces) == len(want.faces)
    a, b = want.faces[want.chosen], got.faces[got.chosen]
    scale = max(size) / DETECTION_MAX_SIDE  # one detector pixel in original pixels
    assert max(abs(a.x - b.x), abs(a.y - b.y), abs(a.width - b.width), abs(a.height - b.height)) <= 3 * scale
    assert abs(a.score - b.score) < 0.02
