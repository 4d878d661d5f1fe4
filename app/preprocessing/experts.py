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

from app.contract import SAMPLE_RATE, WAVEFORM_WINDOW_SAMPLES
from app.preprocessing.audio import DecodedAudio, decode_audio, log_mel
from app.preprocessing.errors import InputTooLargeError, PreprocessingError
from app.preprocessing.face import FaceBox, FaceDetector, face_input
from app.preprocessing.image import DecodedImage, decode_image, original_size
from app.preprocessing.language import LanguageGate
from app.preprocessing.scene import scene_content_reason, scene_pixels
from app.preprocessing.text import encode_text, normalize_text
from app.preprocessing.vad import VoiceActivityDetector, trim_to_speech

V = TypeVar("V")

#: Reason an image's face expert reports when the detector found no face.
NO_FACE = "no_face"
#: Reason the text expert reports for text in a language it was not trained on
#: (:class:`app.preprocessing.language.LanguageGate`).
UNSUPPORTED_LANGUAGE = "unsupported_language"
#: Reason the text expert reports for text whose every token is unknown to its tokenizer's vocabulary
#: (``[UNK]``: e.g. emoji only; the English WordPiece vocabulary has no emoji).
OUT_OF_VOCABULARY = "out_of_vocabulary"
#: Reason the audio expert reports when the voice activity detector found less than :data:`MIN_SPEECH_S`.
NO_SPEECH = "no_speech"
#: Reason the audio expert reports for a clip shorter than :data:`MIN_SPEECH_S` (nothing to judge).
TOO_SHORT = "too_short"
#: Least speech (s) the audio expert is used on. Silero VAD keeps no segment of 250 ms or less (+ 2 × 30 ms
#: padding). On the 54 generated non-speech clips of tests/e2e/test_vad_bars.py it found 0.0 s in every one
#: (also with its threshold lowered to 0.3); on the 1060 CREMA-D test clips the median is 1.56 s and 20 clips
#: (1.9 %) have under 0.5 s, at least 1 % of all at 0 s (``python -m benchmarks.vad_robustness --clips 0
#: --only NONE``); the 3 such clips among 120 were fear clips with no frame, or one, at probability ≥ 0.5.
MIN_SPEECH_S = 0.5


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
class SpeechFacts:
    """Audio expert facts: ``speech_s``, the seconds of speech the voice activity detector found (None
    when the clip was too short to run it)."""

    speech_s: float | None


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """Text expert facts: ``tokens`` of the text (incl. [CLS]/[SEP]; what the model reads when the text is
    used), whether it was truncated, and the language gate's ``language`` (ISO 639-1) and
    ``language_confidence`` (detector probability in [0, 1]); both None when no gate runs or the text has no
    letters."""

    tokens: int
    truncated: bool
    language: str | None = None
    language_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class FaceFacts:
    """Face expert facts: every face found (original pixels after EXIF orientation, highest score first)
    and the index of the one classified (None when none is found; rule:
    :func:`app.preprocessing.face.choice_key`)."""

    faces: tuple[FaceBox, ...]
    used_face: int | None

    def modality_summary(self) -> dict[str, Any]:
        """What the image result reports besides the face part (kept from the v1 response): ``faces``
        (count) and ``face_box`` (the face used, or None)."""
        box = self.faces[self.used_face] if self.used_face is not None else None
        return {"faces": len(self.faces), "face_box": _box(box) if box is not None else None}

    def part_fields(self) -> dict[str, Any]:
        """The face part's fields: ``faces`` (boxes with scores) and ``used_face`` (index or None)."""
        return {"faces": [{**_box(f), "score": f.score} for f in self.faces], "used_face": self.used_face}


def _box(face: FaceBox) -> dict[str, int]:
    return {"x": face.x, "y": face.y, "width": face.width, "height": face.height}


