"""decode_image: real files generated with Pillow in the test."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.preprocessing.errors import InputTooLargeError, UndecodableInputError, UnsupportedMediaError
from app.preprocessing.face import face_input
from app.preprocessing.image import (
    dct_scale,
    decode_image,
    jpeg_streams_in_one_scan,
    original_size,
    reduction_factor,
)
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


# ---------------------------------------------------------------- decoding at the size the experts need
def _pattern(width: int, height: int, seed: int = 0) -> Image.Image:
    """Blocks of random colour (8 × 8 px), so every orientation and reduction is visible in the pixels."""
    blocks = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize((width, height), Image.Resampling.NEAREST)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillows_exif_transpose(fmt: str, orientation: int) -> None:
    from PIL import ImageOps

    stored = _pattern(400, 240)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = image_bytes(stored, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
    want = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    full = decode_image(data, max_pixels=LIMIT, work_side=None)
    assert (full.width, full.height) == want.size
    np.testing.assert_array_equal(np.asarray(full.image), np.asarray(want))
    # Reduced before it is turned upright: the same pixels as reducing the upright image (box filter).
    small = decode_image(data, max_pixels=LIMIT, work_side=80)
    assert (small.width, small.height) == want.size  # the file's size, not the reduced one
    assert small.image.size == (want.width // 5, want.height // 5)
    np.testing.assert_array_equal(np.asarray(small.image), np.asarray(want.reduce(5)))
    assert original_size(small.image) == want.size


def test_a_12_megapixel_jpeg_is_decoded_at_half_size_by_dct_scaling() -> None:
    photo = _pattern(4032, 3024)
    data = image_bytes(photo, "JPEG", quality=92)
    decoded = decode_image(data, max_pixels=LIMIT)
    assert (decoded.width, decoded.height) == (4032, 3024)
    assert decoded.image.size == (2016, 1512) and decoded.image.mode == "RGB"
    assert original_size(decoded.image) == (4032, 3024)
    # Same picture as a full decode downscaled (8 px blocks survive; JPEG noise stays small on average).
    want = np.asarray(photo.reduce(2), dtype=np.int16)
    assert np.abs(np.asarray(decoded.image, dtype=np.int16) - want).mean() < 6
    rotated = decode_image(_with_orientation(photo.transpose(Image.Transpose.ROTATE_90), 6), max_pixels=LIMIT)
    assert (rotated.width, rotated.height) == (4032, 3024) and rotated.image.size == (2016, 1512)


def test_dct_scale_and_reduction_factor_keep_the_longest_side_at_least_the_work_side() -> None:
    assert dct_scale(4032, 3024, 1600) == 2  # 2,016 px
    assert dct_scale(8064, 6048, 1600) == 4  # 48 MP → 2,016 px
    assert dct_scale(16320, 12240, 1600) == 8  # 200 MP → 2,040 px
    assert dct_scale(3000, 2000, 1600) == 1  # 1,500 px would be too small
    assert reduction_factor(4000, 3000, 1600) == 2 and reduction_factor(1920, 1080, 1600) == 1
    assert reduction_factor(300, 9000, 1600) == 5  # a tall scrolling screenshot: 1,800 px


def test_large_baseline_jpegs_have_their_own_limit_progressive_ones_do_not() -> None:
    big = Image.new("RGB", (3000, 2000), (120, 160, 200))  # 6 MP, against limits of 5 MP / 7 MP
    baseline = image_bytes(big, "JPEG", quality=80)
    decoded = decode_image(baseline, max_pixels=5_000_000, max_jpeg_pixels=7_000_000, work_side=700)
    assert (decoded.width, decoded.height) == (3000, 2000) and decoded.image.size == (750, 500)
    with pytest.raises(InputTooLargeError, match="baseline JPEG limit of 5500000"):
        decode_image(baseline, max_pixels=5_000_000, max_jpeg_pixels=5_500_000)
    progressive = image_bytes(big, "JPEG", quality=80, progressive=True)
    with pytest.raises(InputTooLargeError, match="limit of 5000000 .a progressive or non-interleaved"):
        decode_image(progressive, max_pixels=5_000_000, max_jpeg_pixels=7_000_000)
    png = image_bytes(big, "PNG")
    with pytest.raises(InputTooLargeError):
        decode_image(png, max_pixels=5_000_000, max_jpeg_pixels=7_000_000)


def _grey_jpeg(width: int, height: int, *, interleaved: bool, components: int = 3) -> bytes:
    """A minimal valid sequential JPEG of uniform grey (ITU-T T.81): one quantisation table, DC/AC Huffman
    tables of one code each, and either one interleaved scan or one scan per component (which libjpeg
    buffers whole, like a progressive file)."""

    def seg(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    counts = bytes([1] + [0] * 15)
    out = b"\xff\xd8" + seg(0xDB, b"\x00" + b"\x01" * 64)
    ids = b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    out += seg(
        0xC0, bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([components]) + ids
    )
    out += seg(0xC4, b"\x00" + counts + b"\x00") + seg(0xC4, b"\x10" + counts + b"\x00")
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    if interleaved:
        scan = bytes([components]) + b"".join(bytes([i + 1, 0]) for i in range(components)) + b"\x00\x3f\x00"
        out += seg(0xDA, scan) + b"\x00" * ((2 * blocks * components + 7) // 8)
    else:
        for i in range(components):
            out += seg(0xDA, bytes([1, i + 1, 0]) + b"\x00\x3f\x00") + b"\x00" * ((2 * blocks + 7) // 8)
    return out + b"\xff\xd9"


def test_only_jpegs_decoded_in_one_pass_get_the_jpeg_limit() -> None:
    assert jpeg_streams_in_one_scan(image_bytes(Image.new("RGB", (64, 48)), "JPEG"))
    assert not jpeg_streams_in_one_scan(image_bytes(Image.new("RGB", (64, 48)), "JPEG", progressive=True))
    assert jpeg_streams_in_one_scan(_grey_jpeg(3000, 2000, interleaved=True))
    one_scan_per_component = _grey_jpeg(3000, 2000, interleaved=False)
    assert not jpeg_streams_in_one_scan(one_scan_per_component)
    assert not jpeg_streams_in_one_scan(image_bytes(Image.new("RGB", (64, 48)), "PNG"))
    # 6 MP against limits of 5 MP (any image) and 7 MP (JPEGs decoded in one pass).
    ok = decode_image(
        _grey_jpeg(3000, 2000, interleaved=True),
        max_pixels=5_000_000,
        max_jpeg_pixels=7_000_000,
        work_side=700,
    )
    assert ok.image.size == (750, 500) and ok.image.getpixel((5, 5)) == (128, 128, 128)
    with pytest.raises(InputTooLargeError, match="limit of 5000000 .a progressive or non-interleaved"):
        decode_image(one_scan_per_component, max_pixels=5_000_000, max_jpeg_pixels=7_000_000)


@pytest.mark.parametrize("size", [(4, 20000), (20000, 5), (1, 30000)])
def test_a_jpeg_thinner_than_the_dct_scale_still_decodes(size: tuple[int, int]) -> None:
    decoded = decode_image(image_bytes(Image.new("RGB", size, (200, 30, 30)), "JPEG"), max_pixels=LIMIT)
    assert (decoded.width, decoded.height) == size
    assert max(decoded.image.size) >= 1600 and min(decoded.image.size) >= 1
