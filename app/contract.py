"""The fused model contract shared by training, export and serving (see DESIGN.md, "Fused model contract").

Every constant here is part of the ONNX interface of ``models/<name>/<version>/model.onnx``; changing one
means a new model version.
"""

from typing import Final

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
#: Sample rate of the audio the log-mel front end expects, in Hz.
SAMPLE_RATE: Final[int] = 16_000
#: Number of mel bands M of ``audio_features`` [B, T, M].
N_MELS: Final[int] = 64
