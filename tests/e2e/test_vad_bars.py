"""Voice activity bars of issue 16 with the REAL committed model and the Silero VAD, through HTTP.

* 54 generated non-speech clips (white/pink/brown noise at −80 … −20 dBFS, 50/60 Hz hum with harmonics,
  pure tones, silence; 3–10 s; seeded numpy) → audio present but not used (``no_speech``) in 100 %, and sent
  with a clearly positive text the fused answer is the text-only answer (probabilities within 1e-5).
* The audio rows of ../shared/cases/turn2/README.md (files in tests/data/cases): room noise → ``no_speech``
  and the fused answer = text only; a 20 ms tap → ``too_short``; the same speech alone, after 20 s of
  silence and with a 1.5 s pause → the same audio label and max |Δp| ≤ 0.15.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.e2e.test_real_model import MODEL_FILE, MODEL_ROOT
from tests.media import sf_bytes

pytestmark = pytest.mark.skipif(not MODEL_FILE.is_file(), reason=f"{MODEL_FILE} not committed yet")

CASES = Path(__file__).resolve().parents[1] / "data" / "cases"
RATE = 16_000
POSITIVE = "I am so happy today, this is wonderful! Best day ever."
#: Largest audio probability change allowed between the same speech alone / after silence / with a pause.
SAME_SPEECH_MAX_DP = 0.15


def _scaled(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled to an RMS of ``dbfs`` dB relative to full scale (1.0)."""
    return (x * (10 ** (dbfs / 20) / max(float(np.sqrt(np.mean(x**2))), 1e-12))).astype(np.float32)


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ∝ 1/f^exponent (0 white, 1 pink, 2 brown), shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    return np.fft.irfft(spectrum / f ** (exponent / 2), n)


def _hum(n: int, mains: float) -> np.ndarray:
    t = np.arange(n) / RATE
    return sum(np.sin(2 * np.pi * mains * k * t + k) / k for k in range(1, 8))  # type: ignore[return-value]


def _tone(n: int, freq: float) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / RATE)


