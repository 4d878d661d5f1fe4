"""Waveform augmentation of the audio expert's training clips (app/training/audio_augment.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.contract import SAMPLE_RATE
from app.training import audio_augment as A
from app.training import cache

SR = SAMPLE_RATE


def _tone(freq: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _band_power(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


def test_noise_is_added_at_a_signal_to_noise_ratio_between_0_and_30_db() -> None:
    x = _tone(440.0, amplitude=0.1)
    snrs = []
    for seed in range(40):
        y = A.add_noise(x, np.random.default_rng(seed))
        assert y.dtype == np.float32 and y.shape == x.shape and np.abs(y).max() <= 1.0
        snrs.append(
            10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
        )
    assert min(snrs) >= -0.5 and max(snrs) <= 30.5
    assert max(snrs) - min(snrs) > 10  # drawn over the range, not one level


def test_colored_noise_has_unit_rms_and_the_requested_spectral_tilt() -> None:
    rng = np.random.default_rng(0)
    ratios = {}
    for exponent in (0.0, 1.0, 2.0):
        n = A.colored_noise(rng, SR, exponent)
        assert n.dtype == np.float32 and abs(float(np.sqrt(np.mean(n**2))) - 1.0) < 1e-3
        ratios[exponent] = _band_power(n, 50, 500) / _band_power(n, 4000, 4450)
    assert 0.5 < ratios[0.0] < 2.0  # white: equal power in equal bands
    assert ratios[0.0] < ratios[1.0] < ratios[2.0]  # pink, brown: more and more low-frequency power


def test_telephone_removes_the_band_above_4_khz_and_keeps_speech_band_tones() -> None:
    rng = np.random.default_rng(0)
    low, high = _tone(1000.0), _tone(6000.0)
    y_low, y_high = A.telephone(low, rng), A.telephone(high, rng)
    assert y_low.shape == low.shape and y_high.shape == high.shape
    assert np.corrcoef(low[200:-200], y_low[200:-200])[0, 1] > 0.95  # μ-law keeps the tone
    assert _band_power(y_high, 4100, 8000) < 1e-3 * _band_power(high, 4100, 8000)


@pytest.mark.parametrize("k", range(len(A.CODECS)))
def test_codec_round_trips_return_16_khz_audio_of_about_the_same_length(k: int) -> None:
    rng = np.random.default_rng(0)
    x = _tone(300.0, seconds=2.0) * (1 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(2 * SR) / SR)).astype(
        np.float32
    )
    original = A.CODECS
    try:
        A.CODECS = (original[k],)
        y = A.codec_round_trip(x, rng)
    finally:
        A.CODECS = original
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(y.size - x.size) < 0.1 * x.size  # codec delay / padding only
    rms_in, rms_out = float(np.sqrt(np.mean(x**2))), float(np.sqrt(np.mean(y**2)))
    assert 0.3 < rms_out / rms_in < 3.0


def test_edges_and_pauses_add_quiet_audio_and_keep_the_clip_in_order() -> None:
    x = _tone(440.0)
    x[0] = 0.5  # marks where the clip starts
    for seed in range(10):
        y = A.edges(x, np.random.default_rng(seed))
        added = y.size - x.size
        assert 0.2 * SR <= added <= 10.0 * SR and np.abs(np.delete(y, np.flatnonzero(y == 0.5))).max() <= 0.3
        start = int(np.flatnonzero(y == 0.5)[0])
        assert np.array_equal(y[start : start + x.size], x)
        assert (
            np.abs(y[:start]).max(initial=0.0) < 0.05 and np.abs(y[start + x.size :]).max(initial=0.0) < 0.05
        )
        z = A.pause(x, np.random.default_rng(seed))
        added = z.size - x.size
        assert 0.5 * SR <= added <= 3.0 * SR
        at = int(np.flatnonzero(z[: x.size] != x)[0])
        assert 0.1 * x.size - 1 <= at <= 0.9 * x.size + 1
        assert np.array_equal(z[:at], x[:at]) and np.array_equal(z[at + added :], x[at:])
        assert np.abs(z[at : at + added]).max() < 0.05


def test_gain_stays_within_full_scale() -> None:
    x = _tone(440.0, amplitude=0.9)
    for seed in range(20):
        y = A.gain(x, np.random.default_rng(seed))
        assert y.shape == x.shape and np.abs(y).max() <= 1.0
        ratio = float(np.abs(y).max() / np.abs(x).max())
        assert 10 ** (-20 / 20) - 1e-4 <= ratio <= 10 ** (6 / 20) + 1e-4


def test_augment_is_reproducible_per_seed_and_varies_across_seeds() -> None:
    x = _tone(440.0)
    a = A.augment(x, np.random.default_rng([0, 1, 0]))
    b = A.augment(x, np.random.default_rng([0, 1, 0]))
    assert np.array_equal(a, b)
    others = [A.augment(x, np.random.default_rng([0, 1, k])) for k in range(1, 6)]
    assert any(o.shape != a.shape or not np.array_equal(o, a) for o in others)


def test_augmented_logmels_are_cached_per_copy_and_keyed_on_copies_and_seed(tmp_path: Path) -> None:
    files = []
    for i in range(2):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, _tone(200.0 + 100 * i, seconds=1.0), SR)
        files.append(str(path))
    views = cache.augmented_logmels(files, tmp_path / "c", copies=2, seed=0)
    assert len(views) == 2 and all(len(v) == 2 for v in views)
    assert all(
        m.dtype == np.float32 and m.ndim == 2 and m.shape[1] == 64 and len(m) > 0 for v in views for m in v
    )
    first = cache.USED["augmented_logmel"]
    again = cache.augmented_logmels(files, tmp_path / "c", copies=2, seed=0)
    assert cache.USED["augmented_logmel"] == first
    assert all(
        np.array_equal(a, b) for va, vb in zip(views, again, strict=True) for a, b in zip(va, vb, strict=True)
    )
    cache.augmented_logmels(files, tmp_path / "c", copies=1, seed=0)
    assert cache.USED["augmented_logmel"] != first
    cache.augmented_logmels(files, tmp_path / "c", copies=2, seed=1)
    assert len(list((tmp_path / "c").glob("augmented_logmel_*.npz"))) == 3
    assert cache.augmented_logmels(files, tmp_path / "c", copies=0, seed=0) == []
