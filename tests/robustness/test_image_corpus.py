"""Bad-input corpus, images (issue 5): every odd upload gets a prediction or its documented 4xx.

Files are generated here with Pillow/numpy (never committed). A face image is scikit-image's astronaut
photo (a real frontal face), so "decoded correctly" can be checked through the API: the face is found.
The expected outcome of each case is the README's "Input handling" table.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.preprocessing.image import decode_image
from tests.media import astronaut, image_bytes, no_face_png
from tests.robustness.helpers import assert_error, assert_prediction, post_file
from tests.robustness.icc import cmyk_profile, naive_cmyk_to_rgb

#: EXIF orientation → the stored pixel array for an upright (display) array ``d`` [H, W, C]. From the EXIF
#: 2.32 definition of tag 0x0112 (which visual side row 0 / column 0 are), written with numpy, not with
#: Pillow's transpose table that the service uses.
STORED_FOR_ORIENTATION: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda d: d,
    2: lambda d: d[:, ::-1],  # mirrored horizontally
    3: lambda d: d[::-1, ::-1],  # rotated 180°
    4: lambda d: d[::-1],  # mirrored vertically
    5: lambda d: d.transpose(1, 0, 2),  # row 0 = left side, column 0 = top
    6: lambda d: np.rot90(d, 1),  # row 0 = right side, column 0 = top (display: rotate 90° clockwise)
    7: lambda d: d[::-1, ::-1].transpose(1, 0, 2),  # row 0 = right side, column 0 = bottom
    8: lambda d: np.rot90(d, -1),  # row 0 = left side, column 0 = bottom (display: rotate 90° anticlockwise)
}


def upright_face() -> Image.Image:
    """The astronaut, cropped to 448 × 512 so that a missed rotation also shows in width/height."""
    return astronaut().crop((16, 0, 464, 512))


def with_orientation(orientation: int, fmt: str = "JPEG", **kwargs: object) -> bytes:
    stored = STORED_FOR_ORIENTATION[orientation](np.asarray(upright_face()))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return image_bytes(Image.fromarray(np.ascontiguousarray(stored)), fmt, exif=exif.tobytes(), **kwargs)


def animated(fmt: str, first: Image.Image, second: Image.Image) -> bytes:
    buf = io.BytesIO()
    first.save(buf, fmt, save_all=True, append_images=[second], duration=100, loop=0)
    return buf.getvalue()


def noise_image() -> Image.Image:
    """A face-free image of the same size as :func:`upright_face`."""
    return Image.open(io.BytesIO(no_face_png(512))).convert("RGB").crop((0, 0, 448, 512))


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def heic_like() -> bytes:
    """The first box of a real HEIC file (ISO BMFF ``ftyp`` with brands heic/mif1) and some payload.

    Pillow has no HEIF decoder and the service installs no plugin, so HEIC must be a 415 naming it."""
    ftyp = b"ftyp" + b"heic" + struct.pack(">I", 0) + b"mif1heic"
    return struct.pack(">I", 8 + len(ftyp) - 4) + ftyp + bytes(200)


# (case id, bytes factory, expected): expected is ("ok", format, faces ≥ 1?) or (status, error.type).
Expected = tuple[object, ...]
FACE = upright_face

CASES: list[tuple[str, Callable[[], bytes], Expected]] = [
    (
        "cmyk_jpeg_without_icc",
        lambda: image_bytes(FACE().convert("CMYK"), "JPEG", quality=95),
        ("ok", "JPEG", True),
    ),
    (
        "cmyk_jpeg_with_icc",
        lambda: image_bytes(FACE().convert("CMYK"), "JPEG", quality=95, icc_profile=cmyk_profile()),
        ("ok", "JPEG", True),
    ),
    (
        "progressive_jpeg",
        lambda: image_bytes(FACE(), "JPEG", quality=90, progressive=True),
        ("ok", "JPEG", True),
    ),
    (
        "truncated_baseline_jpeg",
        lambda: truncated(image_bytes(FACE(), "JPEG"), 0.6),
        (422, "undecodable_input"),
    ),
    (
        "truncated_progressive_jpeg",
        lambda: truncated(image_bytes(FACE(), "JPEG", progressive=True), 0.6),
        (422, "undecodable_input"),
    ),
    ("jpeg_header_only", lambda: truncated(image_bytes(FACE(), "JPEG"), 0.02), (422, "undecodable_input")),
    ("zero_bytes", lambda: b"", (422, "undecodable_input")),
    (
        "png_16_bit",
        lambda: image_bytes(Image.fromarray(np.asarray(FACE().convert("L")).astype(np.uint16) * 257), "PNG"),
        ("ok", "PNG", True),
    ),
    (
        "palette_png_with_transparency",
        lambda: image_bytes(FACE().convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
        ("ok", "PNG", True),
    ),
    ("png_LA", lambda: image_bytes(FACE().convert("LA"), "PNG"), ("ok", "PNG", True)),
    ("png_L", lambda: image_bytes(FACE().convert("L"), "PNG"), ("ok", "PNG", True)),
    # 1-bit: Floyd-Steinberg dithered; RetinaFace still finds the face (the Haar cascade did not).
    ("png_1_bit", lambda: image_bytes(FACE().convert("1"), "PNG"), ("ok", "PNG", True)),
    ("animated_gif", lambda: animated("GIF", FACE(), noise_image()), ("ok", "GIF", True)),
    ("animated_gif_face_second", lambda: animated("GIF", noise_image(), FACE()), ("ok", "GIF", False)),
    ("animated_webp", lambda: animated("WEBP", FACE(), noise_image()), ("ok", "WEBP", True)),
    ("animated_webp_face_second", lambda: animated("WEBP", noise_image(), FACE()), ("ok", "WEBP", False)),
    ("avif", lambda: image_bytes(FACE(), "AVIF", quality=90), ("ok", "AVIF", True)),
    ("heic", heic_like, (415, "unsupported_media_type")),
    (
        "svg",
        lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"></svg>',
        (415, "unsupported_media_type"),
    ),
    ("pdf", lambda: b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", (415, "unsupported_media_type")),
    ("random_bytes", lambda: np.random.default_rng(5).bytes(20_000), (415, "unsupported_media_type")),
    # 40 000 × 40 000 1-bit PNG: ~190 kB on the wire, 1.6 gigapixels decoded.
    (
        "decompression_bomb_png",
        lambda: image_bytes(Image.new("1", (40_000, 40_000)), "PNG"),
        (413, "input_too_large"),
    ),
    (
        "one_by_one_png",
        lambda: image_bytes(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        ("ok", "PNG", False),
    ),
    ("one_by_one_jpeg", lambda: image_bytes(Image.new("RGB", (1, 1)), "JPEG"), ("ok", "JPEG", False)),
    ("bmp", lambda: image_bytes(FACE(), "BMP"), ("ok", "BMP", True)),
    ("tiff", lambda: image_bytes(FACE(), "TIFF"), ("ok", "TIFF", True)),
] + [
    (f"exif_orientation_{o}", lambda o=o: with_orientation(o, quality=95), ("ok", "JPEG", True))
    for o in range(1, 9)
]


@pytest.mark.parametrize(("data_fn", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_image_corpus(client: TestClient, data_fn: Callable[[], bytes], expected: Expected) -> None:
    r = post_file(client, "image", data_fn())
    if expected[0] != "ok":
        assert_error(r, int(expected[0]), str(expected[1]))  # type: ignore[call-overload]
        return
    _, fmt, has_face = expected
    image = assert_prediction(r)["modalities"]["image"]
    assert image["format"] == fmt
    if has_face:
        assert image["faces"] >= 1 and image["used"] is True
        box = image["face_box"]
        # The astronaut's face in the upright 448 × 512 crop: RetinaFace's box is at about x 162, y 57,
        # 95 × 120 px (brows-to-chin boxes, taller than wide; the Haar cascade's was square at y 66).
        assert abs(box["x"] - 162) <= 6 and abs(box["y"] - 57) <= 6 and 85 <= box["width"] <= 105, box
        assert 105 <= box["height"] <= 135, box
    else:
        assert image["faces"] == 0 and image["used"] is False and image["probabilities"] is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_size(client: TestClient, orientation: int) -> None:
    image = assert_prediction(post_file(client, "image", with_orientation(orientation, "PNG")))["modalities"][
        "image"
    ]
    assert (image["width"], image["height"]) == (448, 512)


def test_heic_and_pdf_and_svg_messages_name_the_format(client: TestClient) -> None:
    assert "heic" in post_file(client, "image", heic_like()).json()["error"]["message"]
    assert "PDF" in post_file(client, "image", b"%PDF-1.4\n%%EOF").json()["error"]["message"]
    assert (
        "SVG"
        in post_file(client, "image", b"<svg xmlns='http://www.w3.org/2000/svg'/>").json()["error"]["message"]
    )


def test_cmyk_icc_profile_is_honoured() -> None:
    # A profile under which cyan ink prints magenta: the decoded colour must follow the profile, not the
    # naive ink formula (which the no-profile case uses).
    swapped = cmyk_profile(lambda c, m, y, k: naive_cmyk_to_rgb(m, c, y, k))
    cyan_ink = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    with_profile = decode_image(
        image_bytes(cyan_ink, "JPEG", quality=95, icc_profile=swapped), max_pixels=10**6
    )
    without = decode_image(image_bytes(cyan_ink, "JPEG", quality=95), max_pixels=10**6)
    r, g, b = np.asarray(with_profile.image)[8, 8].tolist()
    assert r > 200 and g < 60 and b > 200, (r, g, b)  # magenta
    r, g, b = np.asarray(without.image)[8, 8].tolist()
    assert r < 60 and g > 200 and b > 200, (r, g, b)  # cyan


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [("song.mp3", "audio/mpeg"), ("face.png", "image/png"), ("", "text/plain"), ("noext", "application/pdf")],
)
def test_valid_image_with_wrong_content_type_or_file_name(
    client: TestClient, filename: str, content_type: str
) -> None:
    r = post_file(
        client, "image", image_bytes(FACE(), "JPEG"), filename=filename or "x", content_type=content_type
    )
    image = assert_prediction(r)["modalities"]["image"]
    assert image["format"] == "JPEG" and image["faces"] >= 1