# --------------------------------------------------------------------------- decoded modalities
@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits: text characters, image pixels (width × height; ``max_jpeg_pixels`` for baseline
    JPEGs, which are decoded at reduced size), audio seconds."""

    max_text_chars: int
    max_image_pixels: int
    max_audio_seconds: float
    max_jpeg_pixels: int | None = None


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
    decoded: DecodedImage = decode_image(
        data, max_pixels=limits.max_image_pixels, max_jpeg_pixels=limits.max_jpeg_pixels
    )
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
    """What prepare functions may use besides the decoded value (loaded once per model).

    Attributes:
        tokenizer: the text expert's WordPiece tokenizer.
        vad: the voice activity detector of the audio expert.
        language_gate: the text expert's language gate (thread-safe, shared), or None: every text is used.
        face_detector: the face detector session (built with the model's execution providers by
            ``app.inference.startup.build_pipeline``); None → the process-wide CPU detector
            (:func:`app.preprocessing.face.default_detector`).
        audio_waveform: the model's audio expert reads the speech samples (input ``waveform``, log-mel front
            end inside the graph) instead of log-mel frames (``audio_features``).
    """

    tokenizer: Tokenizer
    vad: VoiceActivityDetector
    language_gate: LanguageGate | None = None
    face_detector: FaceDetector | None = None
    audio_waveform: bool = False


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
    ``attention_mask`` int64 [L] of ones, L ≤ 128. Text the language gate refuses
    (:meth:`app.preprocessing.language.LanguageGate.assess`) is not used: reason ``unsupported_language``,
    the detected language in the facts; text of [UNK] tokens only (e.g. emoji only) is not used either:
    reason :data:`OUT_OF_VOCABULARY` (the other fields of the request still count).

    Raises:
        PreprocessingError: nothing but [CLS]/[SEP] left after normalisation (e.g. zero-width characters).
    """
    encoded = encode_text(resources.tokenizer, text)
    gate = resources.language_gate
    verdict = gate.assess(text) if gate is not None else None
    facts = TokenFacts(
        encoded.num_tokens,
        encoded.truncated,
        language=verdict.language if verdict else None,
        language_confidence=verdict.confidence if verdict else None,
    )
    if verdict is not None and not verdict.supported:
        return ExpertInput(None, reason=UNSUPPORTED_LANGUAGE, facts=facts)
    if encoded.num_tokens <= 2:
        raise PreprocessingError("text contains no tokens the model can read")
    unknown = resources.tokenizer.token_to_id("[UNK]")
    if all(int(i) == unknown for i in encoded.input_ids[1:-1]):
        return ExpertInput(None, reason=OUT_OF_VOCABULARY, facts=facts)
    tensors = {
        "input_ids": encoded.input_ids,
        "attention_mask": np.ones(encoded.num_tokens, dtype=np.int64),
    }
    return ExpertInput(tensors, facts=facts)


def prepare_face(image: Image.Image, resources: Resources) -> ExpertInput:
    """Detect faces, choose one, align and normalise it (:func:`app.preprocessing.face.face_input`):
    ``face`` float32 [1, 64, 64] in [-1, 1]; not used (``no_face``) when none is found. The facts' boxes are
    in the file's pixels (:func:`app.preprocessing.image.original_size`), also when the image was decoded
    at reduced size."""
    face, found = face_input(image, resources.face_detector)
    faces = found.faces
    width, height = original_size(image)
    if (width, height) != image.size:  # decoded at reduced size: report boxes in the file's pixels
        faces = tuple(f.scaled(width / image.width, height / image.height) for f in faces)
    facts = FaceFacts(faces=faces, used_face=found.chosen)
    if face is None:
        return ExpertInput(None, reason=NO_FACE, facts=facts)
    return ExpertInput({"face": face}, facts=facts)


def prepare_audio(waveform: npt.NDArray[np.float32], resources: Resources) -> ExpertInput:
    """The clip's speech (:func:`app.preprocessing.vad.trim_to_speech`: leading/trailing non-speech dropped,
    long pauses cut) as the model's audio expert reads it: with ``resources.audio_waveform`` the samples,
    ``waveform`` float32 [N] at 16 kHz (N ≤ :data:`app.contract.WAVEFORM_WINDOW_SAMPLES`: the first 10 s),
    else log-mel frames (:func:`app.preprocessing.audio.log_mel`) ``audio_features`` float32 [T, 64]; and
    ``audio_mask`` float32 [N] / [T] of ones.

    Not used (reason ``too_short``) for a clip shorter than :data:`MIN_SPEECH_S`, nor (``no_speech``) when
    the voice activity detector finds less speech than that.
    """
    if waveform.size < MIN_SPEECH_S * SAMPLE_RATE:
        return ExpertInput(None, reason=TOO_SHORT, facts=SpeechFacts(speech_s=None))
    speech = trim_to_speech(resources.vad, waveform)
    facts = SpeechFacts(speech_s=round(speech.speech_s, 3))
    if speech.speech_s < MIN_SPEECH_S:
        return ExpertInput(None, reason=NO_SPEECH, facts=facts)
    if resources.audio_waveform:
        samples = np.ascontiguousarray(speech.waveform[:WAVEFORM_WINDOW_SAMPLES], dtype=np.float32)
        tensors = {"waveform": samples, "audio_mask": np.ones(samples.shape[0], dtype=np.float32)}
        return ExpertInput(tensors, facts=facts)
    features = log_mel(speech.waveform)
    return ExpertInput(
        {"audio_features": features, "audio_mask": np.ones(features.shape[0], dtype=np.float32)}, facts=facts
    )


def prepare_scene(image: Image.Image, _: Resources) -> ExpertInput:
    """The image's central square for the scene expert (:func:`app.preprocessing.scene.scene_pixels`):
    ``scene`` uint8 [224, 224, 3] RGB; not used, with the reason, when
    :func:`app.preprocessing.scene.scene_content_reason` finds a blank image or one without spatial
    structure (noise)."""
    pixels = scene_pixels(image)
    reason = scene_content_reason(pixels)
    if reason is not None:
        return ExpertInput(None, reason=reason)
    return ExpertInput({"scene": pixels})


#: The experts this service knows, by the names a model's ``config.json`` uses (a v1 config's ``image``
#: expert is the ``face`` expert: :data:`app.contract.V1_EXPERT_ALIASES`).
DEFAULT_EXPERTS: Mapping[str, Expert] = {
    "text": Expert("text", prepare_text),
    "face": Expert("image", prepare_face),
    "scene": Expert("image", prepare_scene),
    "audio": Expert("audio", prepare_audio),
}
