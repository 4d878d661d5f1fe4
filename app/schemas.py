"""Request and response models of the HTTP API (pydantic v2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.config import JsonDict

from app.api.errors import ErrorDetail

Label = Literal["negative", "neutral", "positive"]


class PredictRequest(BaseModel):
    """JSON form of ``POST /v1/predict``: at least one of the three fields."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "I absolutely love this, what a wonderful day!"}]},
    )

    text: str | None = Field(default=None, description="Text to classify (UTF-8).")
    image_base64: str | None = Field(
        default=None, description="Image file bytes, base64 (a `data:...;base64,` prefix is accepted)."
    )
    audio_base64: str | None = Field(
        default=None, description="Audio file bytes, base64 (a `data:...;base64,` prefix is accepted)."
    )


class Probabilities(BaseModel):
    """Class probabilities; they sum to 1."""

    negative: float = Field(ge=0, le=1)
    neutral: float = Field(ge=0, le=1)
    positive: float = Field(ge=0, le=1)


class FaceBoxModel(BaseModel):
    """Face bounding box in pixels of the EXIF-oriented image: top-left corner, width, height."""

    x: int
    y: int
    width: int
    height: int


class TextResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "used": False,
                    "probabilities": None,
                    "reason": "unsupported_language",
                    "tokens": 25,
                    "truncated": False,
                    "characters": 28,
                    "language": "ar",
                    "language_confidence": 0.9999,
                }
            ]
        }
    )

    used: bool = Field(description="Whether the text branch contributed to the fused probabilities.")
    probabilities: Probabilities | None = Field(description="The text branch's own calibrated probabilities.")
    reason: str | None = Field(
        default=None,
        description="Why this modality did not count: `unsupported_language` (the text expert was trained "
        "on English only; see `language`), `out_of_vocabulary` (the tokenizer reads none of it, e.g. emoji "
        "only); null when used.",
    )
    tokens: int = Field(description="Tokens of the text incl. [CLS]/[SEP] (what the model reads when used).")
    truncated: bool = Field(description="True if the text had more tokens than the model maximum (128).")
    characters: int = Field(description="Characters after Unicode normalisation.")
    language: str | None = Field(
        default=None,
        description="Language detected by the language gate (ISO 639-1, e.g. `en`, `ar`); null when the "
        "gate is off or the text has no letters. Short or mixed Latin-script text is used as English even "
        "when another language is detected; the decision is `used` / `reason`.",
    )
    language_confidence: float | None = Field(
        default=None, ge=0, le=1, description="The detector's probability of `language` (0–1)."
    )


class DetectedFace(BaseModel):
    """One detected face: box in pixels of the EXIF-oriented image (top-left corner, width, height) and the
    detector's score in [0, 1]."""

    x: int
    y: int
    width: int
    height: int
    score: float = Field(ge=0, le=1, description="RetinaFace detection score.")


class ExpertPart(BaseModel):
    """One expert's share of a modality (an image has a face expert and, in models that have it, a scene
    expert)."""

    used: bool = Field(description="Whether this expert contributed to the fused probabilities.")
    reason: str | None = Field(
        default=None, description="Why this expert did not count (e.g. `no_face`); null when used."
    )
    probabilities: Probabilities | None = Field(
        default=None, description="This expert's own calibrated probabilities; null when not used."
    )


class FacePart(ExpertPart):
    """The face expert's part: every face found and which one was classified."""

    faces: list[DetectedFace] = Field(
        description="Every face the detector found, highest score first (empty: `reason` is `no_face`)."
    )
    used_face: int | None = Field(
        default=None,
        description="Index in `faces` of the face classified (highest score × size prior); null if none.",
    )


class ImageResult(BaseModel):
    used: bool = Field(description="Whether any expert of the image (face, scene) counted.")
    probabilities: Probabilities | None = Field(
        default=None,
        description="The image's probabilities: the used experts' probabilities combined (product of "
        "experts with prior correction); equal to the face part's when only the face counts.",
    )
    reason: str | None = Field(
        default=None, description="Why the image did not count (e.g. `no_face`); null when used."
    )
    faces: int = Field(default=0, description="Number of faces detected (= length of `face.faces`).")
    face_box: FaceBoxModel | None = Field(
        default=None, description="Box of the face that was classified (`face.faces[face.used_face]`)."
    )
    face: FacePart | None = Field(default=None, description="The face expert's part.")
    scene: ExpertPart | None = Field(
        default=None, description="The scene expert's part (null when the model has no scene expert)."
    )
    format: str = Field(description="Image format detected from the bytes.")
    width: int
    height: int


class AudioResult(BaseModel):
    used: bool = Field(
        description="False when the clip holds less than 0.5 s of speech (voice activity detection): the "
        "audio then does not count."
    )
    probabilities: Probabilities | None = Field(description="Audio branch probabilities (speech only).")
    reason: str | None = Field(
        default=None,
        description="Why this modality did not count: `no_speech` (less than 0.5 s of speech found) or "
        "`too_short` (the clip itself is shorter than 0.5 s); null when used.",
    )
    speech_s: float | None = Field(
        default=None,
        description="Seconds of speech the voice activity detector found; null when the clip was too short.",
    )
    duration_s: float = Field(description="Duration in seconds.")
    sample_rate: int = Field(description="Sample rate of the upload in Hz (resampled to 16000).")
    channels: int = Field(description="Channels of the upload (downmixed to mono).")
    format: str = Field(
        description="Container detected from the bytes, upper case: WAV, FLAC, OGG, MP3, MP4 (also M4A and "
        "3GP), WEBM (also Matroska), AMR, AAC (ADTS), CAF, ..."
    )


