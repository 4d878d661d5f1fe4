"""Response assembly: a :class:`~app.inference.predictor.Prediction` and the model → the JSON schemas.

Driven by the model contract: each request field's result merges its decoded facts, the facts of the
experts that read it, whether any of them was used (and why not), and the first used expert's
probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.config import Settings
from app.contract import LABELS, MAX_TEXT_TOKENS
from app.inference.model import InferenceModel
from app.inference.predictor import Prediction
from app.schemas import (
    Modalities,
    ModelInfo,
    ModelInput,
    ModelRef,
    PredictResponse,
    Probabilities,
    Timings,
)


def probabilities(vec: npt.NDArray[np.float32]) -> Probabilities:
    """float32 [3] in ``LABELS`` order → :class:`Probabilities` (clipped to [0, 1])."""
    return Probabilities(**{label: float(np.clip(v, 0.0, 1.0)) for label, v in zip(LABELS, vec, strict=True)})


def _facts(value: Any) -> dict[str, Any]:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else {}


def modality_results(prediction: Prediction, model: InferenceModel) -> Modalities:
    """One result per request field that was sent (``used``, ``reason``, ``probabilities`` + facts)."""
    out, item = prediction.output, prediction.item
    results: dict[str, dict[str, Any]] = {}
    for modality, facts in item.modalities.items():
        fields = _facts(facts)
        used: list[int] = []
        reasons: list[str] = []
        for index, expert in enumerate(model.contract.experts):
            part = item.experts.get(expert.name)
            if expert.modality != modality or part is None:
                continue
            fields.update(_facts(part.facts))
            if out.modality_mask[index]:
                used.append(index)
            elif part.reason:
                reasons.append(part.reason)
        results[modality] = {
            **fields,
            "used": bool(used),
            "reason": None if used else (reasons[0] if reasons else "not_used"),
            "probabilities": probabilities(out.modality_probabilities[used[0]]) if used else None,
        }
    return Modalities.model_validate(results)


def predict_response(
    prediction: Prediction, model: InferenceModel, request_id: str | None
) -> PredictResponse:
    """The body of a successful ``POST /v1/predict``."""
    fused = prediction.output.probabilities
    return PredictResponse(
        label=LABELS[int(np.argmax(fused))],  # type: ignore[arg-type]
        probabilities=probabilities(fused),
        modalities=modality_results(prediction, model),
        model=ModelRef(
            name=model.spec.name,
            version=model.spec.version,
            execution_provider=model.loaded.execution_provider,
        ),
        timings=Timings(
            preprocess_ms=round(prediction.preprocess_ms, 3),
            queue_ms=round(prediction.queue_ms, 3),
            inference_ms=round(prediction.inference_ms, 3),
            total_ms=round(prediction.total_ms, 3),
            batch_size=prediction.batch_size,
        ),
        request_id=request_id,
    )


def timing_headers(response: PredictResponse) -> dict[str, str]:
    """``X-Preprocess-Time-Ms``, ``X-Queue-Time-Ms``, ``X-Inference-Time-Ms`` (ms) and ``X-Batch-Size``."""
    t = response.timings
    return {
        "X-Preprocess-Time-Ms": f"{t.preprocess_ms:.3f}",
        "X-Queue-Time-Ms": f"{t.queue_ms:.3f}",
        "X-Inference-Time-Ms": f"{t.inference_ms:.3f}",
        "X-Batch-Size": str(t.batch_size),
    }


def model_info(model: InferenceModel, settings: Settings, audio_buckets: list[int]) -> ModelInfo:
    """What ``/v1/models`` reports for the served model."""
    inputs, outputs = model.describe()
    loaded = model.loaded
    return ModelInfo(
        name=model.spec.name,
        version=model.spec.version,
        labels=list(LABELS),
        inputs=[ModelInput(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in inputs],
        outputs=[ModelInput(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in outputs],
        execution_provider=loaded.execution_provider,
        active_providers=list(loaded.active_providers),
        requested_providers=list(loaded.requested_providers),
        max_batch_size=settings.max_batch_size,
        max_text_tokens=MAX_TEXT_TOKENS,
        audio_buckets_frames=list(audio_buckets),
    )
