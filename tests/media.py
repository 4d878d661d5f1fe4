"""Real media files generated in the tests (never committed): Pillow images, soundfile/PyAV audio."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr
from PIL import Image


@lru_cache(maxsize=1)
def astronaut() -> Image.Image:
    """scikit-image's astronaut photo (Eileen Collins, public domain, NASA): a real frontal face, 512×512."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def image_bytes(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def face_jpeg() -> bytes:
    return image_bytes(astronaut(), "JPEG", quality=90)


def no_face_png(size: int = 128) -> bytes:
    yy, xx = np.mgrid[0:size, 0:size]
    arr = np.stack([xx * 2 % 256, yy * 2 % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    return image_bytes(Image.fromarray(arr), "PNG")


def tone(seconds: float = 1.0, rate: int = 16_000, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A sine tone (amplitude 0.5) [N] or [N, channels], float32."""
    t = np.arange(int(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def sf_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav(seconds: float = 1.0, rate: int = 16_000, channels: int = 1, subtype: str = "PCM_16") -> bytes:
    return sf_bytes(tone(seconds, rate, channels), rate, "WAV", subtype)


#: A short generated English utterance (16 kHz mono WAV, 1.87 s, about 1 s of it speech), from
#: ../shared/cases/turn2 (the README's ``speech_16k.wav``).
SPEECH_WAV = Path(__file__).resolve().parent / "data" / "cases" / "speech_16k.wav"


def speech(repeats: int = 1, gain: float = 1.0) -> np.ndarray:
    """:data:`SPEECH_WAV`'s samples float32 [N] at 16 kHz, ``repeats`` times in a row, scaled by ``gain``:
    audio the voice activity detector accepts (a tone is not speech)."""
    x, _ = sf.read(SPEECH_WAV, dtype="float32")
    return (np.tile(x, repeats) * gain).astype(np.float32)


def speech_wav(repeats: int = 1, rate: int = 16_000, channels: int = 1) -> bytes:
    """:func:`speech` as a 16-bit WAV at ``rate`` (resampled by soxr) with ``channels`` identical channels."""
    x = speech(repeats)
    if rate != 16_000:
        x = soxr.resample(x, 16_000, rate).astype(np.float32)
    return sf_bytes(np.stack([x] * channels, axis=1) if channels > 1 else x, rate, "WAV", "PCM_16")


#: Samples per frame each encoder takes (AAC 1024, Opus 20 ms at 48 kHz, AMR-NB 20 ms at 8 kHz, ALAC 4096).
FRAME_SIZES = {"libopus": 960, "libopencore_amrnb": 160, "alac": 4096}


def pyav_bytes(
    samples: np.ndarray, rate: int, container: str, codec: str, options: dict[str, str] | None = None
) -> bytes:
    """Encode mono float samples with FFmpeg via PyAV (``("mp4", "aac")``, ``("webm", "libopus")``,
    ``("amr", "libopencore_amrnb")``, ``("caf", "alac")``...); ``options`` go to the encoder (e.g.
    ``{"dtx": "1"}`` for AMR-NB discontinuous transmission)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
        stream.layout = "mono"
        frame_size = FRAME_SIZES.get(codec, 1024)
        fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
        for start in range(0, len(samples), frame_size):
            chunk = samples[start : start + frame_size].astype(np.float32)
            if len(chunk) < frame_size:
                chunk = np.pad(chunk, (0, frame_size - len(chunk)))
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = rate
            if fmt != "fltp":
                frame = av.AudioResampler(format=fmt, layout="mono", rate=rate).resample(frame)[0]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def speech_with_pause(rate: int = 8_000) -> np.ndarray:
    """3 s: 1 s of a voiced-like harmonic tone, 1.5 s of near-silence (a pause), 0.5 s of tone; float32 [N].

    Encoded with AMR-NB DTX, the pause becomes comfort-noise (SID) and NO_DATA frames."""
    x = tone(3.0, rate, freq=220.0) + tone(3.0, rate, freq=660.0) * 0.5
    x[rate : int(2.5 * rate)] = np.random.default_rng(0).standard_normal(int(1.5 * rate)) * 1e-3
    return x.astype(np.float32)
