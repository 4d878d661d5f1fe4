"""Realistic request corpus (issue 15): what phones and desktops upload, built from ``../shared/data``.

    python -m benchmarks.realistic [--n 12] [--seed 0] [--kinds KIND ...] [--data-dir DIR]

Builds (once; cached under ``benchmarks/results/raw/realistic/``, gitignored: nothing generated is committed,
data licences in shared/data/README.md) and prints every kind's count and sizes. Deterministic: the same
seed, data and library versions give the same files. Local tools only (Pillow, PyAV, soxr, soundfile).

Item kinds (:data:`KINDS`; ``--n`` items each, :data:`FEWER` of the 48 MP kind):

* ``tweet``: TweetEval sentiment **test** tweets.
* ``thumb_jpeg``: MVSA-Single photos re-encoded as JPEG (quality 90) with the longest side 256 px: today's
  small corpus (:mod:`benchmarks.corpus`).
* ``phone_jpeg_12mp``: 4032 × 3024 baseline JPEGs (quality 92, 4:2:0), an MVSA-Single photo cropped to 4:3,
  upscaled (bicubic) and given mild sensor-like noise (luma σ :data:`LUMA_NOISE`, chroma σ
  :data:`CHROMA_NOISE`, 8-bit levels) so the file is a phone-like 2–5 MB; an EXIF block (Make, Model,
  Orientation 1, DateTime, exposure tags). Even items are photos in which the service's face detector
  (:func:`app.preprocessing.face.face_input`) finds a face in the final upright pixels, odd items photos in
  which it finds none. The content is an upscaled 256 px photo, so it is soft: the file is realistic in
  size and structure, not in detail.
* ``phone_jpeg_12mp_rotated``: a portrait phone photo as phones store it: the upright photo is 3024 × 4032
  (MVSA crop 3:4); the stored pixels are that photo turned 90° counter-clockwise (4032 × 3024) with EXIF
  Orientation 6, so EXIF transpose gives the upright photo back. Same sources and face rule.
* ``phone_jpeg_48mp``: 8064 × 6048 (48.8 MP), same recipe as the 12 MP kind (fewer items).
* ``screenshot_png``: 1920 × 1080 RGB PNGs: a flat UI (top bar, sidebar, cards, buttons), lines of tweet text
  drawn with ``ImageDraw`` and one MVSA photo 320 px wide inside a card (even items: a photo with a face;
  whether the detector still finds it at that size is in the item's ``faces``).
* ``voice_m4a``: 5–15 s voice notes, AAC (96 kb/s) in an M4A (MP4) container, 48 kHz stereo: CREMA-D clips
  of one speaker (16 kHz, resampled with soxr) joined by 0.25–0.8 s pauses of quiet room noise, with a short
  lead-in and tail.
* ``voice_opus``: the same kind of content as Ogg/Opus (libopus, 48 kb/s), 48 kHz stereo.
* ``voice_m4a_8s``: 8.0 s M4A voice notes (speech padded with room noise to exactly 8 s), for the combined
  request ``tweet+12mp+m4a`` of ``benchmarks.cost``.
* ``wav_16k``: 3.0 s 16 kHz mono 16-bit PCM WAVs (a CREMA-D clip trimmed, or padded with room noise), as the
  small corpus.

Request kinds (:data:`REQUESTS`) name the item kinds one request carries (one per field: text, image,
audio); the mixes (:data:`MIXES`) weight request kinds: ``realistic`` (tweet + phone photo / screenshot +
voice note, and single-field requests of the realistic kinds) and ``small`` (tweet, 256 px thumbnail, 3 s
WAV, and all three together). :func:`mix_samples` and :func:`request_samples` return
:class:`benchmarks.corpus.Sample` lists for other benchmarks (e.g. :mod:`benchmarks.loadgen`);
:func:`multipart_body` serialises one for ``POST /v1/predict``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import statistics
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
from PIL import Image, ImageDraw, ImageFont
from PIL.TiffImagePlugin import IFDRational

from benchmarks.corpus import Sample

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "data"
CACHE = ROOT / "benchmarks" / "results" / "raw" / "realistic"
#: Bump when a generator changes: the cache folder is ``v<VERSION>-seed<seed>``.
VERSION = 2

KINDS: tuple[str, ...] = (
    "tweet",
    "thumb_jpeg",
    "phone_jpeg_12mp",
    "phone_jpeg_12mp_rotated",
    "phone_jpeg_48mp",
    "screenshot_png",
    "voice_m4a",
    "voice_opus",
    "voice_m4a_8s",
    "wav_16k",
)
#: Request field each item kind fills.
FIELD: dict[str, str] = {
    "tweet": "text",
    "thumb_jpeg": "image",
    "phone_jpeg_12mp": "image",
    "phone_jpeg_12mp_rotated": "image",
    "phone_jpeg_48mp": "image",
    "screenshot_png": "image",
    "voice_m4a": "audio",
    "voice_opus": "audio",
    "voice_m4a_8s": "audio",
    "wav_16k": "audio",
}
#: Kinds built with fewer items than ``n`` (slow to make, large): kind → items.
FEWER: dict[str, int] = {"phone_jpeg_48mp": 4}

#: Request kind → the item kinds it carries (at most one per field).
REQUESTS: dict[str, tuple[str, ...]] = {
    **{k: (k,) for k in KINDS},
    "tweet+12mp+m4a": ("tweet", "phone_jpeg_12mp", "voice_m4a_8s"),
    "tweet+12mp_rotated+opus": ("tweet", "phone_jpeg_12mp_rotated", "voice_opus"),
    "tweet+screenshot+m4a": ("tweet", "screenshot_png", "voice_m4a"),
    "tweet+thumb+wav": ("tweet", "thumb_jpeg", "wav_16k"),
}
#: Mix → request kind → weight (share of the mix's requests).
MIXES: dict[str, dict[str, int]] = {
    "realistic": {
        "tweet+12mp+m4a": 3,
        "tweet+12mp_rotated+opus": 2,
        "tweet+screenshot+m4a": 1,
        "tweet": 3,
        "phone_jpeg_12mp": 2,
        "phone_jpeg_12mp_rotated": 2,
        "phone_jpeg_48mp": 1,
        "screenshot_png": 2,
        "voice_m4a": 2,
        "voice_opus": 2,
    },
    "small": {"tweet": 1, "thumb_jpeg": 1, "wav_16k": 1, "tweet+thumb+wav": 1},
}

#: Noise added to the upscaled phone photos, σ in 8-bit levels: one luma value per pixel (all channels)
#: plus an independent value per channel (chroma).
LUMA_NOISE = 3.6
CHROMA_NOISE = 2.0
#: EXIF tags (TIFF/EXIF 2.32 tag numbers).
_MAKE, _MODEL, _ORIENTATION, _SOFTWARE, _DATETIME, _EXIF_IFD = 0x010F, 0x0110, 0x0112, 0x0131, 0x0132, 0x8769
#: Room noise level of pauses and padding (RMS, full scale 1.0): about −66 dBFS.
ROOM_NOISE_RMS = 5e-4
VOICE_RATE = 48_000
CREMA_RATE = 16_000


@dataclass(frozen=True)
class Item:
    """One generated upload: ``value`` is the text (``tweet``) or the file's bytes; ``meta`` its sizes
    (``width``/``height`` upright pixels, ``stored_width``/``stored_height``, ``orientation``, ``faces``
    found by the service's detector; ``seconds``, ``sample_rate`` Hz, ``channels``; ``bytes``)."""

    kind: str
    value: str | bytes
    meta: dict[str, Any] = field(default_factory=dict)


Corpus = dict[str, list[Item]]


# --------------------------------------------------------------------------- sources
def _mvsa_rows(data_dir: Path, seed: int) -> list[dict[str, str]]:
    with open(data_dir / "mvsa_single" / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(f"{seed}:mvsa").shuffle(rows)
    return rows


def _faces_in(image: Image.Image) -> int:
    """Faces the service's detector finds in an upright RGB image."""
    from app.preprocessing.face import face_input

    face, found = face_input(image)
    return len(found.faces) if face is not None else 0


class _PhotoPool:
    """MVSA-Single photos (longest side 256 px) in a seeded order, split lazily into those in which the
    service's face detector finds a face and those in which it finds none."""

    def __init__(self, data_dir: Path, seed: int) -> None:
        self.data_dir = data_dir
        self._rows = iter(_mvsa_rows(data_dir, seed))
        self.with_face: list[tuple[str, Image.Image]] = []
        self.without_face: list[tuple[str, Image.Image]] = []

    def _classify_next(self) -> bool:
        from app.preprocessing.image import decode_image

        for row in self._rows:
            path = self.data_dir / "mvsa_single" / row["image"]
            try:
                image = decode_image(path.read_bytes(), max_pixels=10**8).image
            except Exception:  # noqa: BLE001 - the dataset has a few unreadable files: skip them
                continue
            if max(image.size) != 256:
                continue
            (self.with_face if _faces_in(image) else self.without_face).append((path.name, image))
            return True
        return False

    def photos(self, face: bool) -> Iterator[tuple[str, Image.Image]]:
        """Photos of one class in pool order (grows the pool as needed)."""
        i = 0
        while True:
            pool = self.with_face if face else self.without_face
            if i < len(pool):
                yield pool[i]
                i += 1
            elif not self._classify_next():
                return


def _tweets(data_dir: Path, seed: int) -> list[str]:
    with open(data_dir / "tweeteval_sentiment" / "test.csv", newline="", encoding="utf-8") as fh:
        texts = [r["text"] for r in csv.DictReader(fh) if r["text"].strip()]
    random.Random(f"{seed}:tweets").shuffle(texts)
    return texts


def _crema_speakers(data_dir: Path) -> dict[str, list[str]]:
    by_actor: dict[str, list[str]] = {}
    with open(data_dir / "crema_d" / "clips.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_actor.setdefault(row["actor"], []).append(row["file"])
    return {a: sorted(files) for a, files in sorted(by_actor.items())}


def _read_clip(data_dir: Path, name: str) -> npt.NDArray[np.float32]:
    wave, rate = sf.read(data_dir / "crema_d" / name, dtype="float32", always_2d=True)
    mono: npt.NDArray[np.float32] = np.asarray(wave, np.float32).mean(axis=1, dtype=np.float32)
    if rate != CREMA_RATE:
        mono = np.asarray(soxr.resample(mono, rate, CREMA_RATE), np.float32)
    return mono


# --------------------------------------------------------------------------- images
def _crop_to(image: Image.Image, aspect: float) -> Image.Image:
    """The centred crop of ``image`` with width / height = ``aspect``."""
    w, h = image.size
    if w / h > aspect:
        cw = round(h * aspect)
        return image.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
    ch = round(w / aspect)
    return image.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))


def _sensor_photo(src: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """``src`` cropped to the aspect of ``size``, upscaled (bicubic) to ``size``, with sensor-like noise."""
    up = _crop_to(src.convert("RGB"), size[0] / size[1]).resize(size, Image.Resampling.BICUBIC)
    arr = np.asarray(up, dtype=np.uint8).copy()
    rows = 256  # in bands: a 48 MP image in float32 at once would take 0.6 GB
    for r0 in range(0, arr.shape[0], rows):
        band = arr[r0 : r0 + rows].astype(np.float32)
        luma = rng.standard_normal(band.shape[:2], dtype=np.float32)[..., None] * LUMA_NOISE
        chroma = rng.standard_normal(band.shape, dtype=np.float32) * CHROMA_NOISE
        arr[r0 : r0 + rows] = np.clip(np.rint(band + luma + chroma), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _phone_exif(orientation: int, model: str, index: int) -> Image.Exif:
    exif = Image.Exif()
    exif[_MAKE] = "Google"
    exif[_MODEL] = model
    exif[_ORIENTATION] = orientation
    exif[_SOFTWARE] = "HDR+ 1.0.641377693zd"
    exif[_DATETIME] = f"2025:06:{1 + index % 28:02d} 12:{index % 60:02d}:00"
    ifd = exif.get_ifd(_EXIF_IFD)
    ifd[0x829A] = IFDRational(1, 120)  # ExposureTime
    ifd[0x829D] = IFDRational(17, 10)  # FNumber
    ifd[0x8827] = 100 + 50 * (index % 8)  # ISO
    ifd[0x9003] = exif[_DATETIME]  # DateTimeOriginal
    ifd[0x920A] = IFDRational(554, 100)  # FocalLength
    return exif


def _jpeg(image: Image.Image, quality: int, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": quality, "subsampling": 2, "progressive": False}
    if exif is not None:
        kwargs["exif"] = exif
    image.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def _phone_photos(
    pool: _PhotoPool, count: int, seed: int, kind: str, size: tuple[int, int], rotated: bool
) -> list[Item]:
    """``count`` phone JPEGs of upright ``size``, even items with a face, odd items without."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    model = "Pixel 8 Pro" if size[0] * size[1] > 20e6 else "Pixel 7a"
    sources = {True: pool.photos(face=True), False: pool.photos(face=False)}
    items: list[Item] = []
    for i in range(count):
        want_face = i % 2 == 0
        for name, src in sources[want_face]:  # noqa: B007 - the photo found is used after the loop
            upright = _sensor_photo(src, size, rng)
            faces = _faces_in(upright)
            if (faces > 0) == want_face:
                break
        else:
            raise RuntimeError(
                f"{kind}: MVSA-Single has too few photos {'with' if want_face else 'without'} a face"
            )
        stored = upright.transpose(Image.Transpose.ROTATE_90) if rotated else upright
        data = _jpeg(stored, 92, _phone_exif(6 if rotated else 1, model, i))
        meta = {
            "source": name,
            "width": upright.width,
            "height": upright.height,
            "stored_width": stored.width,
            "stored_height": stored.height,
            "orientation": 6 if rotated else 1,
            "faces": faces,
            "bytes": len(data),
        }
        items.append(Item(kind, data, meta))
    return items


def _thumbs(pool: _PhotoPool, count: int) -> list[Item]:
    """256 px JPEGs, alternately with and without a face."""
    sources = {True: pool.photos(face=True), False: pool.photos(face=False)}
    items: list[Item] = []
    for i in range(count):
        name, src = next(sources[i % 2 == 0])
        data = _jpeg(src, 90)
        meta = {"source": name, "width": src.width, "height": src.height, "faces": _faces_in(src)}
        items.append(Item("thumb_jpeg", data, {**meta, "bytes": len(data)}))
    return items


_THEMES: tuple[dict[str, tuple[int, int, int]], ...] = (
    {"bg": (243, 244, 246), "bar": (29, 155, 240), "side": (255, 255, 255), "card": (255, 255, 255),
     "text": (20, 23, 26), "muted": (101, 119, 134), "accent": (29, 155, 240)},
    {"bg": (21, 32, 43), "bar": (25, 39, 52), "side": (25, 39, 52), "card": (30, 45, 60),
     "text": (231, 233, 234), "muted": (139, 152, 165), "accent": (120, 86, 255)},
    {"bg": (250, 250, 250), "bar": (66, 103, 178), "side": (240, 242, 245), "card": (255, 255, 255),
     "text": (5, 5, 5), "muted": (96, 103, 112), "accent": (66, 103, 178)},
)  # fmt: skip


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _screenshot(photo: Image.Image, texts: Sequence[str], rng: random.Random) -> Image.Image:
    """A 1920 × 1080 UI-like screenshot with ``texts`` as posts and ``photo`` (320 px wide) in one card."""
    width, height = 1920, 1080
    t = _THEMES[rng.randrange(len(_THEMES))]
    img = Image.new("RGB", (width, height), t["bg"])
    d = ImageDraw.Draw(img)
    big, body, small = _font(24), _font(19), _font(15)
    # top bar: title, search box, avatar
    d.rectangle((0, 0, width, 60), fill=t["bar"])
    d.text((24, 16), "Home", font=big, fill=(255, 255, 255))
    d.rounded_rectangle((640, 12, 1280, 48), radius=18, fill=t["card"])
    d.text((664, 20), "Search", font=small, fill=t["muted"])
    d.ellipse((1860, 12, 1896, 48), fill=t["card"])
    # sidebar menu
    d.rectangle((0, 60, 300, height), fill=t["side"])
    for k, label in enumerate(("Home", "Explore", "Notifications", "Messages", "Bookmarks", "Profile")):
        d.rounded_rectangle((20, 90 + 56 * k, 36, 106 + 56 * k), radius=4, fill=t["accent"])
        d.text((52, 86 + 56 * k), label, font=body, fill=t["text"])
    # feed: three cards; the photo goes into one of them
    photo_card = rng.randrange(3)
    y = 84
    for k in range(3):
        lines = textwrap.wrap(texts[k % len(texts)], 78)[:4] or ["…"]
        card_h = 110 + 28 * len(lines)
        pw, ph = 320, round(320 * photo.height / photo.width)
        if k == photo_card:
            card_h += ph + 16
        if y + card_h > height - 10:
            break
        d.rounded_rectangle((340, y, 1400, y + card_h), radius=12, fill=t["card"])
        d.ellipse((364, y + 20, 412, y + 68), fill=tuple(rng.randrange(60, 220) for _ in range(3)))
        d.text((428, y + 22), f"user{rng.randrange(10_000)}", font=body, fill=t["text"])
        d.text((428, y + 46), f"@user · {rng.randrange(1, 59)}m", font=small, fill=t["muted"])
        ty = y + 80
        for line in lines:
            d.text((428, ty), line, font=body, fill=t["text"])
            ty += 28
        if k == photo_card:
            img.paste(photo.convert("RGB").resize((pw, ph), Image.Resampling.BICUBIC), (428, ty + 6))
            ty += ph + 16
        for b, label in enumerate(("Reply", "Repost", "Like", "Share")):
            d.text((428 + 160 * b, ty + 4), label, font=small, fill=t["muted"])
        y += card_h + 16
    # right panel: trends
    d.rounded_rectangle((1440, 84, 1880, 620), radius=12, fill=t["card"])
    d.text((1464, 100), "Trends for you", font=big, fill=t["text"])
    for k in range(8):
        d.text((1464, 150 + 56 * k), f"#{rng.choice(('news', 'music', 'sport', 'tech', 'food'))}{k}",
               font=body, fill=t["text"])  # fmt: skip
        d.text((1464, 174 + 56 * k), f"{rng.randrange(1, 99)}.{rng.randrange(10)}K posts", font=small,
               fill=t["muted"])  # fmt: skip
    return img


def _screenshots(pool: _PhotoPool, count: int, seed: int, tweets: Sequence[str]) -> list[Item]:
    rng = random.Random(f"{seed}:screenshot")
    # Photos other than the first ones, which the phone kinds use.
    sources = {True: pool.photos(face=True), False: pool.photos(face=False)}
    for it in sources.values():
        for _ in range(count):
            next(it, None)
    items: list[Item] = []
    for i in range(count):
        name, photo = next(sources[i % 2 == 0])
        texts = [tweets[(3 * i + k) % len(tweets)] for k in range(3)]
        shot = _screenshot(photo, texts, rng)
        buf = io.BytesIO()
        shot.save(buf, "PNG")
        data = buf.getvalue()
        meta = {"source": name, "width": shot.width, "height": shot.height, "faces": _faces_in(shot)}
        items.append(Item("screenshot_png", data, {**meta, "photo_face": i % 2 == 0, "bytes": len(data)}))
    return items


# --------------------------------------------------------------------------- audio
def _room(n: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    return (rng.standard_normal(n) * ROOM_NOISE_RMS).astype(np.float32)


def _voice_note(
    clips: Iterator[npt.NDArray[np.float32]],
    rng: np.random.Generator,
    min_s: float,
    max_s: float,
    exact_s: float | None = None,
) -> npt.NDArray[np.float32]:
    """16 kHz mono: a 0.2–0.6 s lead-in, clips joined by 0.25–0.8 s pauses, a 0.3–0.7 s tail (room noise),
    about ``min_s`` to ``max_s`` long; or, with ``exact_s``, padded with room noise to exactly that long."""
    rate = CREMA_RATE
    parts = [_room(int(rng.uniform(0.2, 0.6) * rate), rng)]
    tail = int(rng.uniform(0.3, 0.7) * rate)
    if exact_s is not None:
        target = limit = int(exact_s * rate)
    else:
        target, limit = int(rng.uniform(min_s + 0.5, max_s - 2.5) * rate), int(max_s * rate)
    total = parts[0].size
    while total < target:
        clip = next(clips, None)
        if clip is None:
            break
        if total + clip.size + tail > limit:
            if len(parts) > 1:
                break
            clip = clip[: max(0, limit - tail - total)]
        pause = _room(int(rng.uniform(0.25, 0.8) * rate), rng)
        parts += [clip, pause]
        total += clip.size + pause.size
    wave = np.concatenate([*parts[:-1], _room(tail, rng)])  # the last pause gives way to the tail
    if exact_s is not None:
        n = int(exact_s * rate)
        wave = np.concatenate([wave, _room(max(0, n - wave.size), rng)])[:n]
    return np.asarray(wave, np.float32)


def _stereo_48k(wave: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """16 kHz mono → 48 kHz stereo (soxr; the right channel 1 dB lower with its own room noise), [2, N]."""
    up = np.asarray(soxr.resample(wave, CREMA_RATE, VOICE_RATE), np.float32)
    right = 0.89 * up + _room(up.size, rng) * 0.5
    return np.asarray(np.clip(np.stack([up, right]), -1.0, 1.0), np.float32)


def encode_audio(wave: npt.NDArray[np.float32], rate: int, fmt: str, codec: str, bit_rate: int) -> bytes:
    """Encode float samples [channels, N] with PyAV (``fmt``: FFmpeg muxer, e.g. ``ipod`` for M4A, ``ogg``;
    ``codec``: ``aac``, ``libopus``; ``bit_rate`` in bit/s); the same samples give the same bytes."""
    layout = "stereo" if wave.shape[0] == 2 else "mono"
    buf = io.BytesIO()
    # bitexact: no random Ogg stream serial number, no encoder version tag, so the bytes are reproducible
    with av.open(buf, mode="w", format=fmt, options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate = bit_rate
        step = rate // 10
        for start in range(0, wave.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(wave[:, start : start + step]), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _wav(wave: npt.NDArray[np.float32], rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _voice_notes(data_dir: Path, count: int, seed: int, kind: str) -> list[Item]:
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    pick = random.Random(f"{seed}:{kind}")
    speakers = _crema_speakers(data_dir)
    actors = list(speakers)
    items: list[Item] = []
    for _ in range(count):
        actor = pick.choice(actors)
        files = list(speakers[actor])
        pick.shuffle(files)
        clips = (_read_clip(data_dir, f) for f in files)
        if kind == "voice_m4a_8s":
            mono = _voice_note(clips, rng, 8.0, 8.0, exact_s=8.0)
        else:
            mono = _voice_note(clips, rng, 5.0, 15.0)
        stereo = _stereo_48k(mono, rng)
        if kind == "voice_opus":
            data = encode_audio(stereo, VOICE_RATE, "ogg", "libopus", 48_000)
        else:
            data = encode_audio(stereo, VOICE_RATE, "ipod", "aac", 96_000)
        meta = {"seconds": round(stereo.shape[1] / VOICE_RATE, 3), "sample_rate": VOICE_RATE, "channels": 2}
        meta["speaker"] = actor
        items.append(Item(kind, data, {**meta, "bytes": len(data)}))
    return items


def _wavs(data_dir: Path, count: int, seed: int) -> list[Item]:
    rng = np.random.default_rng([seed, KINDS.index("wav_16k")])
    files = [f for fs in _crema_speakers(data_dir).values() for f in fs]
    random.Random(f"{seed}:wav").shuffle(files)
    items: list[Item] = []
    n = 3 * CREMA_RATE
    for name in files[:count]:
        clip = _read_clip(data_dir, name)
        wave = np.concatenate([clip, _room(max(0, n - clip.size), rng)])[:n]
        data = _wav(wave, CREMA_RATE)
        meta = {"seconds": 3.0, "sample_rate": CREMA_RATE, "channels": 1, "source": Path(name).name}
        items.append(Item("wav_16k", data, {**meta, "bytes": len(data)}))
    return items


# --------------------------------------------------------------------------- cache
def content_type(data: bytes) -> tuple[str, str]:
    """(MIME type, file name extension) of upload bytes, sniffed from their signature."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg", ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png", ".png"
    if data[4:8] == b"ftyp":
        return "audio/mp4", ".m4a"
    if data[:4] == b"OggS":
        return "audio/ogg", ".ogg"
    if data[:4] == b"RIFF":
        return "audio/wav", ".wav"
    return "application/octet-stream", ".bin"


def _save(folder: Path, items: list[Item]) -> None:
    """Write ``items`` to ``folder`` atomically (a temporary sibling renamed into place)."""
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = []
    for i, item in enumerate(items):
        if isinstance(item.value, str):
            manifest.append({"text": item.value, "meta": item.meta})
            continue
        name = f"{i:03d}{content_type(item.value)[1]}"
        (tmp / name).write_bytes(item.value)
        manifest.append({"file": name, "meta": item.meta})
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _load(folder: Path, kind: str) -> list[Item]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return [
        Item(kind, m["text"] if "text" in m else (folder / m["file"]).read_bytes(), m["meta"])
        for m in manifest
    ]


def build(
    kinds: Sequence[str] = KINDS,
    n: int = 12,
    seed: int = 0,
    data_dir: Path = DATA_DIR,
    cache: Path = CACHE,
    progress: Callable[[str], None] | None = None,
) -> Corpus:
    """Every kind in ``kinds`` (``n`` items; :data:`FEWER` for the 48 MP kind), from the cache
    ``<cache>/v<VERSION>-seed<seed>/<kind>-n<count>/`` or generated into it.

    Raises:
        FileNotFoundError: ``data_dir`` lacks MVSA-Single, CREMA-D or TweetEval.
        ValueError: an unknown kind.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind(s) {unknown}; known: {', '.join(KINDS)}")
    base = cache / f"v{VERSION}-seed{seed}"
    pool: _PhotoPool | None = None
    tweets: list[str] | None = None
    corpus: Corpus = {}
    for kind in kinds:
        count = min(n, FEWER.get(kind, n))
        folder = base / f"{kind}-n{count}"
        if (folder / "manifest.json").exists():
            corpus[kind] = _load(folder, kind)
            continue
        for need in ("mvsa_single/labels.csv", "crema_d/clips.csv", "tweeteval_sentiment/test.csv"):
            if not (data_dir / need).exists():
                raise FileNotFoundError(f"realistic corpus needs {data_dir / need} (pass --data-dir)")
        if progress:
            progress(f"building {kind} ({count} items) in {folder}")
        if FIELD[kind] == "image" and pool is None:
            pool = _PhotoPool(data_dir, seed)
        if tweets is None:
            tweets = _tweets(data_dir, seed)
        items: list[Item]
        if kind == "tweet":
            items = [Item(kind, t, {"characters": len(t)}) for t in tweets[:count]]
        elif kind == "thumb_jpeg":
            assert pool is not None
            items = _thumbs(pool, count)
        elif kind.startswith("phone_jpeg"):
            assert pool is not None
            size = (8064, 6048) if kind == "phone_jpeg_48mp" else (4032, 3024)
            rotated = kind.endswith("_rotated")
            upright = (size[1], size[0]) if rotated else size
            items = _phone_photos(pool, count, seed, kind, upright, rotated)
        elif kind == "screenshot_png":
            assert pool is not None
            items = _screenshots(pool, count, seed, tweets[count:])
        elif kind == "wav_16k":
            items = _wavs(data_dir, count, seed)
        else:
            items = _voice_notes(data_dir, count, seed, kind)
        _save(folder, items)
        corpus[kind] = items
    return corpus


def cached_or_buildable(
    kind: str, n: int, data_dir: Path = DATA_DIR, seed: int = 0, cache: Path = CACHE
) -> bool:
    """Whether :func:`build` can return ``kind`` with ``n`` items: cached (e.g. carried to a GPU host
    without the datasets) or ``data_dir`` holds the datasets."""
    count = min(n, FEWER.get(kind, n))
    if (cache / f"v{VERSION}-seed{seed}" / f"{kind}-n{count}" / "manifest.json").exists():
        return True
    needs = ("mvsa_single/labels.csv", "crema_d/clips.csv", "tweeteval_sentiment/test.csv")
    return all((data_dir / need).exists() for need in needs)


# --------------------------------------------------------------------------- requests
def request_samples(corpus: Corpus, request: str, count: int) -> list[Sample]:
    """``count`` requests of one request kind (:data:`REQUESTS`), item ``i % len`` of each of its kinds."""
    parts = REQUESTS[request]
    out: list[Sample] = []
    for i in range(count):
        fields: dict[str, Any] = {"text": None, "image": None, "audio": None}
        for kind in parts:
            items = corpus[kind]
            fields[FIELD[kind]] = items[i % len(items)].value
        out.append(Sample(fields["text"], fields["image"], fields["audio"]))
    return out


def mix_samples(
    mix: str, count: int, seed: int = 0, n: int = 12, data_dir: Path = DATA_DIR, cache: Path = CACHE
) -> list[Sample]:
    """``count`` requests of a mix (:data:`MIXES`: ``realistic`` or ``small``), request kinds drawn by weight
    with a seeded generator (the corpus is built on first use)."""
    weights = MIXES[mix]
    needed = sorted({k for r in weights for k in REQUESTS[r]}, key=KINDS.index)
    corpus = build(needed, n=n, seed=seed, data_dir=data_dir, cache=cache)
    rng = random.Random(f"{seed}:{mix}")
    drawn = rng.choices(list(weights), weights=list(weights.values()), k=count)
    pools = {r: request_samples(corpus, r, max(len(corpus[k]) for k in REQUESTS[r])) for r in weights}
    used = dict.fromkeys(weights, 0)
    out: list[Sample] = []
    for r in drawn:
        out.append(pools[r][used[r] % len(pools[r])])
        used[r] += 1
    return out


BOUNDARY = "realistic-benchmark-boundary-7d1f"


def multipart_body(sample: Sample) -> tuple[bytes, str]:
    """``(body, Content-Type)`` of a ``multipart/form-data`` ``POST /v1/predict`` carrying ``sample``'s
    fields (``text``; ``image`` / ``audio`` files with a sniffed type and file name)."""
    chunks: list[bytes] = []
    if sample.text is not None:
        chunks.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n".encode()
            + sample.text.encode()
            + b"\r\n"
        )
    for name, data in (("image", sample.image), ("audio", sample.audio)):
        if data is None:
            continue
        mime, ext = content_type(data)
        chunks.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}{ext}"\r\n'
            f"Content-Type: {mime}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={BOUNDARY}"


# --------------------------------------------------------------------------- report
def _range(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "-"
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return format(lo, fmt) if lo == hi else f"{lo:{fmt}}–{hi:{fmt}} (median {mid:{fmt}})"


def describe(corpus: Corpus) -> list[str]:
    """One line per kind: count, pixels / seconds and sample rate, MB (min–max, median)."""
    lines = []
    for kind, items in corpus.items():
        metas = [i.meta for i in items]
        mb = _range([m.get("bytes", 0) / 1e6 for m in metas], ".2f") + " MB"
        if FIELD[kind] == "text":
            what = "characters " + _range([float(m["characters"]) for m in metas], ".0f")
            mb = _range([len(str(i.value).encode()) / 1e3 for i in items], ".2f") + " kB"
        elif FIELD[kind] == "image":
            sizes = sorted({f"{m['width']}×{m['height']}" for m in metas})
            mp = metas[0]["width"] * metas[0]["height"] / 1e6
            stored = {
                f"{m.get('stored_width', m['width'])}×{m.get('stored_height', m['height'])}" for m in metas
            }
            faces = sum(1 for m in metas if m.get("faces", 0) > 0)
            if len(sizes) > 3:  # the thumbnails: many aspect ratios
                sides = [max(m["width"], m["height"]) for m in metas]
                most = max(m["width"] * m["height"] for m in metas) / 1e6
                what = f"{len(sizes)} sizes, longest side {_range(sides, '.0f')} px (≤ {most:.2f} MP)"
            else:
                what = f"{', '.join(sizes)} px ({mp:.1f} MP)"
            if stored != set(sizes):
                what += f", stored {', '.join(sorted(stored))} + EXIF Orientation {metas[0]['orientation']}"
            what += f", face found in {faces}/{len(items)}"
        else:
            rates = sorted({f"{m['sample_rate'] / 1000:g} kHz × {m['channels']} ch" for m in metas})
            what = f"{_range([m['seconds'] for m in metas], '.1f')} s, {', '.join(rates)}"
        lines.append(f"{kind:<24} {len(items):>3}  {what}; {mb}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.realistic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=12, help="items per kind (default 12; 48 MP: at most 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kinds", nargs="+", choices=KINDS, default=list(KINDS), metavar="KIND", help=", ".join(KINDS)
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="default ../shared/data")
    parser.add_argument("--cache", type=Path, default=CACHE, help="default benchmarks/results/raw/realistic")
    args = parser.parse_args()
    corpus = build(
        args.kinds, n=args.n, seed=args.seed, data_dir=args.data_dir, cache=args.cache, progress=print
    )
    print(f"cache: {args.cache / f'v{VERSION}-seed{args.seed}'}")
    print(f"{'kind':<24} {'n':>3}  sizes")
    for line in describe(corpus):
        print(line)


if __name__ == "__main__":
    main()
