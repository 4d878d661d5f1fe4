"""Seed files and mutations for the mutation fuzzing of the decoders (tests/robustness/test_mutation_fuzz.py).

Every seed is generated here (Pillow, soundfile, PyAV); a mutation is one of: random byte changes,
truncation, an insertion of random bytes, a header field set to 0x7fffffff. :func:`audio_outcome` sorts
what the decoder made of an audio mutant, against the seed it came from.

Extended run (counts per format and outcome)::

    python -m tests.robustness.mutation --mutations 500
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image

from app.preprocessing.audio import DecodedAudio, decode_audio, log_mel
from app.preprocessing.errors import PreprocessingError
from app.preprocessing.face import face_input
from app.preprocessing.image import decode_image
from tests.media import astronaut, image_bytes, pyav_bytes, sf_bytes, speech_with_pause, tone

#: Mutation kinds, in the order :func:`mutate` draws them.
KINDS = ("bytes", "truncate", "insert", "size_field")


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
    "amr_dtx": lambda: pyav_bytes(speech_with_pause(), 8_000, "amr", "libopencore_amrnb", {"dtx": "1"}),
    "3gp_amr_dtx": lambda: pyav_bytes(speech_with_pause(), 8_000, "3gp", "libopencore_amrnb", {"dtx": "1"}),
    "caf_pcm": lambda: sf_bytes(tone(0.5, 16_000), 16_000, "CAF", "PCM_16"),
    "caf_alac": lambda: pyav_bytes(tone(0.5, 44_100), 44_100, "caf", "alac"),
}
#: Containers that store no total length (Ogg, raw AMR): a cut file is a valid shorter file, and a changed
#: frame header (each raw AMR frame starts with one) re-parses the rest; nothing says what "complete" is.
NO_DECLARED_LENGTH = frozenset({"ogg_vorbis", "ogg_opus", "amr_dtx"})


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of ``data``: (kind, mutant)."""
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
    return KINDS[kind], bytes(b)


def mutants(seed_fn: Callable[[], bytes], salt: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` mutants of the seed, the same for the same ``salt`` (fixed random seed)."""
    rng = random.Random(f"mutation-{salt}")
    data = seed_fn()
    return [mutate(data, rng) for _ in range(count)]


@dataclass(frozen=True)
class Reference:
    """The seed: its bytes, decoded duration (s), and where its first audio packet starts (FFmpeg's demuxer;
    the bytes before it are headers)."""

    data: bytes
    duration_s: float
    payload_start: int


def reference(fmt: str) -> Reference:
    """Decode the unmutated seed of ``fmt``."""
    data = AUDIO_SEEDS[fmt]()
    with av.open(io.BytesIO(data)) as container:
        starts = [p.pos for p in container.demux(audio=0) if p.size > 0 and p.pos is not None and p.pos >= 0]
    return Reference(data, decode_audio(data, max_seconds=30).duration_s, min(starts))


def audio_outcome(fmt: str, mutant: bytes, decoded: DecodedAudio | None, ref: Reference) -> str:
    """Sort one audio mutant's result.

    ``refused`` (a typed 4xx error); ``full`` (at least the seed's duration, 50 ms or 10 % tolerance);
    ``header_changed`` (shorter, and a header byte before the first audio packet changed: sample rate,
    sample size, channel count, gapless padding... now say the same bytes are a shorter clip);
    ``undeclared_length`` (shorter, of a container that states no length, see :data:`NO_DECLARED_LENGTH`);
    ``partial`` (shorter for any other reason: a decoder stopped early or data went missing, and the clip
    was used as if complete; must never happen).
    """
    if decoded is None:
        return "refused"
    if decoded.duration_s >= ref.duration_s - max(0.05, 0.1 * ref.duration_s):
        return "full"
    first_change = next((i for i, (a, b) in enumerate(zip(ref.data, mutant, strict=False)) if a != b), None)
    if first_change is not None and first_change < ref.payload_start:
        return "header_changed"
    if fmt in NO_DECLARED_LENGTH:
        return "undeclared_length"
    return "partial"


def decode_audio_mutant(data: bytes) -> DecodedAudio | None:
    """Decode as the service does (through log-mel); None for a typed preprocessing error."""
    try:
        decoded = decode_audio(data, max_seconds=30)
        log_mel(decoded.waveform)
    except PreprocessingError:
        return None
    return decoded


def main(argv: list[str] | None = None) -> int:
    """Extended run: decode ``--mutations`` mutants per audio and image format and print outcome counts;
    any exception other than a typed preprocessing error (a 500 in the service) ends the run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutations", type=int, default=500)
    parser.add_argument("--salt", default="extended")
    args = parser.parse_args(argv)
    total: Counter[str] = Counter()
    partial = []
    for fmt in AUDIO_SEEDS:
        ref = reference(fmt)
        counts: Counter[str] = Counter()
        for i, (kind, mutant) in enumerate(mutants(AUDIO_SEEDS[fmt], f"{args.salt}-{fmt}", args.mutations)):
            outcome = audio_outcome(fmt, mutant, decode_audio_mutant(mutant), ref)
            counts[outcome] += 1
            if outcome == "partial":
                partial.append(f"{fmt}#{i} ({kind})")
        total.update(counts)
        sys.stdout.write(f"{fmt:12s} {dict(sorted(counts.items()))}\n")
    sys.stdout.write(f"{'all audio':12s} {dict(sorted(total.items()))} = {sum(total.values())} mutants\n")
    sys.stdout.write(f"partial decodes: {partial or 'none'}\n")
    images: Counter[str] = Counter()
    for fmt in IMAGE_SEEDS:
        for _, mutant in mutants(IMAGE_SEEDS[fmt], f"{args.salt}-{fmt}", args.mutations):
            try:
                face_input(decode_image(mutant, max_pixels=40_000_000).image)
                images["decoded"] += 1
            except PreprocessingError:
                images["refused"] += 1
    sys.stdout.write(f"{'all images':12s} {dict(sorted(images.items()))} = {sum(images.values())} mutants\n")
    return 1 if partial else 0


if __name__ == "__main__":
    raise SystemExit(main())
