"""Same content → same prediction, whatever the container, sample rate, bit depth or orientation (issue 5).

Tolerances (the tiny contract model of tests/tiny_model.py; measured on this corpus, each checked against a
control so the test can fail):

* lossless containers of identical samples/pixels (WAV 16/24/32-bit/float, FLAC, stereo copies; PNG, BMP,
  TIFF, lossless WebP, every EXIF orientation stored losslessly): 1e-5 — only float rounding may differ.
* the same analytic signal synthesised at 22.05/44.1/48/96 kHz (band-limited below 8 kHz) or at 8 kHz
  (below 3.8 kHz) and resampled to 16 kHz by soxr: 1e-3 (measured ≤ 3e-4).
* lossy audio codecs (MP3, Vorbis, Opus, AAC, WebM/Opus at normal bitrates): 5e-3 (measured ≤ 3e-3); the
  control, the same signal 12 dB quieter, moves the output by more than that.
* lossy images (JPEG quality 100 and 95, AVIF quality 90): 0.1 on probabilities and ±3 px on the face box.
  The tiny face branch is a random linear map of the 64 × 64 crop (no spatial smoothness), so the 1 px box
  shift JPEG ringing can cause moves it by up to 0.07; the control (the mirrored face) moves it by > 0.2.

The audio tests check decoding and resampling, so the voice activity detector is replaced here by one that
keeps every sample (the synthetic voice-like signal is not speech to Silero VAD, and would not be used); the
detector's own robustness (silence, pauses, noise, telephone band) is tested with the real model in
tests/e2e/test_vad_bars.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.preprocessing import experts
from app.preprocessing.vad import SpeechAudio
from tests.media import image_bytes, pyav_bytes, sf_bytes
from tests.robustness.helpers import assert_prediction, post_file, probs
from tests.robustness.test_image_corpus import STORED_FOR_ORIENTATION, upright_face

LOSSLESS = 1e-5
RESAMPLED = 1e-3
LOSSY_AUDIO = 5e-3
LOSSY_IMAGE = 0.1


def _all_speech(_: object, waveform: np.ndarray) -> SpeechAudio:
    return SpeechAudio(waveform, waveform.size / 16_000, ((0, waveform.size),))


@pytest.fixture(scope="module", autouse=True)
def every_sample_is_speech() -> Iterator[None]:
    """prepare_audio's VAD keeps the whole clip (decoding, not voice activity, is under test here)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experts, "trim_to_speech", _all_speech)
        yield


