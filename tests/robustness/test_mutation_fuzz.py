"""Mutation fuzzing of the decoders (issue 5, issue 18): corrupted real files never escape as anything but
a typed preprocessing error (→ 4xx), never as a 5xx over HTTP, and never as a partial clip used as if it
were complete.

Seed files of every supported image and audio format (AMR, 3GP, CAF, M4A and WebM among them) are
generated in tests/robustness/mutation.py; each is mutated (random byte changes, truncation, insertion, a
header field set to 0x7fffffff) with a fixed seed. This found a corrupt AVIF raising RuntimeError, a
corrupt TIFF raising TypeError and a WAV with an unknown codec tag raising AttributeError, each a 500
before; and WebM/CAF files cut or damaged mid-stream decoded as shorter clips without notice.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from app.preprocessing.errors import PreprocessingError
from app.preprocessing.face import face_input
from app.preprocessing.image import decode_image
from tests.robustness.helpers import post_file
from tests.robustness.mutation import (
    AUDIO_SEEDS,
    IMAGE_SEEDS,
    audio_outcome,
    decode_audio_mutant,
    mutants,
    reference,
)

MUTATIONS = 40


def _mutants(seed_fn: Callable[[], bytes], salt: str) -> list[bytes]:
    return [data for _, data in mutants(seed_fn, salt, MUTATIONS)]


@pytest.mark.parametrize("fmt", IMAGE_SEEDS)
def test_mutated_images_raise_only_typed_errors(fmt: str) -> None:
    for mutant in _mutants(IMAGE_SEEDS[fmt], fmt):
        try:
            face_input(decode_image(mutant, max_pixels=40_000_000).image)
        except PreprocessingError:
            pass


@pytest.mark.parametrize("fmt", AUDIO_SEEDS)
def test_mutated_audio_raises_only_typed_errors(fmt: str) -> None:
    for mutant in _mutants(AUDIO_SEEDS[fmt], fmt):
        decode_audio_mutant(mutant)  # any exception but PreprocessingError fails the test


@pytest.mark.parametrize("fmt", AUDIO_SEEDS)
def test_mutated_audio_is_never_a_partial_clip(fmt: str) -> None:
    ref = reference(fmt)
    outcomes = [
        audio_outcome(fmt, data, decode_audio_mutant(data), ref)
        for _, data in mutants(AUDIO_SEEDS[fmt], f"partial-{fmt}", MUTATIONS)
    ]
    partial = [i for i, outcome in enumerate(outcomes) if outcome == "partial"]
    assert not partial, f"{fmt}: mutants {partial} decoded shorter than the seed and were used"
    assert "full" in outcomes or "refused" in outcomes


def test_mutated_files_over_http_are_never_5xx(client: TestClient) -> None:
    statuses = []
    for field, seeds in (("image", IMAGE_SEEDS), ("audio", AUDIO_SEEDS)):
        for fmt, seed_fn in seeds.items():
            for mutant in _mutants(seed_fn, fmt)[::8]:
                r = post_file(client, field, mutant)
                statuses.append(r.status_code)
                assert r.status_code in (200, 413, 415, 422), (field, fmt, r.status_code, r.text[:200])
    assert len(set(statuses)) > 1
