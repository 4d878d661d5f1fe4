"""Request and response models of the HTTP API (pydantic v2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
        "on English only; see `language`); null when used.",
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


class ImageResult(BaseModel):
    used: bool = Field(description="False when no face was found: the image then does not count.")
    probabilities: Probabilities | None = Field(description="Face branch probabilities (largest face).")
    reason: str | None = Field(
        default=None, description="Why this modality did not count (e.g. `no_face`); null when used."
    )
    faces: int = Field(description="Number of faces detected; only the largest one is classified.")
    face_box: FaceBoxModel | None = Field(description="Box of the face that was classified.")
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
    format: str = Field(description="Container/codec detected from the bytes.")


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


class PredictResponse(BaseModel):
    label: Label = Field(description="Most probable class of the fused prediction.")
    probabilities: Probabilities = Field(description="Fused probabilities over the present modalities.")
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
