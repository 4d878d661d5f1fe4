"""Open Inference Protocol v2 (KServe / Triton REST) over the same predictor as ``/v1/predict``.

Routes: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``,
``.../ready`` and ``POST .../infer``. Inputs are BYTES tensors named ``text`` (UTF-8), ``image`` and
``audio`` (file bytes), shape ``[N]`` (N items, each its own request to the batcher); outputs are FP32
``probabilities`` [N, 3] (negative, neutral, positive), ``expert_probabilities`` [N, E, 3] and
``expert_mask`` [N, E] (contract expert order).

BYTES in JSON ``data`` are strings: ``text`` as is, ``image`` / ``audio`` base64. Triton's binary tensor
extension is supported both ways: an ``Inference-Header-Content-Length`` header splits the body into the
JSON header and the raw tensors (an input with ``parameters.binary_data_size`` reads its bytes there, each
BYTES element prefixed by its uint32 little-endian length); outputs asked with ``parameters.binary_data``
(or the request's ``binary_data_output``) come back raw after the JSON header, little-endian FP32.

Errors are ``{"error": "<message>"}``: 400 for protocol errors (unknown input or output, wrong datatype or
shape, bad JSON/base64/UTF-8), 404 for an unknown model or version, and every other
:class:`~app.errors.ServiceError` with its own status (415 not an image, 413 too large, 429, 503 ...).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import struct
import zlib
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from app import __version__
from app.api.deps import PredictorDep, SettingsDep, require_api_key
from app.api.disconnect import unless_disconnected
from app.config import Settings
from app.errors import ApiError, ErrorType, ServiceError
from app.inference.predictor import NotReadyError, Prediction, Predictor
from app.logging_setup import note_error_type
from app.preprocessing.pipeline import RawInput

logger = logging.getLogger("app.api.v2")

#: Outside the OpenAPI document: that promises the v1 error schema, and the v2 protocol is KServe's.
router = APIRouter(tags=["v2"], include_in_schema=False)

#: The request's input names (one per request field of /v1/predict).
INPUTS = ("text", "image", "audio")
#: Output names, in the order they are answered.
OUTPUTS = ("probabilities", "expert_probabilities", "expert_mask")
HEADER_LENGTH = "Inference-Header-Content-Length"


class ProtocolError(Exception):
    """A request that breaks the protocol (400) or names an unknown model/version (404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class InferTensor(BaseModel):
    """One input tensor of an infer request."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestedOutput(BaseModel):
    """One entry of the request's ``outputs`` list."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """``POST .../infer`` body (its JSON header when the binary extension is used)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor]
    outputs: list[RequestedOutput] | None = None


def v2_error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    """The protocol's error body ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# --------------------------------------------------------------------------- request decoding
def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of an infer body."""
    if header_length is None:
        return body, b""
    try:
        size = int(header_length)
    except ValueError:
        raise ProtocolError(f"{HEADER_LENGTH} is not an integer") from None
    if not 0 <= size <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} {size} is outside the body ({len(body)} bytes)")
    return body[:size], body[size:]