class Modalities(BaseModel):
    text: TextResult | None = None
    image: ImageResult | None = None
    audio: AudioResult | None = None


class ModelRef(BaseModel):
    name: str
    version: str
    execution_provider: str = Field(description="The ONNX Runtime provider actually active (verified).")


class Timings(BaseModel):
    """Milliseconds spent per stage of this request."""

    preprocess_ms: float = Field(description="Decoding and preprocessing (thread pool).")
    queue_ms: float = Field(description="Waiting in the batcher's queue.")
    inference_ms: float = Field(description="The batched ONNX Runtime call this request was part of.")
    total_ms: float = Field(description="From the start of preprocessing to the response.")
    batch_size: int = Field(description="Number of requests in that batched call.")


_P: JsonDict = {"negative": 0.02, "neutral": 0.08, "positive": 0.9}
_PRIOR: JsonDict = {"negative": 0.3333, "neutral": 0.3333, "positive": 0.3334}
_TIMINGS: JsonDict = {
    "preprocess_ms": 61.2,
    "queue_ms": 1.1,
    "inference_ms": 17.9,
    "total_ms": 80.4,
    "batch_size": 1,
}
_MODEL: JsonDict = {"name": "fused-sentiment", "version": "1", "execution_provider": "CPUExecutionProvider"}
#: Response examples in the OpenAPI schema (tests/api/test_docs.py validates them against this model).
PREDICT_RESPONSE_EXAMPLES: list[JsonValue] = [
    {
        "label": "positive",
        "reason": None,
        "probabilities": _P,
        "probabilities_are_prior": False,
        "modalities": {
            "image": {
                "used": True,
                "reason": None,
                "probabilities": _P,
                "faces": 2,
                "face_box": {"x": 1210, "y": 640, "width": 380, "height": 470},
                "face": {
                    "used": True,
                    "reason": None,
                    "probabilities": _P,
                    "faces": [
                        {"x": 1210, "y": 640, "width": 380, "height": 470, "score": 0.9991},
                        {"x": 3105, "y": 802, "width": 41, "height": 52, "score": 0.9213},
                    ],
                    "used_face": 0,
                },
                "format": "JPEG",
                "width": 4032,
                "height": 3024,
            }
        },
        "model": _MODEL,
        "timings": _TIMINGS,
        "request_id": "5f0c2a4e9b1d4c7f",
    },
    {
        "label": None,
        "reason": "no_usable_evidence",
        "probabilities": _PRIOR,
        "probabilities_are_prior": True,
        "modalities": {
            "image": {
                "used": False,
                "reason": "no_face",
                "probabilities": None,
                "faces": 0,
                "face_box": None,
                "face": {
                    "used": False,
                    "reason": "no_face",
                    "probabilities": None,
                    "faces": [],
                    "used_face": None,
                },
                "scene": {"used": False, "reason": "blank_image", "probabilities": None},
                "format": "PNG",
                "width": 8,
                "height": 8,
            }
        },
        "model": _MODEL,
        "timings": _TIMINGS,
        "request_id": "9a41d07c33e2485b",
    },
]


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": PREDICT_RESPONSE_EXAMPLES})

    label: Label | None = Field(
        default=None,
        description="Most probable class of the fused prediction; null when nothing in the request could be "
        "used (see `reason`).",
    )
    reason: str | None = Field(
        default=None,
        description="Why there is no label: `no_usable_evidence` when no expert was used (e.g. only a blank "
        "image, or only a recording without speech); null when there is a label.",
    )
    probabilities: Probabilities = Field(
        description="Fused probabilities over the used experts; the prior when `probabilities_are_prior`."
    )
    probabilities_are_prior: bool = Field(
        default=False,
        description="True when no expert was used: `probabilities` are then the class prior the experts were "
        "calibrated to, not evidence about this input.",
    )
    modalities: Modalities
    model: ModelRef
    timings: Timings
    request_id: str | None = None


class ModelInput(BaseModel):
    name: str
    dtype: str
    shape: list[int | str]


class ModelInfo(BaseModel):
    name: str
    version: str
    labels: list[str]
    inputs: list[ModelInput]
    outputs: list[ModelInput]
    execution_provider: str
    active_providers: list[str]
    requested_providers: list[str]
    max_batch_size: int
    max_text_tokens: int
    audio_buckets_frames: list[int]


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    model: str
    version: str
    execution_provider: str


class BatchItemResult(BaseModel):
    """One item's answer: its HTTP-equivalent ``status`` (200 with ``result``, else ``error``)."""

    status: int = Field(description="200, or the status /v1/predict would have answered for this item.")
    result: PredictResponse | None = Field(
        default=None, description="The /v1/predict body of this item; null on error."
    )
    error: ErrorDetail | None = Field(
        default=None, description="This item's error in the one error schema; null on success."
    )


class PredictBatchResponse(BaseModel):
    """Answer of ``POST /v1/predict/batch``: one result per item, in the order of the request."""

    results: list[BatchItemResult]
