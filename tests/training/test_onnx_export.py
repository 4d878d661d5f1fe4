"""Export a (randomly initialised) fused model and compare ONNX Runtime with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from app.contract import INPUT_NAMES, OUTPUT_NAMES
from app.training.export import export_onnx, ort_session, round_to_fp16

from .helpers import inputs, random_fused, run_torch


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    model = random_fused(seed=1)
    round_to_fp16(model)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, path, fp16_weights=True)
    return model, path


def test_exported_graph_is_valid_opset17_with_fp16_storage(exported) -> None:
    _, path = exported
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in m.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in m.graph.output] == list(OUTPUT_NAMES)
    fp16 = sum(int(np.prod(i.dims)) for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    total = sum(int(np.prod(i.dims)) for i in m.graph.initializer)
    assert fp16 / total > 0.95  # MiniLM's matrices are stored as float16
    assert path.stat().st_size < 60e6


@pytest.mark.parametrize(("batch", "text_len", "frames"), [(1, 5, 1), (3, 17, 64), (8, 128, 301)])
def test_onnx_runtime_matches_pytorch(exported, batch: int, text_len: int, frames: int) -> None:
    model, path = exported
    feeds = inputs(batch, text_len, frames, seed=batch)
    rng = np.random.default_rng(batch)
    feeds["modality_mask"] = rng.integers(0, 2, (batch, 3)).astype(np.float32)
    feeds["attention_mask"][:, text_len // 2 + 1 :] = rng.integers(0, 2, (batch, 1))  # some rows padded
    ref = run_torch(model, feeds)
    got = ort_session(path).run(list(OUTPUT_NAMES), feeds)
    for r, g in zip(ref, got, strict=True):
        assert g.dtype == np.float32 and g.shape == r.shape
        np.testing.assert_allclose(g, r, atol=1e-4)


@pytest.mark.parametrize(
    "faces", [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 1], [1, 0, 1, 0]], ids=["none", "all", "last", "mixed"]
)
def test_face_branch_runs_on_present_rows_only_with_the_same_outputs(exported, faces: list[int]) -> None:
    """The face network runs on the rows with a face (+1 padding row): PyTorch and ONNX Runtime agree with
    running it on every row, also for a batch without any face (the padding row keeps the batch non-empty)."""
    model, path = exported
    feeds = inputs(4, 7, 30, seed=5)
    feeds["modality_mask"][:] = 1.0
    feeds["modality_mask"][:, 1] = faces
    ref = run_torch(model, feeds)
    got = ort_session(path).run(list(OUTPUT_NAMES), feeds)
    face = torch.from_numpy(feeds["face"])
    present = torch.tensor(faces, dtype=torch.bool)
    with torch.no_grad():
        every_row = model.face(face)
        only_present = model.face.forward_present(face, present)
    torch.testing.assert_close(only_present[present], every_row[present], rtol=1e-5, atol=1e-6)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-4)


def test_onnx_absent_modalities_with_nan_are_ignored(exported) -> None:
    _, path = exported
    sess = ort_session(path)
    feeds = inputs(2, 9, 40)
    feeds["modality_mask"][:] = [[1, 0, 0], [0, 0, 1]]
    ref = sess.run(list(OUTPUT_NAMES), feeds)
    bad = {k: v.copy() for k, v in feeds.items()}
    bad["face"][:] = np.nan
    bad["audio_features"][0] = np.inf
    bad["audio_mask"][0] = np.nan
    bad["input_ids"][1] = 10**9
    got = sess.run(list(OUTPUT_NAMES), bad)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_array_equal(g, r)


def test_fp16_storage_is_lossless_for_rounded_weights(exported, tmp_path: Path) -> None:
    model, path = exported
    fp32_path = tmp_path / "fp32.onnx"
    export_onnx(model, fp32_path, fp16_weights=False)
    feeds = inputs(2, 11, 33)
    a = ort_session(path).run(list(OUTPUT_NAMES), feeds)
    b = ort_session(fp32_path).run(list(OUTPUT_NAMES), feeds)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert path.stat().st_size < 0.6 * fp32_path.stat().st_size


def test_a_twelve_layer_text_encoder_exports_and_matches_pytorch(exported, tmp_path: Path) -> None:
    """``msa train --text-encoder bge-small``'s layout (12 layers) goes through the same export: ORT equals
    PyTorch, and the file grows by six layers of float16 weights (6 × 1,774,464 parameters × 2 bytes)."""
    model = random_fused(seed=2, text_layers=12)
    round_to_fp16(model)
    path = tmp_path / "model.onnx"
    export_onnx(model, path, fp16_weights=True)
    feeds = inputs(3, 17, 64, seed=3)
    feeds["attention_mask"][1, 9:] = 0
    for r, g in zip(run_torch(model, feeds), ort_session(path).run(list(OUTPUT_NAMES), feeds), strict=True):
        np.testing.assert_allclose(g, r, atol=1e-4)
    grown = path.stat().st_size - exported[1].stat().st_size
    assert abs(grown - 6 * 1_774_464 * 2) < 0.5e6
