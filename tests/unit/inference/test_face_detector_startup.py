"""The service builds the face detector once, on the execution providers the fused model really got."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.inference.repository import ModelLoadError
from app.inference.startup import detector_file, face_detector
from app.preprocessing.face import DETECTOR_FILE


def test_pipeline_holds_one_detector_on_the_models_providers(client: TestClient) -> None:
    predictor = client.app.state.predictor  # type: ignore[attr-defined]
    detector = predictor.pipeline.resources.face_detector
    assert detector is not None
    assert detector.providers == tuple(predictor.model.loaded.active_providers)


def test_detector_file_prefers_a_mounted_repository(tmp_path: Path, settings: Settings) -> None:
    assert detector_file(settings) == DETECTOR_FILE  # the tiny model repository brings none
    mounted = tmp_path / "detectors" / DETECTOR_FILE.name
    mounted.parent.mkdir()
    mounted.write_bytes(DETECTOR_FILE.read_bytes())
    assert detector_file(settings.model_copy(update={"model_dir": tmp_path})) == mounted


def test_a_broken_detector_file_is_a_model_load_error(
    tmp_path: Path, client: TestClient, settings: Settings
) -> None:
    broken = tmp_path / "detectors" / DETECTOR_FILE.name
    broken.parent.mkdir()
    broken.write_bytes(b"not an onnx file")
    model = client.app.state.predictor.model  # type: ignore[attr-defined]
    with pytest.raises(ModelLoadError, match="face detector"):
        face_detector(model.loaded.active_providers, settings.model_copy(update={"model_dir": tmp_path}))
