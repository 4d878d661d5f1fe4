"""Model repository: layout, defensive config.json reading, variants, contract checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.contract import INPUT_NAMES, OUTPUT_NAMES
from app.inference.repository import ModelLoadError, load_spec
from app.inference.session import create_session


def _repo(tmp_path: Path, model_dir: Path, config: dict[str, object] | None) -> Path:
    src = model_dir / "fused-sentiment"
    dst = tmp_path / "fused-sentiment"
    shutil.copytree(src, dst)
    if config is None:
        (dst / "config.json").unlink()
    else:
        (dst / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp_path


def test_training_pipeline_style_config_is_understood(tmp_path: Path, model_dir: Path) -> None:
    config = {
        "name": "fused-sentiment",
        "version": 1,
        "model_file": "1/model.onnx",
        "labels": ["negative", "neutral", "positive"],
        "inputs": {name: {"dtype": "float32"} for name in INPUT_NAMES},
        "input_names": list(INPUT_NAMES),
        "output_names": list(OUTPUT_NAMES),
        "variants": {"CPUExecutionProvider": "1/model.onnx", "CUDAExecutionProvider": "1/model.onnx"},
        "preprocessing": {"text": {"tokenizer_file": "tokenizer.json"}},
    }
    root = _repo(tmp_path, model_dir, config)
    spec = load_spec(root, "fused-sentiment")
    assert spec.version == "1"
    assert spec.tokenizer_file == root / "fused-sentiment" / "tokenizer.json"
    assert spec.file_for("CUDAExecutionProvider") == root / "fused-sentiment" / "1" / "model.onnx"
    loaded = create_session(spec, ["CPUExecutionProvider"])
    assert loaded.active_providers == ("CPUExecutionProvider",)


def test_missing_config_uses_contract_defaults(tmp_path: Path, model_dir: Path) -> None:
    spec = load_spec(_repo(tmp_path, model_dir, None), "fused-sentiment")
    assert spec.labels == ("negative", "neutral", "positive")


def test_highest_numeric_version_is_served(tmp_path: Path, model_dir: Path) -> None:
    root = _repo(tmp_path, model_dir, {})
    shutil.copytree(root / "fused-sentiment" / "1", root / "fused-sentiment" / "10")
    (root / "fused-sentiment" / "9").mkdir()  # no model.onnx: ignored
    assert load_spec(root, "fused-sentiment").version == "10"
    assert load_spec(root, "fused-sentiment", "1").version == "1"


def test_contract_violations_are_refused(tmp_path: Path, model_dir: Path) -> None:
    root = _repo(tmp_path, model_dir, {"labels": ["bad", "good", "ugly"]})
    with pytest.raises(ModelLoadError, match="labels"):
        load_spec(root, "fused-sentiment")
    (root / "fused-sentiment" / "config.json").write_text(
        json.dumps({"input_names": ["x"]}), encoding="utf-8"
    )
    with pytest.raises(ModelLoadError, match="contract"):
        load_spec(root, "fused-sentiment")
    (root / "fused-sentiment" / "config.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="JSON"):
        load_spec(root, "fused-sentiment")


def test_missing_tokenizer_or_model_is_refused(tmp_path: Path, model_dir: Path) -> None:
    root = _repo(tmp_path, model_dir, {})
    (root / "fused-sentiment" / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="tokenizer"):
        load_spec(root, "fused-sentiment")
    with pytest.raises(ModelLoadError):
        load_spec(root, "other-model")
    with pytest.raises(ModelLoadError, match="version"):
        load_spec(root, "fused-sentiment", "7")


def test_corrupt_onnx_file_is_a_clear_load_error(tmp_path: Path, model_dir: Path) -> None:
    root = _repo(tmp_path, model_dir, {})
    (root / "fused-sentiment" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelLoadError, match="could not load ONNX model"):
        create_session(load_spec(root, "fused-sentiment"), ["CPUExecutionProvider"])


def test_cuda_provider_options_come_from_the_settings(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA execution provider gets the configured cuDNN conv algorithm search and the arena strategy;
    the CPU provider gets no options (on a machine without CUDA the session then falls back to the CPU)."""
    import app.inference.session as session_module
    from app.config import Settings

    seen: list[list[object]] = []
    real = session_module.ort.InferenceSession

    def recording(path: str, sess_options: object = None, providers: list[object] | None = None) -> object:
        seen.append(list(providers or []))
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(session_module.ort, "InferenceSession", recording)
    monkeypatch.setattr(session_module, "missing_cuda_libraries", lambda: [])  # as on a GPU host
    monkeypatch.setenv("SENTIMENT_CUDA_CONV_ALGO_SEARCH", "HEURISTIC")
    settings = Settings()
    assert settings.cuda_conv_algo_search == "HEURISTIC"
    spec = load_spec(_repo(tmp_path, model_dir, {}), "fused-sentiment")
    loaded = create_session(
        spec,
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
        cuda_conv_algo_search=settings.cuda_conv_algo_search,
    )
    assert loaded.active_providers == ("CPUExecutionProvider",)
    assert seen[0] == [
        (
            "CUDAExecutionProvider",
            {"arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "HEURISTIC"},
        ),
        "CPUExecutionProvider",
    ]
    assert Settings.model_fields["cuda_conv_algo_search"].default == "DEFAULT"


def test_unknown_cuda_conv_algo_search_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from app.config import Settings

    monkeypatch.setenv("SENTIMENT_CUDA_CONV_ALGO_SEARCH", "FASTEST")
    with pytest.raises(ValidationError, match="cuda_conv_algo_search"):
        Settings()
