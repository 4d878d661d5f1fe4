"""Request bytes → one typed :class:`PreparedItem` (per-expert tensors, facts, not-used reasons).

Each request field is decoded once (:data:`app.preprocessing.experts.DECODERS`); then every expert of the
model's contract that reads that field prepares its tensors from the decoded value. Pure and blocking: the
service runs :meth:`PreprocessingPipeline.prepare` in a thread pool; training and the benchmarks call the
same functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy.typing as npt

from app.contract import ModelContract
from app.preprocessing.experts import (
    DECODERS,
    DEFAULT_EXPERTS,
    Decoded,
    Expert,
    ExpertInput,
    Limits,
    Resources,
)


@dataclass(frozen=True, slots=True)
class RawInput:
    """One request's fields as received (``None`` = not sent): text, image bytes, audio bytes."""

    text: str | None = None
    image: bytes | None = None
    audio: bytes | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def get(self, modality: str) -> Any:
        """The value of the field called ``modality`` (None if not sent or unknown)."""
        return getattr(self, modality, None)


@dataclass(frozen=True, slots=True)
class PreparedItem:
    """One request after preprocessing.

    Attributes:
        modalities: request field → its decoded facts (:class:`~app.preprocessing.experts.TextFacts`,
            ``ImageFacts``, ``AudioFacts``); only fields that were sent.
        experts: expert name → :class:`~app.preprocessing.experts.ExpertInput` for every expert whose field
            was sent (used or not, with its reason).
    """

    modalities: Mapping[str, Any] = field(default_factory=dict)
    experts: Mapping[str, ExpertInput] = field(default_factory=dict)

    def tensors(self, expert: str) -> Mapping[str, npt.NDArray[Any]] | None:
        """The expert's per-item tensors, or None when it is absent or not used."""
        part = self.experts.get(expert)
        return part.tensors if part is not None else None

    @classmethod
    def of(cls, **tensors: Mapping[str, npt.NDArray[Any]]) -> PreparedItem:
        """An item with the given experts' tensors and no facts (tests, warm-up, benchmarks):
        ``PreparedItem.of(audio={"audio_features": f, "audio_mask": m})``."""
        return cls(experts={name: ExpertInput(t) for name, t in tensors.items()})


class PreprocessingPipeline:
    """Decode the request fields and prepare each expert's input, as the model's contract lists them.

    Args:
        contract: the model's experts (:meth:`app.contract.ModelContract.from_config`).
        resources: the tokenizer and other per-model resources.
        limits: per-request size limits.
        experts: expert name → :class:`~app.preprocessing.experts.Expert`; every expert of ``contract``
            must be in it (default :data:`~app.preprocessing.experts.DEFAULT_EXPERTS`).

    Raises:
        KeyError: at construction, an expert of the contract has no registry entry or its field no decoder.
    """

    def __init__(
        self,
        contract: ModelContract,
        resources: Resources,
        limits: Limits,
        experts: Mapping[str, Expert] = DEFAULT_EXPERTS,
    ) -> None:
        missing = [e.name for e in contract.experts if e.name not in experts]
        if missing:
            raise KeyError(f"no preprocessing registered for expert(s) {missing}")
        undecodable = [m for m in contract.modalities if m not in DECODERS]
        if undecodable:
            raise KeyError(f"no decoder for request field(s) {undecodable}")
        self.contract = contract
        self.resources = resources
        self.limits = limits
        self._experts = {e.name: experts[e.name] for e in contract.experts}

    def prepare(self, raw: RawInput) -> PreparedItem:
        """Decode and preprocess one request (blocking), field by field in the contract's order.

        Raises:
            PreprocessingError: typed, per field (each carries its error type: 413 / 415 / 422); the first
                failing field in the contract's order.
        """
        fields_sent = self.fields(raw)
        return self.merge(fields_sent, [self.prepare_field(m, raw.get(m)) for m in fields_sent])

    def fields(self, raw: RawInput) -> list[str]:
        """The request fields that were sent and that the model reads, in the contract's order."""
        return [m for m in self.contract.modalities if raw.get(m) is not None]

    def prepare_field(self, modality: str, value: Any) -> tuple[Any, dict[str, ExpertInput]]:
        """Decode one request field and prepare the input of every expert that reads it (blocking;
        independent of the other fields, so fields can be prepared in parallel threads).

        Returns:
            (the field's decoded facts, expert name → :class:`ExpertInput`).

        Raises:
            PreprocessingError: typed (413 / 415 / 422).
        """
        decoded: Decoded[Any] = DECODERS[modality](value, self.limits)
        parts = {
            name: expert.prepare(decoded.value, self.resources)
            for name, expert in self._experts.items()
            if expert.modality == modality
        }
        return decoded.facts, parts

    @staticmethod
    def merge(modalities: list[str], prepared: list[tuple[Any, dict[str, ExpertInput]]]) -> PreparedItem:
        """One item from :meth:`prepare_field`'s results for ``modalities`` (same order)."""
        facts: dict[str, Any] = {}
        parts: dict[str, ExpertInput] = {}
        for modality, (field_facts, field_parts) in zip(modalities, prepared, strict=True):
            facts[modality] = field_facts
            parts.update(field_parts)
        return PreparedItem(facts, parts)
