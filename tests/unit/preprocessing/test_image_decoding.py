"""decode_image: real files generated with Pillow in the test."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.preprocessing.errors import InputTooLargeError, UndecodableInputError, UnsupportedMediaError
from app.preprocessing.face import face_input
from app.preprocessing.image import decode_image
from tests.media import astronaut, image_bytes, no_face_png

LIMIT = 50_000_000


def _halves(width: int = 40, height: int = 20) -> Image.Image:
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def _with_orientation(img: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return image_bytes(img, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def test_exif_orientation_6_is_applied() -> None:
    # Orientation 6 = "rotate 90° clockwise to display" (EXIF 2.32, tag 0x0112): the left half goes on top.
    decoded = decode_image(_with_orientation(_halves(), 6), max_pixels=LIMIT)
    assert (decoded.width, decoded.height) == (20, 40)
    arr = np.asarray(decoded.image)
    assert arr[5, 10, 0] > 200 and arr[5, 10, 2] < 60  # top is red
    assert arr[35, 10, 2] > 200 and arr[35, 10, 0] < 60  # bottom is blue


def test_rotated_phone_photo_still_finds_the_face() -> None:
    upright = astronaut()
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # sensor orientation; display needs 90° clockwise
    decoded = decode_image(_with_orientation(stored, 6), max_pixels=LIMIT)
    face, found = face_input(decoded.image)
    assert face is not None and face.shape == (1, 64, 64)
    _, upright_found = face_input(upright)
    box, upright_box = found.faces[0], upright_found.faces[0]
    assert abs(box.x - upright_box.x) < 15 and abs(box.y - upright_box.y) < 15


def test_cmyk_jpeg_decodes_to_rgb() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red ink: no cyan, full magenta and yellow
    decoded = decode_image(image_bytes(cmyk, "JPEG", quality=95), max_pixels=LIMIT)
    r, g, b = np.asarray(decoded.image)[16, 16].tolist()
    assert decoded.image.mode == "RGB" and decoded.format == "JPEG"
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, 8, 16))  # left half red, right half index 0 = transparent black
    data = image_bytes(img, "PNG", transparency=0)
    arr = np.asarray(decode_image(data, max_pixels=LIMIT).image)
    assert arr[8, 2].tolist() == [255, 0, 0]
    assert arr[8, 12].tolist() == [255, 255, 255]


def test_rgba_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    arr = np.asarray(decode_image(image_bytes(img, "PNG"), max_pixels=LIMIT).image)
    assert arr.min() == 255


def test_grayscale_decodes_to_equal_channels() -> None:
    gray = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1)))
    arr = np.asarray(decode_image(image_bytes(gray, "PNG"), max_pixels=LIMIT).image).astype(int)
    assert arr.shape == (8, 64, 3)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert arr[0, 32, 0] == 128


def test_16_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    data = image_bytes(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    arr = np.asarray(decode_image(data, max_pixels=LIMIT).image)[0, :, 0].astype(int)
    assert arr.tolist() == pytest.approx([0, 64, 128, 255], abs=1)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    decoded = decode_image(buf.getvalue(), max_pixels=LIMIT)
    assert decoded.frames == 2
    r, g, _ = np.asarray(decoded.image)[8, 8].tolist()
    assert r > 200 and g < 50


def test_astronaut_has_one_face_and_no_face_image_has_none() -> None:
    face, found = face_input(decode_image(image_bytes(astronaut(), "JPEG"), max_pixels=LIMIT).image)
    assert face is not None and len(found.faces) == 1 and found.chosen == 0
    assert face.dtype == np.float32 and face.min() >= -1 and face.max() <= 1
    face2, found2 = face_input(decode_image(no_face_png(), max_pixels=LIMIT).image)
    assert face2 is None and found2.faces == () and found2.chosen is None


def test_pixel_limit_checked_from_the_header() -> None:
    with pytest.raises(InputTooLargeError):
        decode_image(image_bytes(Image.new("RGB", (200, 100)), "PNG"), max_pixels=19_999)


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(UndecodableInputError):
        decode_image(b"", max_pixels=LIMIT)
    with pytest.raises(UnsupportedMediaError, match="SVG"):
        decode_image(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', max_pixels=LIMIT)
    with pytest.raises(UnsupportedMediaError):
        decode_image(np.random.default_rng(0).bytes(2000), max_pixels=LIMIT)
    jpeg = image_bytes(astronaut(), "JPEG")
    with pytest.raises(UndecodableInputError):
        decode_image(jpeg[: len(jpeg) // 2], max_pixels=LIMIT)
