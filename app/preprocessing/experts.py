"""The expert registry of preprocessing: per request field a decoder, per expert a prepare function.

A new kind of evidence means: a prepare function here (decoded modality → :class:`ExpertInput`), an entry in
:data:`DEFAULT_EXPERTS` (or an ``experts=`` mapping given to the pipeline), the expert in the model's
``config.json`` (:class:`app.contract.ModelContract`), and a training branch. Nothing else in the service
names experts: collation, validation and response assembly iterate over the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image
from tokenizers import Tokenizer

from app.preprocessing.audio import DecodedAudio, decode_audio, log_mel
from app.preprocessing.errors import InputTooLargeError, PreprocessingError
from app.preprocessing.face import FaceBox, largest_face_input
from app.preprocessing.image import DecodedImage, decode_image
from app.preprocessing.scene import scene_pixels
from app.preprocessing.text import encode_text, normalize_text

V = TypeVar("V")

#: Reason an image's face expert reports when the detector found no face.
NO_FACE = "no_face"


# --------------------------------------------------------------------------- typed facts
@dataclass(frozen=True, slots=True)
class TextFacts:
    """What the response reports about a text field: ``characters`` after NFKC normalisation."""

    characters: int


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the response reports about an image: detected ``format`` (Pillow name), pixel size after EXIF
    orientation."""

    format: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class AudioFacts:
    """What the response reports about a clip: ``duration_s`` (s), source ``sample_rate`` (Hz),
    ``channels`` and the detected ``format``."""

    duration_s: float
    sample_rate: int
    channels: int
    format: str


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """Text expert facts: ``tokens`` given to the model (incl. [CLS]/[SEP]) and whether it was truncated."""

    tokens: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class FaceFacts:
    """Face expert facts: number of faces found and the box of the one classified (None if none)."""

    faces: int
    face_box: FaceBox | None


