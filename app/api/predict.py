"""``POST /v1/predict``: multipart/form-data (text field, image and audio files) or JSON with base64."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from app.api.deps import PredictorDep, SettingsDep, require_api_key
from app.api.disconnect import unless_disconnected
from app.api.errors import error_responses
from app.api.forms import FieldTooLargeError, TextPart, parse_form
from app.api.json_body import decode_base64, duplicate_keys, strip_bom, validate_json
from app.api.responses import predict_response, timing_headers
from app.config import Settings
from app.errors import ApiError, ErrorType, ServiceError
from app.preprocessing.pipeline import RawInput
from app.schemas import PredictRequest, PredictResponse

router = APIRouter()

_FIELDS = ("text", "image", "audio")

#: A blank 8×8 grey PNG (73 bytes): no face (``no_face``) and nothing for a scene expert
#: (``blank_image``), so the image counts for no model and the JSON examples with it answer 200 from
#: Swagger UI as their summaries say.
_EXAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAAEElEQVR42mNsYIAAJgaKGAAmCACQtTEKkQAAAABJRU5ErkJggg=="
)

# JSON comes first: Swagger UI opens "Try it out" on the first media type, and its examples are complete
# request bodies that validate against PredictRequest (tests/api/test_docs.py posts each one).
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "At least one modality. application/json: `text`, `image_base64`, `audio_base64`. "
        "multipart/form-data: `text` field, `image` and `audio` files.",
        "content": {
            "application/json": {
                "schema": PredictRequest.model_json_schema(),
                "examples": {
                    "positive_text": {
                        "summary": "Short positive text",
                        "value": {"text": "I absolutely love this, what a wonderful day!"},
                    },
                    "negative_text": {
                        "summary": "Short negative text",
                        "value": {"text": "This is awful, I hate it."},
                    },
                    "text_and_image": {
                        "summary": "Text and a base64 image (a blank 8×8 PNG: no face, no scene; it does not count)",  # noqa: E501
                        "value": {"text": "Not bad at all.", "image_base64": _EXAMPLE_PNG_BASE64},
                    },
                    "image_without_face": {
                        "summary": "Only a blank image (no face, no scene): no usable evidence, `label: null`",  # noqa: E501
                        "value": {"image_base64": _EXAMPLE_PNG_BASE64},
                    },
                },
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "text": {
                            "type": "string",
                            "description": "Text to classify.",
                            "example": "What a fantastic surprise, I am so happy!",
                        },
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "Image file (JPEG, MPO, PNG, GIF, WebP, BMP, TIFF, AVIF); "
                            "the detected face with the highest score (small faces discounted) is used.",
                        },
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "description": "Audio file (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, MP3, "
                            "M4A/AAC, WebM, AMR/3GP).",
                        },
                    },
                },
                # No ``encoding`` (contentType image/*, audio/*) here: with one, Swagger UI's "Try it out"
                # sends an empty file part for an empty file input, which is a 422 (tests/browser).
            },
        },
    }
}


async def _parse_json(request: Request) -> RawInput:
    body = await request.body()
    # JSON parsing and base64 decoding of a large body are CPU work: off the event loop.
    return await run_in_threadpool(_decode_json, body)


def _decode_json(body: bytes) -> RawInput:
    req = validate_json(PredictRequest, body)
    body = strip_bom(body)
    duplicates = duplicate_keys(body, PredictRequest.model_fields)
    if duplicates:
        raise ApiError(
            ErrorType.VALIDATION_ERROR, f"JSON field(s) sent more than once: {', '.join(duplicates)}"
        )
    return RawInput(
        text=req.text,
        image=decode_base64(req.image_base64, "image_base64"),
        audio=decode_base64(req.audio_base64, "audio_base64"),
    )


def _json_hint(request: Request) -> str:
    """A hint for the usual mistake behind a broken urlencoded body: JSON sent with curl's ``-d``/
    ``--data-binary`` default Content-Type (application/x-www-form-urlencoded)."""
    if request.headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded"):
        return "; to send JSON, set the header Content-Type: application/json"
    return ""


async def _parse_multipart(request: Request, settings: Settings) -> RawInput:
    try:
        # Strict parsers: a text field that is not valid in its charset is refused, not mangled.
        form = await parse_form(
            request,
            max_files=settings.max_parts,
            max_fields=settings.max_parts,
            max_part_size=settings.max_text_chars * 4 + 1024,
        )
    except FieldTooLargeError:
        # Only text parts have a size cap (4 bytes per character at most): say which limit, and why.
        raise ApiError(
            ErrorType.INPUT_TOO_LARGE,
            f"a form field is longer than the text limit of {settings.max_text_chars} characters "
            "(image and audio must be sent as file uploads)" + _json_hint(request),
        ) from None
    except (ServiceError, ClientDisconnect):
        # Typed (rendered by the one error handler): form errors, and the body limits that reading the
        # stream enforces (413 over max_body_bytes, 408 past body_timeout_s; app.api.middleware).
        raise
    except Exception:  # noqa: BLE001 - python-multipart parser errors on broken bodies
        raise ApiError(ErrorType.MALFORMED_REQUEST, "malformed multipart body") from None
    try:
        names = [name for name, _ in form.multi_items()]
        unknown = sorted({n for n in names if n not in _FIELDS})
        if unknown:
            shown = ", ".join(repr(n[:40]) for n in unknown[:5])
            raise ApiError(
                ErrorType.VALIDATION_ERROR,
                f"unknown form field(s) {shown}; allowed: text, image, audio" + _json_hint(request),
            )
        values: dict[str, TextPart | bytes | None] = {}
        for name in _FIELDS:
            items = form.getlist(name)
            if len(items) > 1:
                raise ApiError(ErrorType.VALIDATION_ERROR, f"form field {name!r} was sent more than once")
            if not items:
                values[name] = None
                continue
            item = items[0]
            if isinstance(item, UploadFile):
                data = await item.read()
                # A browser form with no file selected sends an empty part with an empty file name.
                values[name] = None if (not data and not item.filename) else data
            else:
                values[name] = item if item.raw else None
        text: str | TextPart | bytes | None = values["text"]
        if isinstance(text, TextPart):
            text = text.decode()  # FieldDecodeError: 422 invalid_input
        elif isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(ErrorType.INVALID_INPUT, "text is not valid UTF-8") from None
        image, audio = values["image"], values["audio"]
        for name, value in (("image", image), ("audio", audio)):
            if isinstance(value, TextPart):
                raise ApiError(ErrorType.VALIDATION_ERROR, f"{name} must be a file upload, not a text field")
        assert not isinstance(image, TextPart) and not isinstance(audio, TextPart)
        return RawInput(text=text, image=image, audio=audio)
    finally:
        await form.close()


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    responses=error_responses(400, 401, 408, 413, 415, 422, 429, 503, 504),
    tags=["predict"],
    summary="Sentiment probabilities for text, an image and/or an audio clip",
    description="Send at least one modality as multipart/form-data (`text` field, `image`/`audio` files) or "
    "as JSON (`text`, `image_base64`, `audio_base64`). The fused probabilities combine the present "
    "modalities; an image without a detectable face still counts through the scene expert (`image.face`: "
    "`used: false`, `reason: no_face`). When nothing in the "
    "request can be used, `label` is null, `reason` is `no_usable_evidence` and `probabilities_are_prior` "
    "is true.",
    openapi_extra=_OPENAPI_BODY,
    dependencies=[Depends(require_api_key)],
)
async def predict(
    request: Request, response: Response, predictor: PredictorDep, settings: SettingsDep
) -> PredictResponse:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raw = await _parse_multipart(request, settings)
    elif media_type == "application/json" or media_type.endswith("+json"):
        raw = await _parse_json(request)
    else:
        raise ApiError(
            ErrorType.UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be multipart/form-data, application/x-www-form-urlencoded or application/json",
        )
    if raw.empty:
        raise ApiError(ErrorType.MISSING_MODALITY, "send at least one of: text, image, audio")
    # The body is read: if the client goes away now, its work is cancelled (app/api/disconnect.py). Errors
    # are ServiceErrors carrying their type; the one handler in app/api/errors.py renders them.
    prediction = await unless_disconnected(request, predictor.predict(raw))
    assert predictor.model is not None
    result = predict_response(prediction, predictor.model, getattr(request.state, "request_id", None))
    response.headers.update(timing_headers(result))
    return result