def non_speech_clips() -> list[tuple[str, np.ndarray]]:
    """54 clips float32 [N] at 16 kHz, 3–10 s, seeded: white/pink/brown noise (8 levels each), 50/60 Hz hum
    with harmonics (5 levels each), 5 pure tones (2 levels), a chord, clicks and hum in pink noise (2 levels
    each), 4 silences."""
    rng = np.random.default_rng(16)
    clips: list[tuple[str, np.ndarray]] = []
    seconds = iter(np.tile([3.0, 4.5, 6.0, 7.5, 10.0], 20))

    def add(name: str, make: Callable[[int], np.ndarray], dbfs: float) -> None:
        n = int(next(seconds) * RATE)
        clips.append((f"{name}_{dbfs:g}dBFS_{n / RATE:g}s", _scaled(make(n), dbfs)))

    for colour, exponent in (("white", 0.0), ("pink", 1.0), ("brown", 2.0)):
        for dbfs in (-80, -70, -60, -50, -40, -30, -25, -20):
            add(colour, lambda n, e=exponent: _coloured(rng, n, e), dbfs)
    for mains in (50.0, 60.0):
        for dbfs in (-60, -50, -40, -30, -20):
            add(f"hum{mains:g}", lambda n, m=mains: _hum(n, m) + 0.01 * rng.standard_normal(n), dbfs)
    for freq in (100.0, 250.0, 440.0, 1000.0, 3000.0):
        for dbfs in (-40, -20):
            add(f"tone{freq:g}Hz", lambda n, f=freq: _tone(n, f), dbfs)
    for dbfs in (-30, -20):  # a major chord (a steady musical note) and a ticking clock
        add("chord", lambda n: _tone(n, 261.6) + _tone(n, 329.6) + _tone(n, 392.0), dbfs)
        add("clicks", lambda n: (np.arange(n) % (RATE // 2) < 40) * rng.standard_normal(n), dbfs)
    for dbfs in (-30, -20):
        add("hum_in_pink", lambda n: _hum(n, 50.0) + 3 * _coloured(rng, n, 1.0), dbfs)
    for _ in range(4):
        n = int(next(seconds) * RATE)
        clips.append((f"silence_{n / RATE:g}s", np.zeros(n, np.float32)))
    return clips


CLIPS = non_speech_clips()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(settings=Settings(model_dir=MODEL_ROOT, max_batch_size=8))) as c:
        yield c


@pytest.fixture(scope="module")
def text_only(client: TestClient) -> dict[str, object]:
    r = client.post("/v1/predict", data={"text": POSITIVE})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    assert body["label"] == "positive"
    return body


def _with_audio(client: TestClient, data: bytes, text: str | None = POSITIVE) -> dict[str, object]:
    r = client.post(
        "/v1/predict", data={"text": text} if text else {}, files={"audio": ("clip.wav", data, "audio/wav")}
    )
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def _assert_text_only(body: dict[str, object], text_only: dict[str, object]) -> None:
    assert body["label"] == text_only["label"]
    got, want = body["probabilities"], text_only["probabilities"]
    assert isinstance(got, dict) and isinstance(want, dict)
    assert max(abs(got[k] - want[k]) for k in want) <= 1e-5


def test_generated_non_speech_set_is_what_the_bar_asks() -> None:
    assert len(CLIPS) >= 50
    assert all(3.0 <= x.size / RATE <= 10.0 for _, x in CLIPS)
    assert len({name for name, _ in CLIPS}) == len(CLIPS)


@pytest.mark.parametrize(("name", "clip"), CLIPS, ids=[name for name, _ in CLIPS])
def test_non_speech_is_not_used_and_leaves_the_text_answer(
    client: TestClient, text_only: dict[str, object], name: str, clip: np.ndarray
) -> None:
    body = _with_audio(client, sf_bytes(clip, RATE, "WAV", "FLOAT"))
    audio = body["modalities"]["audio"]  # type: ignore[index]
    assert (audio["used"], audio["reason"], audio["probabilities"]) == (False, "no_speech", None), name
    assert audio["speech_s"] < 0.5
    _assert_text_only(body, text_only)


def test_room_noise_is_not_used_and_leaves_the_text_answer(
    client: TestClient, text_only: dict[str, object]
) -> None:
    body = _with_audio(client, (CASES / "room_noise_3s.wav").read_bytes())
    audio = body["modalities"]["audio"]  # type: ignore[index]
    assert (audio["used"], audio["reason"]) == (False, "no_speech")
    assert audio["duration_s"] == pytest.approx(3.0, abs=0.01)
    _assert_text_only(body, text_only)


def test_a_20_ms_tap_is_too_short(client: TestClient, text_only: dict[str, object]) -> None:
    body = _with_audio(client, (CASES / "short_20ms.wav").read_bytes())
    audio = body["modalities"]["audio"]  # type: ignore[index]
    assert (audio["used"], audio["reason"], audio["speech_s"]) == (False, "too_short", None)
    _assert_text_only(body, text_only)


def _audio_probabilities(client: TestClient, name: str) -> tuple[np.ndarray, float]:
    audio = _with_audio(client, (CASES / name).read_bytes(), text=None)["modalities"]["audio"]  # type: ignore[index]
    assert audio["used"] is True, (name, audio)
    p = audio["probabilities"]
    return np.array([p["negative"], p["neutral"], p["positive"]]), float(audio["speech_s"])


@pytest.mark.parametrize("name", ["lead_silence_20s.wav", "pause_speech.wav"])
def test_same_speech_after_silence_or_with_a_pause_keeps_its_audio_answer(
    client: TestClient, name: str
) -> None:
    reference, ref_speech = _audio_probabilities(client, "speech_16k.wav")
    got, speech = _audio_probabilities(client, name)
    assert int(np.argmax(got)) == int(np.argmax(reference))
    assert np.abs(got - reference).max() <= SAME_SPEECH_MAX_DP
    assert speech >= 0.9 * ref_speech  # the speech itself is found in each
