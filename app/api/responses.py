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


def _part_fields(value: Any) -> dict[str, Any]:
    """An expert's facts as its part reports them (``part_fields()`` when the facts define it)."""
    method = getattr(value, "part_fields", None)
    return dict(method()) if callable(method) else _facts(value)


def _summary(value: Any) -> dict[str, Any]:
    """What an expert's facts add to its modality's own result (``modality_summary()``, else nothing)."""
    method = getattr(value, "modality_summary", None)
    return dict(method()) if callable(method) else {}


def prior(model: InferenceModel) -> npt.NDArray[np.float64]:
    """The class prior π the experts were calibrated to (``config.json`` ``prior``; uniform if absent),
    float64 [3] in ``LABELS`` order; the fused output equals it when no expert is used."""
    raw = model.spec.config.get("prior") if isinstance(model.spec.config, dict) else None
    vec = np.array([float(raw[k]) for k in LABELS] if isinstance(raw, dict) else [1.0] * len(LABELS))
    out: npt.NDArray[np.float64] = vec / vec.sum()
    return out


def combine(rows: list[npt.NDArray[np.float32]], pi: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Product of experts with prior correction of several experts' probabilities [3] (DESIGN.md, "Fusion
    without paired data"): p ∝ Π p_m / π^(k−1). One row is returned unchanged."""
    if len(rows) == 1:
        return rows[0]
    logp = np.sum([np.log(np.clip(r, 1e-12, 1.0)) for r in rows], axis=0) - (len(rows) - 1) * np.log(pi)
    p = np.exp(logp - logp.max())
    out: npt.NDArray[np.float32] = (p / p.sum()).astype(np.float32)
    return out


def modality_results(prediction: Prediction, model: InferenceModel) -> Modalities:
    """One result per request field that was sent: ``used`` (any of its experts), ``reason``, its
    ``probabilities`` (the used experts' combined by :func:`combine`) and facts; an expert whose name is not
    the field's (``face`` and ``scene`` read ``image``) also gets its own part under its name."""
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
            expert_used = bool(out.modality_mask[index])
            if expert.name == modality:
                fields.update(_facts(part.facts))
            else:
                fields.update(_summary(part.facts))
                fields[expert.name] = {
                    **_part_fields(part.facts),
                    "used": expert_used,
                    "reason": None if expert_used else (part.reason or "not_used"),
                    "probabilities": probabilities(out.modality_probabilities[index])
                    if expert_used
                    else None,
                }
            if expert_used:
                used.append(index)
            elif part.reason:
                reasons.append(part.reason)
        combined = combine([out.modality_probabilities[i] for i in used], prior(model)) if used else None
        results[modality] = {
            **fields,
            "used": bool(used),
            "reason": None if used else (reasons[0] if reasons else "not_used"),
            "probabilities": probabilities(combined) if combined is not None else None,
        }
    return Modalities.model_validate(results)


#: Top-level ``reason`` when no expert of the request was used (the label is then null).
NO_USABLE_EVIDENCE = "no_usable_evidence"


def predict_response(
    prediction: Prediction, model: InferenceModel, request_id: str | None
) -> PredictResponse:
    """The body of a successful ``POST /v1/predict``.

    When no expert was used (every expert's mask is 0: e.g. an image without a face and nothing else),
    the fused probabilities are the prior, so ``label`` is null, ``reason`` is ``no_usable_evidence`` and
    ``probabilities_are_prior`` is true; a tie is never reported as a class.
    """
    fused = prediction.output.probabilities
    evidence = bool(np.any(prediction.output.modality_mask))
    return PredictResponse(
        label=LABELS[int(np.argmax(fused))] if evidence else None,  # type: ignore[arg-type]
        reason=None if evidence else NO_USABLE_EVIDENCE,
        probabilities=probabilities(fused),
        probabilities_are_prior=not evidence,
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
