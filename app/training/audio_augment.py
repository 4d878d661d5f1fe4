"""Waveform augmentation of the audio expert's training clips: what real uploads do to speech (issue 16).

Each augmented copy of a 16 kHz training clip gets one or two of these, drawn with a seeded generator:

- ``noise``: white, pink (1/f) or brown (1/f²) noise at a signal-to-noise ratio uniform in 0–30 dB
  (ratio of mean powers over the whole clip);
- ``telephone``: resampled to 8 kHz (soxr, band-limited to < 4 kHz), G.711 μ-law (μ = 255) 8-bit
  quantisation, back to 16 kHz (ITU-T G.711);
- ``codec``: an encode/decode round trip through Opus (16 kbit/s), AAC-LC (32 kbit/s) or AMR-NB (12.2 kbit/s
  at 8 kHz) with PyAV (FFmpeg's encoders), decoded by the service's own ``decode_audio``;
- ``gain``: −20 … +6 dB, clipped to [−1, 1];
- ``edges``: 0.2–5 s of digital silence or −80 … −50 dBFS white noise before and/or after;
- ``pause``: 0.5–3 s of silence or low noise inserted at a random point.

The training pipeline then runs the same voice activity detection and log-mel as serving on the result
(``app.training.cache.augmented_logmels``), so the network learns what the detector leaves of such input.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import av
import numpy as np
import numpy.typing as npt
import soxr

from app.contract import SAMPLE_RATE
from app.preprocessing.audio import decode_audio

F32 = npt.NDArray[np.float32]
#: μ of G.711 μ-law companding.
MU = 255.0
#: (codec, container, sample rate Hz, bit rate bit/s) of the codec round trips.
CODECS: tuple[tuple[str, str, int, int], ...] = (
    ("libopus", "ogg", 16000, 16000),
    ("aac", "adts", 16000, 32000),
    ("libopencore_amrnb", "amr", 8000, 12200),
)


def _clip(x: npt.NDArray[np.floating]) -> F32:
    """``x`` clipped to full scale [−1, 1], float32."""
    out: F32 = np.clip(x, -1.0, 1.0).astype(np.float32)
    return out


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> F32:
    """Noise float32 [n] with power spectral density ∝ 1/f^``exponent`` (0 white, 1 pink, 2 brown), unit
    RMS; spectral shaping of white Gaussian noise by FFT."""
    white = rng.standard_normal(n)
    if exponent:
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n)
        f[0] = f[1] if n > 1 else 1.0
        white = np.fft.irfft(spec / f ** (exponent / 2), n)
    rms = float(np.sqrt(np.mean(white**2))) or 1.0
    out: F32 = (white / rms).astype(np.float32)
    return out


def add_noise(x: F32, rng: np.random.Generator) -> F32:
    """``x`` plus white, pink or brown noise at an SNR uniform in 0–30 dB."""
    power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-8
    snr_db = rng.uniform(0.0, 30.0)
    noise = colored_noise(rng, x.size, float(rng.choice([0.0, 1.0, 2.0])))
    return _clip(x + noise * np.sqrt(power / 10 ** (snr_db / 10)))


def telephone(x: F32, _rng: np.random.Generator) -> F32:
    """8 kHz band-limited, μ-law 8-bit quantised, back at 16 kHz (same length)."""
    y = soxr.resample(x, SAMPLE_RATE, 8000)
    y = np.clip(y, -1.0, 1.0)
    compressed = np.sign(y) * np.log1p(MU * np.abs(y)) / np.log1p(MU)
    q = np.round((compressed + 1.0) * 127.5) / 127.5 - 1.0  # 256 levels
    y = np.sign(q) * ((1.0 + MU) ** np.abs(q) - 1.0) / MU
    back: F32 = soxr.resample(y.astype(np.float32), 8000, SAMPLE_RATE)[: x.size].astype(np.float32)
    return back


def codec_round_trip(x: F32, rng: np.random.Generator) -> F32:
    """Encode with a random codec of :data:`CODECS` in memory, decode with ``decode_audio`` (16 kHz mono)."""
    codec, container, rate, bit_rate = CODECS[int(rng.integers(len(CODECS)))]
    y = soxr.resample(x, SAMPLE_RATE, rate).astype(np.float32) if rate != SAMPLE_RATE else x
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate = bit_rate
        stream.layout = "mono"
        frame_size = stream.codec_context.frame_size or 1024
        pcm = np.clip(y * 32767, -32768, 32767).astype(np.int16)
        for s in range(0, pcm.size, frame_size):
            frame = av.AudioFrame.from_ndarray(pcm[None, s : s + frame_size], format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    decoded: F32 = decode_audio(buf.getvalue(), max_seconds=600.0).waveform.astype(np.float32)
    return decoded


def gain(x: F32, rng: np.random.Generator) -> F32:
    """``x`` scaled by −20 … +6 dB, clipped to [−1, 1]."""
    return _clip(x * 10 ** (rng.uniform(-20.0, 6.0) / 20))


def _quiet(rng: np.random.Generator, seconds: float) -> F32:
    """Digital silence or −80 … −50 dBFS white noise of ``seconds``."""
    n = int(seconds * SAMPLE_RATE)
    if rng.random() < 0.5:
        return np.zeros(n, np.float32)
    return (rng.standard_normal(n) * 10 ** (rng.uniform(-80.0, -50.0) / 20)).astype(np.float32)


def edges(x: F32, rng: np.random.Generator) -> F32:
    """0.2–5 s of silence or low noise before, after, or both."""
    where = int(rng.integers(3))  # 0 before, 1 after, 2 both
    head = _quiet(rng, rng.uniform(0.2, 5.0)) if where in (0, 2) else np.zeros(0, np.float32)
    tail = _quiet(rng, rng.uniform(0.2, 5.0)) if where in (1, 2) else np.zeros(0, np.float32)
    return np.concatenate([head, x, tail])


def pause(x: F32, rng: np.random.Generator) -> F32:
    """A 0.5–3 s pause of silence or low noise inserted at a random point of the middle 80 %."""
    at = int(rng.uniform(0.1, 0.9) * x.size)
    return np.concatenate([x[:at], _quiet(rng, rng.uniform(0.5, 3.0)), x[at:]])


#: name → augmentation; :func:`augment` draws from these.
AUGMENTATIONS: dict[str, Callable[[F32, np.random.Generator], F32]] = {
    "noise": add_noise,
    "telephone": telephone,
    "codec": codec_round_trip,
    "gain": gain,
    "edges": edges,
    "pause": pause,
}


def augment(x: F32, rng: np.random.Generator) -> F32:
    """One augmented copy float32 [M] of the 16 kHz clip ``x``: one or two (p = 0.5) distinct augmentations
    of :data:`AUGMENTATIONS`, in the dictionary's order (channel effects before gain, edges and pauses)."""
    names = list(AUGMENTATIONS)
    k = 1 + int(rng.random() < 0.5)
    chosen = sorted(rng.choice(len(names), size=k, replace=False))
    for i in chosen:
        x = AUGMENTATIONS[names[i]](x, rng)
    return x
