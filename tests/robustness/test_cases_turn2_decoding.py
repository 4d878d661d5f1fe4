"""Problem uploads set 2 (../shared/cases/turn2, copied to tests/data/cases): the decoding rows over HTTP.

Each row of that README handled by the decoders is one test with the real file, expecting what a user
expects: a complete WAV with a wrong RIFF size and AMR voice notes with DTX pauses are decoded in full; a
PNG whose ancillary chunk has a bad CRC is an image.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.robustness.helpers import assert_prediction, post_file

CASES_DIR = Path(__file__).resolve().parents[1] / "data" / "cases"


def test_recordrtc_wav_with_riff_size_8_too_large_gets_its_full_duration(client: TestClient) -> None:
    data = (CASES_DIR / "recordrtc_riffsize.wav").read_bytes()
    r = post_file(client, "audio", data, filename="recording.wav")
    audio = assert_prediction(r)["modalities"]["audio"]
    samples = int.from_bytes(data[40:44], "little") // 2  # the data chunk's size, 16-bit mono
    assert audio["used"] is True
    assert audio["duration_s"] == pytest.approx(samples / 16_000, abs=0.002)


@pytest.mark.parametrize("name", ["pause_dtx.amr", "pause_dtx.3gp"])
def test_amr_voice_note_with_dtx_pause_is_decoded_to_its_end(client: TestClient, name: str) -> None:
    r = post_file(client, "audio", (CASES_DIR / name).read_bytes(), filename=name)
    audio = assert_prediction(r)["modalities"]["audio"]
    assert audio["duration_s"] == pytest.approx(5.2, abs=0.1)  # not 1.6 s (the part before the pause)
    assert audio["sample_rate"] == 8_000


def test_png_with_bad_ancillary_chunk_crc_is_an_image(client: TestClient) -> None:
    data = (CASES_DIR / "png_bad_anc_crc.png").read_bytes()
    body = assert_prediction(post_file(client, "image", data, filename="face.png"))
    assert body["modalities"]["image"]["used"] is True
