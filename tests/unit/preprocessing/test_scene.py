"""The scene expert's preprocessing (``scene_pixels``) and its routing: a contract-v2 model (experts text,
face, scene, audio; ``expert_mask``) gets every image's pixels as ``scene`` through the default registry, and
a face-free photo is used through the scene expert while the face expert reports ``no_face``."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from app.config import REPO_ROOT, Settings
from app.contract import SCENE_SIZE, V1_EXPERT_ALIASES, ModelContract
from app.inference.predictor import Predictor
from app.main import create_app
from app.preprocessing.experts import DEFAULT_EXPERTS, NO_FACE
from app.preprocessing.image import decode_image
from app.preprocessing.pipeline import RawInput
from app.preprocessing.scene import BLANK_IMAGE, NOT_A_PHOTO, scene_content_reason, scene_pixels
from tests.media import astronaut, face_jpeg, image_bytes, no_face_png
from tests.tiny_model import branch_nodes, branch_weights, write_expert_model

PRIOR = np.array([0.3, 0.4, 0.3], np.float32)
EXPERTS = [
    {"name": "text", "modality": "text", "inputs": ["input_ids", "attention_mask"]},
    {"name": "face", "modality": "image", "inputs": ["face"]},
    {"name": "scene", "modality": "image", "inputs": ["scene"]},
    {"name": "audio", "modality": "audio", "inputs": ["audio_features", "audio_mask"]},
]
W_SCENE = np.random.default_rng(8).normal(0, 3, (3, 3)).astype(np.float32)


# ------------------------------------------------------------------------------------------ scene_pixels
def test_scene_pixels_is_the_centred_square_as_uint8_rgb() -> None:
    """A 600 × 300 image red | green | blue (thirds of 200 px): the centred 300 px square is 50 px of red,
    the green third and 50 px of blue, so the middle column is green and the edges are red / blue."""
    arr = np.zeros((300, 600, 3), np.uint8)
    arr[:, :200, 0] = 255
    arr[:, 200:400, 1] = 255
    arr[:, 400:, 2] = 255
    out = scene_pixels(Image.fromarray(arr))
    assert out.dtype == np.uint8 and out.shape == (SCENE_SIZE, SCENE_SIZE, 3)
    assert out.flags.writeable
    np.testing.assert_array_equal(out[:, SCENE_SIZE // 2], [[0, 255, 0]] * SCENE_SIZE)
    np.testing.assert_array_equal(out[:, :30], np.broadcast_to([255, 0, 0], (SCENE_SIZE, 30, 3)))
    np.testing.assert_array_equal(out[:, -30:], np.broadcast_to([0, 0, 255], (SCENE_SIZE, 30, 3)))
    tall = scene_pixels(Image.fromarray(np.ascontiguousarray(arr.transpose(1, 0, 2))))
    np.testing.assert_array_equal(tall, out.transpose(1, 0, 2))


def test_scene_pixels_converts_modes_and_mirrors_with_the_image() -> None:
    img = astronaut()
    out = scene_pixels(img)
    np.testing.assert_array_equal(scene_pixels(img.convert("RGBA")), out)
    mirrored = scene_pixels(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert np.abs(mirrored.astype(int) - out[:, ::-1].astype(int)).max() <= 1
    small = scene_pixels(img.resize((40, 30)))  # upscaled too
    assert small.shape == (SCENE_SIZE, SCENE_SIZE, 3)
    with pytest.raises(ValueError, match="no pixels"):
        scene_pixels(Image.new("RGB", (0, 5)))


def test_exif_orientation_is_applied_before_the_scene_crop() -> None:
    """The same photo stored rotated with EXIF orientation 6 gives the same scene input (decode_image
    transposes it first)."""
    img = astronaut().resize((320, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    stored = img.transpose(Image.Transpose.ROTATE_90)  # what a camera writes for orientation 6
    data = image_bytes(stored, "PNG", exif=exif)
    got = scene_pixels(decode_image(data, max_pixels=10**7).image)
    want = scene_pixels(decode_image(image_bytes(img, "PNG"), max_pixels=10**7).image)
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------- a contract-v2 model
def _graph() -> onnx.ModelProto:
    n = helper.make_node
    consts = {
        **branch_weights(np.random.default_rng(5)),
        "w_scene": W_SCENE,
        "prior": PRIOR[None, :],
        "ax12": np.array([1, 2], np.int64),
        "half": np.array(0.5, np.float32),
        "inv255": np.array(1 / 255, np.float32),
        "log_prior3": (3.0 * np.log(PRIOR))[None, :],
        **{f"m{i}": np.array([i], np.int64) for i in range(5)},
    }
    nodes = [
        *branch_nodes(),
        n("Cast", ["scene"], ["sf"], to=TensorProto.FLOAT),
        n("Mul", ["sf", "inv255"], ["sn"]),
        n("ReduceMean", ["sn", "ax12"], ["rgb"], keepdims=0),
        n("MatMul", ["rgb", "w_scene"], ["l_scene"]),
        n("Softmax", ["l_scene"], ["p_scene"], axis=-1),
    ]
    p_node = {"text": "p_text", "face": "p_face", "scene": "p_scene", "audio": "p_audio"}
    names = [e["name"] for e in EXPERTS]
    for i, e in enumerate(names):
        nodes += [
            n("Slice", ["expert_mask", f"m{i}", f"m{i + 1}", "m1"], [f"mk_{e}"]),
            n("Greater", [f"mk_{e}", "half"], [f"has_{e}"]),
            n("Where", [f"has_{e}", p_node[e], "prior"], [f"q_{e}"]),
            n("Log", [f"q_{e}"], [f"lq_{e}"]),
            n("Unsqueeze", [f"q_{e}", "ax1"], [f"u_{e}"]),
        ]
    nodes += [n("Sum", [f"lq_{e}" for e in names], ["lsum"]), n("Sub", ["lsum", "log_prior3"], ["fl"])]
    nodes += [n("Softmax", ["fl"], ["probabilities"], axis=-1)]
    nodes += [n("Concat", [f"u_{e}" for e in names], ["expert_probabilities"], axis=1)]
    f, i64, u8 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.UINT8
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, ["B", "L"]),
        helper.make_tensor_value_info("attention_mask", i64, ["B", "L"]),
        helper.make_tensor_value_info("face", f, ["B", 1, 64, 64]),
        helper.make_tensor_value_info("scene", u8, ["B", SCENE_SIZE, SCENE_SIZE, 3]),
        helper.make_tensor_value_info("audio_features", f, ["B", "T", 64]),
        helper.make_tensor_value_info("audio_mask", f, ["B", "T"]),
        helper.make_tensor_value_info("expert_mask", f, ["B", 4]),
    ]
    outputs = [
        helper.make_tensor_value_info("probabilities", f, ["B", 3]),
        helper.make_tensor_value_info("expert_probabilities", f, ["B", 4, 3]),
    ]
    graph = helper.make_graph(
        nodes, "v2_scene", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in consts.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def v2_settings(model_dir: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("v2")
    scene = {"scene": {"dtype": "uint8", "shape": ["batch", SCENE_SIZE, SCENE_SIZE, 3]}}
    tokenizer = model_dir / "fused-sentiment" / "tokenizer.json"
    write_expert_model(root, "scene-v2", _graph(), tokenizer, EXPERTS, scene, contract_version=2)
    return settings.model_copy(update={"model_dir": root, "model_name": "scene-v2", "warmup": False})


def _predict(settings: Settings, raw: RawInput) -> Any:
    predictor = Predictor(settings)  # the default registry: no experts= override

    async def main() -> Any:
        await predictor.start()
        try:
            return await predictor.predict(raw)
        finally:
            await predictor.stop()

    return asyncio.run(main())


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_a_face_free_photo_is_used_through_the_scene_expert(v2_settings: Settings) -> None:
    data = no_face_png(300)
    prediction = _predict(v2_settings, RawInput(image=data))
    out = prediction.output
    assert out.modality_mask.tolist() == [0, 0, 1, 0]  # text, face (no_face), scene, audio
    assert not prediction.item.experts["face"].used and prediction.item.experts["face"].reason == NO_FACE
    scene = prediction.item.tensors("scene")
    assert scene is not None
    want_pixels = scene_pixels(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(scene["scene"], want_pixels)
    rgb = want_pixels.astype(np.float32).mean(axis=(0, 1)) / 255
    np.testing.assert_allclose(out.modality_probabilities[2], _softmax(rgb @ W_SCENE), atol=1e-5)
    np.testing.assert_allclose(out.probabilities, out.modality_probabilities[2], atol=1e-5)


def test_a_face_photo_feeds_both_image_experts(v2_settings: Settings) -> None:
    prediction = _predict(v2_settings, RawInput(text="a fine day", image=face_jpeg()))
    assert prediction.output.modality_mask.tolist() == [1, 1, 1, 0]
    assert prediction.item.tensors("scene")["scene"].shape == (SCENE_SIZE, SCENE_SIZE, 3)


def test_one_registry_serves_v1_and_the_committed_v2_model() -> None:
    """One entry per expert: a v1 config's ``image`` expert is the registry's ``face`` through
    :data:`app.contract.V1_EXPERT_ALIASES` (no duplicate entry, no scene expert: it stays dormant for v1
    models); the committed model is contract v2 and names all four entries."""
    assert set(DEFAULT_EXPERTS) == {"text", "face", "scene", "audio"}
    assert DEFAULT_EXPERTS["scene"].modality == DEFAULT_EXPERTS["face"].modality == "image"
    assert V1_EXPERT_ALIASES["image"] == "face"
    v1 = {"modalities": ["text", "image", "audio"]}
    assert ModelContract.from_config(v1).expert_names == ("text", "face", "audio")
    shipped = REPO_ROOT / "models" / "fused-sentiment" / "config.json"
    config = json.loads(shipped.read_text(encoding="utf-8"))
    assert ModelContract.from_config(config).expert_names == ("text", "face", "scene", "audio")


def test_the_response_of_a_face_free_photo_reports_the_scene_part_used_and_the_face_part_no_face(
    v2_settings: Settings,
) -> None:
    """Over HTTP with the contract-v2 model: ``modalities.image`` is used through its ``scene`` part, the
    ``face`` part says ``no_face``, and the answer has a label (the scene is usable evidence)."""
    with TestClient(create_app(settings=v2_settings), raise_server_exceptions=False) as client:
        r = client.post("/v1/predict", files={"image": ("photo.png", no_face_png(300), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    image = body["modalities"]["image"]
    assert image["used"] is True and image["reason"] is None
    assert image["face"]["used"] is False and image["face"]["reason"] == NO_FACE
    assert image["scene"]["used"] is True and image["scene"]["reason"] is None
    labels = ("negative", "neutral", "positive")
    scene = [image["scene"]["probabilities"][k] for k in labels]
    np.testing.assert_allclose([image["probabilities"][k] for k in labels], scene, atol=1e-6)
    np.testing.assert_allclose([body["probabilities"][k] for k in labels], scene, atol=1e-5)
    assert body["label"] is not None and body["reason"] is None


def _square(image: Image.Image) -> np.ndarray:
    return scene_pixels(image.convert("RGB"))


@pytest.mark.parametrize("value", [0, 128, 255])
def test_a_blank_image_has_no_scene_content(value: int) -> None:
    flat = Image.new("RGB", (1920, 1080), (value, value // 2, 255 - value))
    assert scene_content_reason(_square(flat)) == BLANK_IMAGE
    # a faint sensor-noise-like speckle (std ≈ 1 grey level) is still blank
    rng = np.random.default_rng(0)
    speckle = np.clip(128 + rng.normal(0, 1, (600, 800, 3)), 0, 255).astype(np.uint8)
    assert scene_content_reason(_square(Image.fromarray(speckle))) == BLANK_IMAGE


@pytest.mark.parametrize("size", [(224, 224), (1920, 1080), (4000, 3000)])
def test_independent_noise_is_not_a_photo(size: tuple[int, int]) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    assert scene_content_reason(_square(Image.fromarray(noise))) == NOT_A_PHOTO


def test_photos_drawings_and_screenshots_have_scene_content() -> None:
    """Real photos (the bundled face photo, skimage's astronaut), a gradient drawing and a screenshot-like
    image with text lines keep the scene expert."""
    screenshot = Image.new("RGB", (1920, 1080), (250, 250, 250))
    pixels = np.array(screenshot)
    pixels[100:140, :] = (40, 90, 200)  # a title bar
    for row in range(200, 1000, 30):  # lines of "text": dark dashes of varying length
        for col in range(80, 1800, 160):
            pixels[row : row + 12, col : col + 120 - (row // 30 % 5) * 10] = 20
    for image in (
        Image.open(io.BytesIO(face_jpeg())),
        astronaut(),
        Image.open(io.BytesIO(no_face_png(300))),
        Image.fromarray(pixels),
    ):
        assert scene_content_reason(_square(image)) is None


def test_a_blank_or_noise_image_alone_gets_no_label(v2_settings: Settings) -> None:
    """Over HTTP with the contract-v2 model: a grey screen or a noise image has neither a face nor a scene
    to judge, so the answer is no label (no_usable_evidence), never a confident class."""
    grey = image_bytes(Image.new("RGB", (1920, 1080), (128, 128, 128)), "PNG")
    noise = image_bytes(
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)), "PNG"
    )
    with TestClient(create_app(settings=v2_settings), raise_server_exceptions=False) as client:
        for data, reason in ((grey, BLANK_IMAGE), (noise, NOT_A_PHOTO)):
            r = client.post("/v1/predict", files={"image": ("x.png", data, "image/png")})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["label"] is None and body["reason"] == "no_usable_evidence"
            assert body["probabilities_are_prior"] is True
            image = body["modalities"]["image"]
            assert image["used"] is False
            assert image["scene"] == {"used": False, "reason": reason, "probabilities": None}
            assert image["face"]["used"] is False and image["face"]["reason"] == NO_FACE
