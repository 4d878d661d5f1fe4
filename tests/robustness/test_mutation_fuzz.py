"""Mutation fuzzing of the decoders (issue 5): corrupted real files never escape as anything but a typed
preprocessing error (→ 4xx), and never as a 5xx over HTTP.

Seed files of every supported image and audio format are generated here; each is mutated (random byte
changes, truncation, insertion, a header field set to 0x7fffffff) with a fixed seed. This found a corrupt
AVIF raising RuntimeError, a corrupt TIFF raising TypeError and a WAV with an unknown codec tag raising
AttributeError, each a 500 before.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.preprocessing.audio import decode_audio, log_mel
from app.preprocessing.errors import PreprocessingError
from app.preprocessing.face import largest_face_input
from app.preprocessing.image import decode_image
from tests.media import astronaut, image_bytes, pyav_bytes, sf_bytes, tone
from tests.robustness.helpers import post_file

MUTATIONS = 40


def _small() -> Image.Image:
    return astronaut().resize((128, 128))


IMAGE_SEEDS: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: image_bytes(_small(), "JPEG"),
    "progressive_jpeg": lambda: image_bytes(_small(), "JPEG", progressive=True),
    "png": lambda: image_bytes(_small(), "PNG"),
    "png16": lambda: image_bytes(
        Image.fromarray(np.asarray(_small().convert("L")).astype(np.uint16) * 257), "PNG"
    ),
    "gif": lambda: image_bytes(_small(), "GIF"),
    "webp": lambda: image_bytes(_small(), "WEBP"),
    "avif": lambda: image_bytes(_small(), "AVIF"),
    "tiff": lambda: image_bytes(_small(), "TIFF"),
    "tiff_jpeg": lambda: image_bytes(_small(), "TIFF", compression="jpeg"),
    "bmp": lambda: image_bytes(_small(), "BMP"),
}
AUDIO_SEEDS: dict[str, Callable[[], bytes]] = {
    "wav": lambda: sf_bytes(tone(0.5, 16_000), 16_000, "WAV", "PCM_16"),
    "wav_float": lambda: sf_bytes(tone(0.5, 16_000), 16_000, "WAV", "FLOAT"),
    "flac": lambda: sf_bytes(tone(0.5, 16_000), 16_000, "FLAC"),
    "ogg_vorbis": lambda: sf_bytes(tone(0.5, 44_100), 44_100, "OGG", "VORBIS"),
    "ogg_opus": lambda: sf_bytes(tone(0.5, 48_000), 48_000, "OGG", "OPUS"),
    "mp3": lambda: sf_bytes(tone(0.5, 44_100), 44_100, "MP3"),
    "m4a": lambda: pyav_bytes(tone(0.5, 48_000), 48_000, "mp4", "aac"),
    "webm": lambda: pyav_bytes(tone(0.5, 48_000), 48_000, "webm", "libopus"),
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:
        b = b[: rng.randrange(len(b))]
    elif kind == 2:
        at = rng.randrange(len(b))
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    else:
        at = rng.randrange(min(len(b), 256))
        b[at : at + 4] = b"\xff\xff\xff\x7f"  # a length/size field blown up
    return bytes(b)


def _mutants(seed_fn: Callable[[], bytes], salt: str) -> list[bytes]:
    rng = random.Random(f"mutation-{salt}")
    data = seed_fn()
    return [mutate(data, rng) for _ in range(MUTATIONS)]


@pytest.mark.parametrize("fmt", IMAGE_SEEDS)
def test_mutated_images_raise_only_typed_errors(fmt: str) -> None:
    for mutant in _mutants(IMAGE_SEEDS[fmt], fmt):
        try:
            largest_face_input(decode_image(mutant, max_pixels=40_000_000).image)
        except PreprocessingError:
            pass


@pytest.mark.parametrize("fmt", AUDIO_SEEDS)
def test_mutated_audio_raises_only_typed_errors(fmt: str) -> None:
    for mutant in _mutants(AUDIO_SEEDS[fmt], fmt):
        try:
            log_mel(decode_audio(mutant, max_seconds=30).waveform)
        except PreprocessingError:
            pass


def test_mutated_files_over_http_are_never_5xx(client: TestClient) -> None:
    statuses = []
    for field, seeds in (("image", IMAGE_SEEDS), ("audio", AUDIO_SEEDS)):
        for fmt, seed_fn in seeds.items():
            for mutant in _mutants(seed_fn, fmt)[::8]:
                r = post_file(client, field, mutant)
                statuses.append(r.status_code)
                assert r.status_code in (200, 413, 415, 422), (field, fmt, r.status_code, r.text[:200])
    assert len(set(statuses)) > 1