def _parse_request(header: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate(json.loads(header))
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ProtocolError(f"invalid infer request: {where}: {first['msg']}") from None
        raise ProtocolError("the infer request is not valid JSON") from None


def _unpack_bytes(raw: bytes, name: str) -> list[bytes]:
    """Triton's serialized BYTES tensor: each element as a uint32 little-endian length, then its bytes."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError(f"input {name}: truncated BYTES element length")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ProtocolError(f"input {name}: BYTES element longer than its binary data")
        items.append(raw[offset : offset + size])
        offset += size
    return items


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in data:
        out.extend(_flatten(value) if isinstance(value, list) else [value])
    return out


def _json_elements(tensor: InferTensor) -> list[bytes]:
    """The elements of a BYTES input sent as JSON strings (``image`` / ``audio``: base64)."""
    if tensor.data is None:
        raise ProtocolError(f"input {tensor.name} has neither data nor parameters.binary_data_size")
    items: list[bytes] = []
    for value in _flatten(tensor.data):
        if not isinstance(value, str):
            raise ProtocolError(f"input {tensor.name}: BYTES data must be strings")
        if tensor.name == "text":
            items.append(value.encode("utf-8"))
            continue
        try:
            items.append(base64.b64decode("".join(value.split()), validate=True))
        except (binascii.Error, ValueError):
            raise ProtocolError(f"input {tensor.name}: JSON BYTES data must be base64") from None
    return items


def _check_tensor(tensor: InferTensor, seen: dict[str, list[bytes]]) -> int:
    """The element count of one input tensor after checking its name, datatype and shape."""
    if tensor.name not in INPUTS:
        raise ProtocolError(f"unknown input {tensor.name!r}; inputs are: {', '.join(INPUTS)}")
    if tensor.name in seen:
        raise ProtocolError(f"input {tensor.name} sent more than once")
    if tensor.datatype != "BYTES":
        raise ProtocolError(f"input {tensor.name} must have datatype BYTES, not {tensor.datatype}")
    if any(d < 1 for d in tensor.shape) or sum(d > 1 for d in tensor.shape) > 1:
        raise ProtocolError(f"input {tensor.name} has shape {tensor.shape}: [N], one element per item")
    return int(np.prod(tensor.shape)) if tensor.shape else 1


def _input_values(request: InferRequest, binary: bytes, max_items: int) -> dict[str, list[bytes]]:
    """Input name → the bytes of its N elements (N items, the same for every input); the binary data is
    read in request order."""
    values: dict[str, list[bytes]] = {}
    offset = 0
    for tensor in request.inputs:
        count = _check_tensor(tensor, values)
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise ProtocolError(f"input {tensor.name}: binary_data_size beyond the binary data")
            items = _unpack_bytes(binary[offset : offset + size], tensor.name)
            offset += size
        else:
            items = _json_elements(tensor)
        if len(items) != count:
            raise ProtocolError(f"input {tensor.name}: shape {tensor.shape} but {len(items)} element(s)")
        values[tensor.name] = items
    if not values:
        raise ProtocolError(f"send at least one input of: {', '.join(INPUTS)}")
    counts = {len(items) for items in values.values()}
    if len(counts) > 1:
        raise ProtocolError(f"every input must have the same number of items; got {sorted(counts)}")
    if counts.pop() > max_items:
        raise ProtocolError(f"at most {max_items} items per request (SENTIMENT_MAX_BATCH_ITEMS)")
    return values


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("input text is not UTF-8") from None


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before ``Content-Encoding`` (gzip or deflate, as ``tritonclient`` sends with
    ``request_compression_algorithm``), at most ``limit`` bytes once decompressed.

    Raises:
        ProtocolError: another encoding, or a body that does not decompress (400).
        ApiError: more than ``limit`` bytes decompressed (413 ``payload_too_large``).
    """
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise ProtocolError(f"Content-Encoding {name!r} is not supported (gzip, deflate)")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if name == "gzip" else zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise ProtocolError(f"the body is not valid {name} data") from None
    if len(data) > limit:
        raise ApiError(ErrorType.PAYLOAD_TOO_LARGE, f"the decompressed body is over {limit} bytes")
    return data


def decode_infer(
    body: bytes, header_length: str | None, max_items: int
) -> tuple[InferRequest, list[RawInput]]:
    """An infer body → the parsed request and one :class:`RawInput` per item for the predictor.

    Raises:
        ProtocolError: 400 for anything the protocol does not allow.
    """
    header, binary = _split_body(body, header_length)
    request = _parse_request(header)
    values = _input_values(request, binary, max_items)
    count = len(next(iter(values.values())))
    texts = [_text(v) for v in values["text"]] if "text" in values else [None] * count
    images: list[bytes | None] = list(values["image"]) if "image" in values else [None] * count
    audios: list[bytes | None] = list(values["audio"]) if "audio" in values else [None] * count
    raws = [RawInput(text=t, image=i, audio=a) for t, i, a in zip(texts, images, audios, strict=True)]
    return request, raws


# --------------------------------------------------------------------------- response encoding
def output_arrays(predictions: list[Prediction]) -> dict[str, np.ndarray[Any, np.dtype[np.float32]]]:
    """The three FP32 outputs of N predictions, batch axis N (probabilities clipped to [0, 1] as in /v1)."""
    outs = [p.output for p in predictions]
    return {
        "probabilities": np.clip(np.stack([o.probabilities for o in outs]), 0.0, 1.0).astype(np.float32),
        "expert_probabilities": np.clip(np.stack([o.modality_probabilities for o in outs]), 0.0, 1.0).astype(
            np.float32
        ),
        "expert_mask": np.stack([o.modality_mask for o in outs]).astype(np.float32),
    }


def _wanted(request: InferRequest) -> list[tuple[str, bool]]:
    """(output name, as binary) for each output to answer."""
    default_binary = bool((request.parameters or {}).get("binary_data_output", False))
    if request.outputs is None:
        return [(name, default_binary) for name in OUTPUTS]
    wanted: list[tuple[str, bool]] = []
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise ProtocolError(f"unknown output {output.name!r}; outputs are: {', '.join(OUTPUTS)}")
        wanted.append((output.name, bool((output.parameters or {}).get("binary_data", default_binary))))
    return wanted


def encode_infer(
    request: InferRequest, predictions: list[Prediction], model_name: str, model_version: str
) -> Response:
    """The infer response: JSON, or the JSON header then the raw FP32 outputs (binary extension)."""
    arrays = output_arrays(predictions)
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary in _wanted(request):
        array = arrays[name]
        tensor: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
        if binary:
            raw = array.astype("<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = [float(v) for v in array.ravel()]
        outputs.append(tensor)
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request.id is not None:
        body["id"] = request.id
    header = json.dumps(body, separators=(",", ":")).encode()
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(chunks),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


# --------------------------------------------------------------------------- routes
def _model_ids(predictor: Predictor, name: str, version: str | None) -> tuple[str, str]:
    """(name, version) of the served model, or ProtocolError 404 for another name or version."""
    model = predictor.model
    if model is None:
        raise ProtocolError(predictor.not_ready_reason or "model not loaded", 503)
    if name != model.spec.name:
        raise ProtocolError(f"unknown model {name!r}; this server serves {model.spec.name!r}", 404)
    if version is not None and version != model.spec.version:
        raise ProtocolError(f"unknown version {version!r} of model {name!r}", 404)
    return model.spec.name, model.spec.version


def _model_metadata(predictor: Predictor, name: str, version: str | None) -> dict[str, Any]:
    model_name, model_version = _model_ids(predictor, name, version)
    assert predictor.model is not None
    experts = len(predictor.model.contract.experts)
    return {
        "name": model_name,
        "versions": [model_version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": n, "datatype": "BYTES", "shape": [-1]} for n in INPUTS],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "expert_probabilities", "datatype": "FP32", "shape": [-1, experts, 3]},
            {"name": "expert_mask", "datatype": "FP32", "shape": [-1, experts]},
        ],
        "parameters": {
            "labels": ["negative", "neutral", "positive"],
            "experts": list(predictor.model.contract.expert_names),
        },
    }


@router.get("/v2", summary="Server metadata (Open Inference Protocol v2)")
async def server_metadata() -> dict[str, Any]:
    """Name, version and protocol extensions of this server."""
    return {"name": "multimodal-sentiment", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live", summary="Liveness (v2)")
async def live() -> Response:
    """200 while the process serves requests."""
    return Response(status_code=200)


@router.get("/v2/health/ready", summary="Readiness (v2)")
async def ready(predictor: PredictorDep) -> Response:
    """200 once the model is loaded and warmed up, else 503."""
    return Response(status_code=200 if predictor.ready else 503)


@router.get("/v2/models/{name}", summary="Model metadata (v2)")
@router.get("/v2/models/{name}/versions/{version}", summary="Model metadata of a version (v2)")
async def model_metadata(
    request: Request, predictor: PredictorDep, settings: SettingsDep, name: str, version: str | None = None
) -> Response:
    """Name, versions, platform, inputs and outputs; 404 for another model or version (401 without the
    API key, like ``/v1/models``)."""
    try:
        await require_api_key(request, settings)
        return JSONResponse(_model_metadata(predictor, name, version))
    except ProtocolError as exc:
        return v2_error(exc.message, exc.status)
    except ServiceError as exc:
        return v2_error(exc.message, exc.status_code, exc.headers)


@router.get("/v2/models/{name}/ready", summary="Model readiness (v2)")
@router.get("/v2/models/{name}/versions/{version}/ready", summary="Model version readiness (v2)")
async def model_ready(predictor: PredictorDep, name: str, version: str | None = None) -> Response:
    """200 when this model (version) is ready, 503 when not yet, 404 for another model or version."""
    try:
        _model_ids(predictor, name, version)
    except ProtocolError as exc:
        return v2_error(exc.message, exc.status)
    return Response(status_code=200 if predictor.ready else 503)


async def _predict_all(predictor: Predictor, raws: list[RawInput]) -> list[Prediction]:
    """Every item through the predictor at once (the batcher batches them); the first error fails all."""
    results = await asyncio.gather(*(predictor.predict(raw) for raw in raws), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, Prediction)]


async def _infer(
    request: Request, predictor: Predictor, settings: Settings, name: str, version: str | None
) -> Response:
    model_name, model_version = _model_ids(predictor, name, version)
    body = await run_in_threadpool(
        decompress, await request.body(), request.headers.get("content-encoding"), settings.max_body_bytes
    )
    infer_request, raws = await run_in_threadpool(
        decode_infer, body, request.headers.get(HEADER_LENGTH), settings.max_batch_items
    )
    if not predictor.ready:
        raise NotReadyError(predictor.not_ready_reason or "model not ready")
    predictions = await unless_disconnected(request, _predict_all(predictor, raws))
    return encode_infer(infer_request, predictions, model_name, model_version)


@router.post("/v2/models/{name}/infer", summary="Inference (v2)")
@router.post("/v2/models/{name}/versions/{version}/infer", summary="Inference on a version (v2)")
async def infer(
    request: Request, predictor: PredictorDep, settings: SettingsDep, name: str, version: str | None = None
) -> Response:
    """Run one request through the same preprocessing, batcher and model as ``/v1/predict``.

    Errors are ``{"error": message}``: 400 protocol, 404 unknown model/version, else the
    ServiceError's own status (with its headers, e.g. ``Retry-After``)."""
    try:
        await require_api_key(request, settings)
        return await _infer(request, predictor, settings, name, version)
    except ProtocolError as exc:
        note_error_type(ErrorType.MALFORMED_REQUEST.value if exc.status == 400 else "not_found")
        return v2_error(exc.message, exc.status)
    except ServiceError as exc:
        note_error_type(exc.type.value)
        return v2_error(exc.message, exc.status_code, exc.headers)
