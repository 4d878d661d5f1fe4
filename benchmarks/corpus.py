"""Request corpus built once from ``../shared/data`` and cached in ``benchmarks/results/raw/corpus``.

* text: MVSA-Single tweets (``mvsa_single/labels.csv``).
* image: MVSA-Single JPEGs (longest side ≤ 256 px) in which the service's own face detector
  (:func:`app.preprocessing.face.face_input`) finds a face, so the image modality is really
  present and the face branch runs.
* audio: CREMA-D Ogg/Opus clips decoded with soundfile and re-written as 16-bit PCM WAV at 16 kHz (what a
  typical client uploads).

Nothing here is committed: the cache folder is gitignored (data licences, shared/data/README.md).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

MIXES: tuple[str, ...] = ("text", "image", "audio", "all")


@dataclass(frozen=True)
class Sample:
    """One request's raw content (absent modality = None)."""

    text: str | None
    image: bytes | None
    audio: bytes | None

    def json_body(self) -> bytes:
        """``application/json`` body of ``POST /v1/predict``: ``{"text", "image_base64", "audio_base64"}``."""
        payload: dict[str, str] = {}
        if self.text is not None:
            payload["text"] = self.text
        if self.image is not None:
            payload["image_base64"] = base64.b64encode(self.image).decode("ascii")
        if self.audio is not None:
            payload["audio_base64"] = base64.b64encode(self.audio).decode("ascii")
        return json.dumps(payload).encode()