# --------------------------------------------------------------------------- decoded modalities
@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits: text characters, image pixels (width × height), audio seconds."""

    max_text_chars: int
    max_image_pixels: int
    max_audio_seconds: float


@dataclass(frozen=True, slots=True)
class Decoded(Generic[V]):
    """One request field decoded once (``value``: str / RGB Pillow image / 16 kHz waveform) + its facts."""

    value: V
    facts: Any


def decode_text_field(text: str, limits: Limits) -> Decoded[str]:
    """Check a text field's size and content.

    Raises:
        InputTooLargeError: more than ``limits.max_text_chars`` characters (413).
        PreprocessingError: empty or whitespace-only (422).
    """
    if len(text) > limits.max_text_chars:
        raise InputTooLargeError(
            f"text has {len(text)} characters, more than the limit of {limits.max_text_chars}"
        )
    normalized = normalize_text(text)
    if not normalized:
        raise PreprocessingError("text is empty or only whitespace")
    return Decoded(text, TextFacts(characters=len(normalized)))


def decode_image_field(data: bytes, limits: Limits) -> Decoded[Image.Image]:
    """Decode image bytes (:func:`app.preprocessing.image.decode_image`; its errors propagate)."""
    decoded: DecodedImage = decode_image(data, max_pixels=limits.max_image_pixels)
    return Decoded(decoded.image, ImageFacts(decoded.format, decoded.width, decoded.height))


def decode_audio_field(data: bytes, limits: Limits) -> Decoded[npt.NDArray[np.float32]]:
    """Decode audio bytes to 16 kHz mono (:func:`app.preprocessing.audio.decode_audio`; errors propagate)."""
    audio: DecodedAudio = decode_audio(data, max_seconds=limits.max_audio_seconds)
    facts = AudioFacts(
        duration_s=round(audio.duration_s, 4),
        sample_rate=audio.source_sample_rate,
        channels=audio.source_channels,
        format=audio.format,
    )
    return Decoded(audio.waveform, facts)


#: Request field → decoder (field value, limits) → :class:`Decoded`.
DECODERS: Mapping[str, Callable[[Any, Limits], Decoded[Any]]] = {
    "text": decode_text_field,
    "image": decode_image_field,
    "audio": decode_audio_field,
}


# --------------------------------------------------------------------------- experts
@dataclass(frozen=True, slots=True)
class Resources:
    """What prepare functions may use besides the decoded value (loaded once per model)."""

    tokenizer: Tokenizer


@dataclass(frozen=True, slots=True)
class ExpertInput:
    """One expert's part of one request.

    Attributes:
        tensors: ONNX input name → per-item array without the batch axis (dtype and shape as the
            contract's :class:`~app.contract.TensorSpec`), or None when the expert is not used.
        reason: why it is not used (e.g. ``no_face``); None when used.
        facts: typed facts the response reports (a dataclass), or None.
    """

    tensors: Mapping[str, npt.NDArray[Any]] | None
    reason: str | None = None
    facts: Any = None

    @property
    def used(self) -> bool:
        return self.tensors is not None


@dataclass(frozen=True, slots=True)
class Expert:
    """A registry entry: the request field (``modality``) an expert reads and its prepare function
    (decoded value, resources) → :class:`ExpertInput`."""

    modality: str
    prepare: Callable[[Any, Resources], ExpertInput] = field(repr=False)


def prepare_text(text: str, resources: Resources) -> ExpertInput:
    """Tokenise (:func:`app.preprocessing.text.encode_text`): ``input_ids`` int64 [L] and
    ``attention_mask`` int64 [L] of ones, L ≤ 128.

    Raises:
        PreprocessingError: nothing but [CLS]/[SEP] or only [UNK] tokens are left (e.g. emoji only).
    """
    encoded = encode_text(resources.tokenizer, text)
    unknown = resources.tokenizer.token_to_id("[UNK]")
    if encoded.num_tokens <= 2 or all(int(i) == unknown for i in encoded.input_ids[1:-1]):
        raise PreprocessingError("text contains no tokens the model can read")
    tensors = {
        "input_ids": encoded.input_ids,
        "attention_mask": np.ones(encoded.num_tokens, dtype=np.int64),
    }
    return ExpertInput(tensors, facts=TokenFacts(encoded.num_tokens, encoded.truncated))


def prepare_face(image: Image.Image, _: Resources) -> ExpertInput:
    """Detect faces and normalise the largest (:func:`app.preprocessing.face.largest_face_input`):
    ``face`` float32 [1, 64, 64] in [-1, 1]; not used (``no_face``) when none is found."""
    face, boxes = largest_face_input(image)
    facts = FaceFacts(faces=len(boxes), face_box=boxes[0] if boxes else None)
    if face is None:
        return ExpertInput(None, reason=NO_FACE, facts=facts)
    return ExpertInput({"face": face}, facts=facts)


def prepare_audio(waveform: npt.NDArray[np.float32], _: Resources) -> ExpertInput:
    """Log-mel frames (:func:`app.preprocessing.audio.log_mel`): ``audio_features`` float32 [T, 64] and
    ``audio_mask`` float32 [T] of ones."""
    features = log_mel(waveform)
    return ExpertInput(
        {"audio_features": features, "audio_mask": np.ones(features.shape[0], dtype=np.float32)}
    )


def prepare_scene(image: Image.Image, _: Resources) -> ExpertInput:
    """The whole image for the scene expert (:func:`app.preprocessing.scene.scene_pixels`): ``scene``
    uint8 [224, 224, 3] RGB; always used (every decoded image has a scene)."""
    return ExpertInput({"scene": scene_pixels(image)})


#: The experts this service knows, by the names a model's ``config.json`` uses.
DEFAULT_EXPERTS: Mapping[str, Expert] = {
    "text": Expert("text", prepare_text),
    "image": Expert("image", prepare_face),
    "face": Expert("image", prepare_face),  # contract v2's name of the face expert
    "scene": Expert("image", prepare_scene),
    "audio": Expert("audio", prepare_audio),
}
