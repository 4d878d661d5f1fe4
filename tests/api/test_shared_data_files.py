"""Real files from the shared datasets through HTTP (tiny model): decoding facts must match the metadata."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.needs_data


def test_crema_d_opus_clip_duration_matches_metadata(client: TestClient, data_dir: Path) -> None:
    folder = data_dir / "crema_d"
    with open(folder / "clips.csv", encoding="utf-8") as fh:
        rows = [next(csv.DictReader(fh)) for _ in range(1)]
    for row in rows:
        clip = folder / row["file"]
        r = client.post("/v1/predict", files={"audio": (clip.name, clip.read_bytes(), "audio/ogg")})
        assert r.status_code == 200, r.text
        audio = r.json()["modalities"]["audio"]
        assert audio["duration_s"] == pytest.approx(float(row["duration_s"]), abs=0.05)
        assert audio["sample_rate"] == 16000 and audio["channels"] == 1


def test_mvsa_image_and_tweet_pair(client: TestClient, data_dir: Path) -> None:
    folder = data_dir / "mvsa_single"
    with open(folder / "labels.csv", encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    image = (
        folder / row["image"]
        if (folder / row["image"]).is_file()
        else folder / "data" / Path(row["image"]).name
    )
    r = client.post(
        "/v1/predict",
        data={"text": row["text"]},
        files={"image": (image.name, image.read_bytes(), "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modalities"]["image"]["format"] == "JPEG"
    assert max(body["modalities"]["image"]["width"], body["modalities"]["image"]["height"]) <= 256