def _wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def build(
    data_dir: Path, cache: Path, n: int = 64, seed: int = 0, *, synthesise_ok: bool = True
) -> dict[str, list[Sample]]:
    """Return ``n`` samples per mix (text / image / audio / all), building the file cache on first use.

    Without the datasets (e.g. on a GPU machine that only has the repository) the cache is synthesised:
    fixed sentences, the face photos scikit-image ships (``astronaut``, ``lfw_subset``) when it is
    installed, and harmonic tones in noise.

    Raises:
        FileNotFoundError: if ``data_dir`` lacks the datasets and ``synthesise_ok`` is False.
    """
    cache.mkdir(parents=True, exist_ok=True)
    texts_file = cache / "texts.json"
    img_dir, wav_dir = cache / "images", cache / "audio"
    if not texts_file.exists():
        mvsa, crema = data_dir / "mvsa_single", data_dir / "crema_d"
        if not (mvsa / "labels.csv").exists() or not (crema / "clips.csv").exists():
            if not synthesise_ok:
                raise FileNotFoundError(
                    f"benchmark corpus needs {mvsa}/labels.csv and {crema}/clips.csv (pass --data-dir)"
                )
            _synthesise(cache, n, seed)
            return build(data_dir, cache, n, seed, synthesise_ok=False)
        from app.preprocessing.face import face_input

        rng = random.Random(seed)
        with open(mvsa / "labels.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        rng.shuffle(rows)
        texts = [r["text"] for r in rows[: 4 * n] if r["text"].strip()][:n]
        img_dir.mkdir(exist_ok=True)
        found = 0
        for r in rows:
            path = mvsa / r["image"]
            try:
                with Image.open(path) as im:
                    face, _ = face_input(im.convert("RGB"))
            except OSError:
                continue
            if face is not None:
                (img_dir / f"{found:03d}.jpg").write_bytes(path.read_bytes())
                found += 1
                if found == n:
                    break
        with open(crema / "clips.csv", newline="", encoding="utf-8") as fh:
            clips = list(csv.DictReader(fh))
        rng.shuffle(clips)
        wav_dir.mkdir(exist_ok=True)
        for i, c in enumerate(clips[:n]):
            wave, sr = sf.read(crema / c["file"], dtype="float32")
            (wav_dir / f"{i:03d}.wav").write_bytes(_wav_bytes(wave, sr))
        texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    texts = json.loads(texts_file.read_text(encoding="utf-8"))
    images = [p.read_bytes() for p in sorted(img_dir.glob("*.jpg"))]
    audios = [p.read_bytes() for p in sorted(wav_dir.glob("*.wav"))]
    if not images or not audios or not texts:
        raise RuntimeError(f"corpus cache {cache} is incomplete; delete it and rerun")
    mixes: dict[str, list[Sample]] = {m: [] for m in MIXES}
    for i in range(n):
        t, im, au = texts[i % len(texts)], images[i % len(images)], audios[i % len(audios)]
        mixes["text"].append(Sample(t, None, None))
        mixes["image"].append(Sample(None, im, None))
        mixes["audio"].append(Sample(None, None, au))
        mixes["all"].append(Sample(t, im, au))
    return mixes


_SENTENCES = (
    "I absolutely love this, best day ever!",
    "This is the worst service I have ever experienced.",
    "The meeting is at three o'clock in room twelve.",
    "Not bad at all, although the ending was a bit slow and predictable.",
    "I can't believe they cancelled the show, I'm so disappointed and angry.",
    "What a beautiful morning at the beach with friends #sunshine",
    "The package arrived yesterday.",
    "Honestly the food was cold, the staff rude, and we waited an hour.",
)


def _synthesise(cache: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img_dir, wav_dir = cache / "images", cache / "audio"
    img_dir.mkdir(parents=True, exist_ok=True)
    wav_dir.mkdir(parents=True, exist_ok=True)
    faces: list[np.ndarray] = []
    try:
        from skimage import data as skdata

        faces = [skdata.astronaut(), *[np.stack([f] * 3, -1) for f in skdata.lfw_subset()[:40]]]
    except ImportError:
        pass
    for i in range(n):
        if faces:
            arr = faces[i % len(faces)]
            arr = (arr * 255).astype(np.uint8) if arr.dtype != np.uint8 else arr
        else:
            arr = rng.integers(0, 255, (192, 160, 3), dtype=np.uint8)
        buf = io.BytesIO()
        img = Image.fromarray(arr).convert("RGB")
        if faces:  # lfw_subset crops are 25 px: upscale so the detector's 24-px minimum face fits
            img = img.resize((256, round(256 * img.height / img.width)), Image.Resampling.BICUBIC)
        img.save(buf, "JPEG", quality=90)
        (img_dir / f"{i:03d}.jpg").write_bytes(buf.getvalue())
        dur, f0 = rng.uniform(1.5, 3.5), rng.uniform(100, 250)
        t = np.arange(int(dur * 16000)) / 16000
        wave = sum(
            0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 5)
        ) + 0.02 * rng.standard_normal(t.size)
        (wav_dir / f"{i:03d}.wav").write_bytes(_wav_bytes(np.asarray(wave, np.float32), 16000))
    texts = [f"{_SENTENCES[i % len(_SENTENCES)]} ({i})" for i in range(n)]
    (cache / "texts.json").write_text(json.dumps(texts), encoding="utf-8")


def random_shapes(cache: Path, count: int, max_audio_s: float, seed: int = 1) -> list[Sample]:
    """``count`` requests of random text lengths (1–400 words), image sizes (32–4000 px) and audio durations
    (0.5 s – ``max_audio_s``), each modality present with probability 0.7 (at least one).

    All three are drawn log-uniformly, so every octave — hence every audio length bucket (1, 2, 4, 8, 16,
    30 s) and text-length step of the service — gets about the same share of requests, instead of most
    requests landing in the longest bucket (uniform durations make 30-s clips the common case and the run
    5× longer without covering more shapes).

    A pool of 48 images and 48 clips is generated (and cached) and drawn from, so the client does not spend
    the benchmark encoding 4000-px JPEGs.
    """
    rng = random.Random(seed)
    pool = cache / f"random-shapes-v2-{max_audio_s:g}s"
    if not pool.exists():
        pool.mkdir(parents=True)
        base_imgs = sorted((cache / "images").glob("*.jpg"))
        nprng = np.random.default_rng(seed)
        for i in range(48):
            side = int(round(np.exp(rng.uniform(np.log(32), np.log(4000)))))
            with Image.open(base_imgs[i % len(base_imgs)]) as im:
                aspect = rng.uniform(0.6, 1.6)
                w, h = max(32, min(4000, int(side * aspect))), side
                buf = io.BytesIO()
                im.convert("RGB").resize((w, h), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=85)
            (pool / f"img{i:02d}.jpg").write_bytes(buf.getvalue())
            dur = float(np.exp(rng.uniform(np.log(0.5), np.log(max_audio_s))))
            sr = rng.choice([8000, 16000, 44100, 48000])
            t = np.arange(int(dur * sr)) / sr
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * nprng.standard_normal(t.size)
            (pool / f"wav{i:02d}.wav").write_bytes(_wav_bytes(wave.astype(np.float32), sr))
    images = [p.read_bytes() for p in sorted(pool.glob("img*.jpg"))]
    audios = [p.read_bytes() for p in sorted(pool.glob("wav*.wav"))]
    words = " ".join(json.loads((cache / "texts.json").read_text(encoding="utf-8"))).split()
    out = []
    for _ in range(count):
        present = [rng.random() < 0.7 for _ in range(3)]
        if not any(present):
            present[rng.randrange(3)] = True
        n_words = round(np.exp(rng.uniform(0.0, np.log(400))))
        text = " ".join(rng.choice(words) for _ in range(n_words)) if present[0] else None
        out.append(
            Sample(
                text, rng.choice(images) if present[1] else None, rng.choice(audios) if present[2] else None
            )
        )
    return out
