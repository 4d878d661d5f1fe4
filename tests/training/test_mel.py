"""app.preprocessing.audio.log_mel against librosa (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest

from app.preprocessing.audio import log_mel, num_frames

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("n_samples", [16000, 16000 * 3 + 123, 401])
def test_log_mel_matches_librosa(n_samples: int) -> None:
    rng = np.random.default_rng(n_samples)
    t = np.arange(n_samples) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n_samples)).astype(np.float32)
    ref = librosa.feature.melspectrogram(
        y=x,
        sr=16000,
        n_fft=400,
        hop_length=160,
        win_length=400,
        window="hann",
        center=False,
        power=2.0,
        n_mels=64,
        fmin=50.0,
        fmax=8000.0,
        htk=False,
        norm="slaney",
    )
    ref = np.log(ref + 1e-6).T
    got = log_mel(x)
    assert got.shape == ref.shape == (num_frames(n_samples), 64)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_log_mel_of_silence_is_log_offset() -> None:
    got = log_mel(np.zeros(1600, dtype=np.float32))
    np.testing.assert_allclose(got, np.log(1e-6), atol=1e-6)