def voice_like(rate: int, seconds: float = 2.0, f_max: float = 7600.0, gain: float = 1.0) -> np.ndarray:
    """A harmonic signal (f0 150 Hz, harmonics up to ``f_max``, 3 Hz syllable envelope), peak 0.3 × gain.

    Broadband on purpose: a pure tone leaves most mel bands empty, where any codec noise dominates the log.
    """
    t = np.arange(int(seconds * rate)) / rate
    x = np.zeros_like(t)
    for k in range(1, int(f_max // 150) + 1):
        x += np.sin(2 * np.pi * 150.0 * k * t + 0.3 * k) / k**0.7
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)
    return (gain * 0.3 * x / np.abs(x).max()).astype(np.float32)


def audio_probs(client: TestClient, data: bytes) -> np.ndarray:
    body = assert_prediction(post_file(client, "audio", data))
    return np.array(probs(body["modalities"]["audio"]["probabilities"]))


def image_probs(client: TestClient, data: bytes) -> tuple[np.ndarray, dict[str, int]]:
    image = assert_prediction(post_file(client, "image", data))["modalities"]["image"]
    assert image["faces"] >= 1, image
    return np.array(probs(image["probabilities"])), image["face_box"]


@pytest.fixture(scope="module")
def audio_reference(client: TestClient) -> np.ndarray:
    return audio_probs(client, sf_bytes(voice_like(16_000), 16_000, "WAV", "PCM_16"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: sf_bytes(voice_like(16_000), 16_000, "FLAC"),
        lambda: sf_bytes(voice_like(16_000), 16_000, "WAV", "PCM_24"),
        lambda: sf_bytes(voice_like(16_000), 16_000, "WAV", "PCM_32"),
        lambda: sf_bytes(voice_like(16_000), 16_000, "WAV", "FLOAT"),
        lambda: sf_bytes(np.stack([voice_like(16_000)] * 2, axis=1), 16_000, "WAV", "PCM_16"),
    ],
    ids=["flac", "pcm24", "pcm32", "float", "stereo_copies"],
)
def test_lossless_audio_containers_agree(
    client: TestClient, audio_reference: np.ndarray, make: object
) -> None:
    assert np.abs(audio_probs(client, make()) - audio_reference).max() <= LOSSLESS  # type: ignore[operator]


@pytest.mark.parametrize("rate", [22_050, 44_100, 48_000, 96_000])
def test_same_signal_at_other_sample_rates_agrees(
    client: TestClient, audio_reference: np.ndarray, rate: int
) -> None:
    got = audio_probs(client, sf_bytes(voice_like(rate), rate, "WAV", "PCM_16"))
    assert np.abs(got - audio_reference).max() <= RESAMPLED


def test_band_limited_signal_at_8_khz_agrees(client: TestClient) -> None:
    ref = audio_probs(client, sf_bytes(voice_like(16_000, f_max=3800), 16_000, "WAV", "PCM_16"))
    got = audio_probs(client, sf_bytes(voice_like(8_000, f_max=3800), 8_000, "WAV", "PCM_16"))
    assert np.abs(got - ref).max() <= RESAMPLED


@pytest.mark.parametrize(
    "make",
    [
        lambda: sf_bytes(voice_like(44_100), 44_100, "MP3"),
        lambda: sf_bytes(voice_like(44_100), 44_100, "OGG", "VORBIS"),
        lambda: sf_bytes(voice_like(48_000), 48_000, "OGG", "OPUS"),
        lambda: pyav_bytes(voice_like(48_000), 48_000, "mp4", "aac"),
        lambda: pyav_bytes(voice_like(48_000), 48_000, "webm", "libopus"),
    ],
    ids=["mp3", "vorbis", "opus", "m4a_aac", "webm_opus"],
)
def test_lossy_audio_codecs_agree(client: TestClient, audio_reference: np.ndarray, make: object) -> None:
    assert np.abs(audio_probs(client, make()) - audio_reference).max() <= LOSSY_AUDIO  # type: ignore[operator]


def test_audio_control_different_content_exceeds_the_tolerances(
    client: TestClient, audio_reference: np.ndarray
) -> None:
    quieter = audio_probs(client, sf_bytes(voice_like(16_000, gain=0.25), 16_000, "WAV", "PCM_16"))
    assert np.abs(quieter - audio_reference).max() > LOSSY_AUDIO


@pytest.fixture(scope="module")
def image_reference(client: TestClient) -> tuple[np.ndarray, dict[str, int]]:
    return image_probs(client, image_bytes(upright_face(), "PNG"))


def _stored(orientation: int, fmt: str, **kwargs: object) -> bytes:
    stored = STORED_FOR_ORIENTATION[orientation](np.asarray(upright_face()))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return image_bytes(Image.fromarray(np.ascontiguousarray(stored)), fmt, exif=exif.tobytes(), **kwargs)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    ("fmt", "kwargs"), [("PNG", {}), ("WEBP", {"lossless": True})], ids=["png", "webp_lossless"]
)
def test_exif_rotated_lossless_images_agree_exactly(
    client: TestClient,
    image_reference: tuple[np.ndarray, dict[str, int]],
    orientation: int,
    fmt: str,
    kwargs: dict[str, object],
) -> None:
    got, box = image_probs(client, _stored(orientation, fmt, **kwargs))
    assert np.abs(got - image_reference[0]).max() <= LOSSLESS
    assert box == image_reference[1]


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_other_lossless_containers_agree_exactly(
    client: TestClient, image_reference: tuple[np.ndarray, dict[str, int]], fmt: str
) -> None:
    got, box = image_probs(client, image_bytes(upright_face(), fmt))
    assert np.abs(got - image_reference[0]).max() <= LOSSLESS and box == image_reference[1]


@pytest.mark.parametrize(
    ("orientation", "fmt", "kwargs"),
    [(o, "JPEG", {"quality": 100}) for o in range(1, 9)]
    + [(1, "JPEG", {"quality": 95}), (6, "JPEG", {"quality": 95}), (1, "AVIF", {"quality": 90})],
)
def test_lossy_images_agree_within_tolerance(
    client: TestClient,
    image_reference: tuple[np.ndarray, dict[str, int]],
    orientation: int,
    fmt: str,
    kwargs: dict[str, object],
) -> None:
    got, box = image_probs(client, _stored(orientation, fmt, **kwargs))
    ref_probs, ref_box = image_reference
    assert np.abs(got - ref_probs).max() <= LOSSY_IMAGE
    assert all(abs(box[k] - ref_box[k]) <= 3 for k in ("x", "y", "width", "height")), (box, ref_box)


def test_image_control_mirrored_face_exceeds_the_tolerance(
    client: TestClient, image_reference: tuple[np.ndarray, dict[str, int]]
) -> None:
    mirrored, _ = image_probs(
        client, image_bytes(upright_face().transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")
    )
    # > 2× the tolerance (was 3× with the Haar crop: the eye-aligned RetinaFace crop of the mirror image
    # moves the tiny model by 0.24, measured; still well outside what lossy coding does, ≤ 0.07).
    assert np.abs(mirrored - image_reference[0]).max() > 2 * LOSSY_IMAGE


def test_text_same_content_in_json_form_and_multipart(client: TestClient) -> None:
    text = "Ｔｈｉｓ ｉｓ great – ﬁne"  # full-width letters and a ligature: NFKC folds them
    a = assert_prediction(client.post("/v1/predict", json={"text": text}))
    b = assert_prediction(client.post("/v1/predict", data={"text": text}))
    c = assert_prediction(client.post("/v1/predict", json={"text": "This is great - fine".replace("-", "–")}))
    assert probs(a["probabilities"]) == pytest.approx(probs(b["probabilities"]), abs=LOSSLESS)
    assert probs(a["probabilities"]) == pytest.approx(probs(c["probabilities"]), abs=LOSSLESS)
