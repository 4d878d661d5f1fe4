"""The contract-v2 fused graph (DESIGN.md, "Fused model contract (v2)"): experts text, face, scene, audio.

Same product of experts with prior correction as :class:`app.training.fusion.FusedSentiment` (whose text,
face and audio branches it reuses unchanged), plus the scene expert (:class:`SceneClassifier`, its frozen
encoder inside the graph). Inputs ``input_ids``, ``attention_mask``, ``face``, ``scene`` (uint8
[B, S, S, 3] RGB), ``audio_features`` [B, T, 64] or (Whisper audio expert) ``waveform`` [B, N],
``audio_mask``, ``expert_mask`` [B, 4]; outputs ``probabilities`` [B, 3] and ``expert_probabilities``
[B, 4, 3].

The scene encoder runs only on the rows whose scene is present (plus one padding row so the batch is never
empty): a text-only batch does not pay for B MobileNetV2 passes. Absent rows' scene pixels are zeroed and
their logits replaced by the fusion's ``torch.where`` selection, so the fused output does not depend on
the dummy tensor.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import torch
from torch import nn

from app.contract import SCENE_SIZE
from app.training.fusion import AudioClassifier, FaceClassifier, FusedSentiment, Fusion, TextClassifier
from app.training.scene_model import SceneClassifier
from app.training.whisper_audio import WhisperAudio

#: The audio expert's inputs: log-mel frames (the CNN) or the speech samples (the Whisper expert, whose
#: log-mel front end is inside the graph).
LOGMEL_AUDIO_INPUTS: Final[tuple[str, str]] = ("audio_features", "audio_mask")
WAVEFORM_AUDIO_INPUTS: Final[tuple[str, str]] = ("waveform", "audio_mask")
V2_MASK_INPUT: Final[str] = "expert_mask"
V2_OUTPUT_NAMES: Final[tuple[str, str]] = ("probabilities", "expert_probabilities")


def v2_experts(
    audio_inputs: tuple[str, str] = LOGMEL_AUDIO_INPUTS,
) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Expert order of the v2 mask axis and per-expert output axis; each expert's request field and inputs."""
    return (
        ("text", "text", ("input_ids", "attention_mask")),
        ("face", "image", ("face",)),
        ("scene", "image", ("scene",)),
        ("audio", "audio", audio_inputs),
    )


def v2_input_names(audio_inputs: tuple[str, str] = LOGMEL_AUDIO_INPUTS) -> tuple[str, ...]:
    """Every v2 input in graph order: the experts' tensors, then the mask."""
    return (*(n for _, _, ins in v2_experts(audio_inputs) for n in ins), V2_MASK_INPUT)


def v2_dynamic_axes(audio_inputs: tuple[str, str] = LOGMEL_AUDIO_INPUTS) -> dict[str, dict[int, str]]:
    """Dynamic axes of the v2 inputs and outputs (batch everywhere, text length, audio frames / samples)."""
    audio_axis = "audio_samples" if audio_inputs == WAVEFORM_AUDIO_INPUTS else "audio_frames"
    return {
        "input_ids": {0: "batch", 1: "text_length"},
        "attention_mask": {0: "batch", 1: "text_length"},
        "face": {0: "batch"},
        "scene": {0: "batch"},
        **{name: {0: "batch", 1: audio_axis} for name in audio_inputs},
        V2_MASK_INPUT: {0: "batch"},
        "probabilities": {0: "batch"},
        "expert_probabilities": {0: "batch"},
    }


#: The layout with the log-mel CNN audio expert.
V2_EXPERTS: Final = v2_experts()
V2_INPUT_NAMES: Final = v2_input_names()
V2_DYNAMIC_AXES: Final = v2_dynamic_axes()


def run_present(module: nn.Module, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``module`` on the rows of ``x`` [B, ...] where ``present`` [B] bool is true, plus one padding row
    (row 0) so the batch is never empty → [B, 3]; absent rows get the padding row's output (the fusion
    ignores them). Exported as NonZero + Gather + CumSum (no data-dependent control flow)."""
    idx = torch.cat([torch.nonzero(present).reshape(-1), torch.zeros(1, dtype=torch.int64)])  # [K + 1]
    sub: torch.Tensor = module(x.index_select(0, idx))  # [K + 1, 3]
    count = present.to(torch.int64)
    pos = torch.where(present, torch.cumsum(count, 0) - 1, count.sum())
    return sub.index_select(0, pos)


class FusedSentimentV2(nn.Module):
    """Contract v2: text, face, scene and audio experts fused by :class:`Fusion` (4 experts)."""

    def __init__(
        self,
        text: TextClassifier,
        face: FaceClassifier,
        scene: SceneClassifier,
        audio: AudioClassifier,
        fusion: Fusion,
    ) -> None:
        super().__init__()
        self.v1 = FusedSentiment(text, face, audio, Fusion())  # branches only; its fusion is unused
        self.scene = scene
        self.fusion = fusion

    @property
    def audio_inputs(self) -> tuple[str, str]:
        """The audio expert's input names (:data:`WAVEFORM_AUDIO_INPUTS` for the Whisper expert)."""
        waveform = isinstance(self.v1.audio.net, WhisperAudio)
        return WAVEFORM_AUDIO_INPUTS if waveform else LOGMEL_AUDIO_INPUTS

    def branch_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        face: torch.Tensor,
        scene: torch.Tensor,
        audio_features: torch.Tensor,
        audio_mask: torch.Tensor,
        present: torch.Tensor,
    ) -> torch.Tensor:
        """Raw expert outputs [B, 4, 3] in :data:`V2_EXPERTS` order (absent inputs made safe first)."""
        v1 = self.v1.branch_logits(
            input_ids, attention_mask, face, audio_features, audio_mask, present[:, [0, 1, 3]]
        )
        ps = present[:, 2]
        safe = torch.where(ps[:, None, None, None], scene, torch.zeros_like(scene))
        zs = run_present(self.scene, safe, ps)
        return torch.stack([v1[:, 0], v1[:, 1], zs, v1[:, 2]], dim=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        face: torch.Tensor,
        scene: torch.Tensor,
        audio_features: torch.Tensor,
        audio_mask: torch.Tensor,
        expert_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        present = FusedSentiment.present_mask(expert_mask)
        logits = self.branch_logits(
            input_ids, attention_mask, face, scene, audio_features, audio_mask, present
        )
        out: tuple[torch.Tensor, torch.Tensor] = self.fusion(logits, present)
        return out


def with_scene(
    v1: FusedSentiment, scene: SceneClassifier, temperature: float, prior: np.ndarray
) -> FusedSentimentV2:
    """The v2 model from a calibrated v1 model and a calibrated scene expert: v1's temperatures, branch
    priors, weights and bias are kept (scene weight 1, i.e. product of experts for the new expert); the
    scene expert gets ``temperature`` and its training prior ``prior`` [3] (re-targeted to v1's prior π)."""
    f1 = v1.fusion
    fusion = Fusion(4)
    order = [0, 1, 3]  # v1 (text, image=face, audio) → v2 positions 0, 1, 3
    with torch.no_grad():
        for src, dst in enumerate(order):
            fusion.log_temperature[dst] = f1.log_temperature[src]
            fusion.weight[dst] = f1.weight[src]
            fusion.log_branch_prior[dst] = f1.log_branch_prior[src]
        fusion.log_temperature[2] = float(np.log(temperature))
        fusion.log_branch_prior[2] = torch.log(torch.as_tensor(prior, dtype=torch.float32))
        fusion.log_prior.copy_(f1.log_prior)
        fusion.bias.copy_(f1.bias)
    return FusedSentimentV2(v1.text, v1.face, scene, v1.audio, fusion).eval()


def example_inputs_v2(v1_example: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """v1 example inputs (:func:`app.training.export.example_inputs`) → v2: random ``scene`` uint8
    [B, S, S, 3] inserted after ``face``, ``modality_mask`` [B, 3] → ``expert_mask`` [B, 4] (scene
    present where the v1 image is). The audio inputs are the v1 example's (log-mel or waveform)."""
    rng = np.random.default_rng(seed)
    b = v1_example["input_ids"].shape[0]
    mm = v1_example["modality_mask"]
    audio = WAVEFORM_AUDIO_INPUTS if "waveform" in v1_example else LOGMEL_AUDIO_INPUTS
    out: dict[str, Any] = {}
    for name in v2_input_names(audio):
        if name == "scene":
            out[name] = rng.integers(0, 256, (b, SCENE_SIZE, SCENE_SIZE, 3), dtype=np.uint8)
        elif name == V2_MASK_INPUT:
            out[name] = np.stack([mm[:, 0], mm[:, 1], mm[:, 1], mm[:, 2]], axis=1).astype(np.float32)
        else:
            out[name] = v1_example[name]
    return out


def v2_config(config: dict[str, Any], scene_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """A v1 ``config.json`` dict → the v2 one (read by :meth:`app.contract.ModelContract.from_config`):
    ``experts`` (name, modality, inputs) instead of ``modalities``, the ``scene`` and ``expert_mask`` inputs
    instead of ``modality_mask``, v2 input/output names, and the scene preprocessing parameters."""
    inputs = {k: v for k, v in config.get("inputs", {}).items() if k != "modality_mask"}
    inputs["scene"] = {"dtype": "uint8", "shape": ["batch", SCENE_SIZE, SCENE_SIZE, 3]}
    audio = WAVEFORM_AUDIO_INPUTS if "waveform" in inputs else LOGMEL_AUDIO_INPUTS
    experts, names = v2_experts(audio), v2_input_names(audio)
    inputs[V2_MASK_INPUT] = {"dtype": "float32", "shape": ["batch", len(experts)]}
    out = {k: v for k, v in config.items() if k != "modalities"}
    out.update(
        contract_version=2,
        experts=[{"name": n, "modality": m, "inputs": list(ins)} for n, m, ins in experts],
        inputs={n: inputs[n] for n in names if n in inputs},
        mask_input=V2_MASK_INPUT,
        input_names=list(names),
        output_names=list(V2_OUTPUT_NAMES),
    )
    pre = dict(out.get("preprocessing", {}))
    pre["scene"] = {
        "size": SCENE_SIZE,
        "crop": "central square (shorter side), app.preprocessing.scene.scene_pixels",
        "resize": "bilinear (Pillow, antialiased), reducing_gap 3.0",
        "dtype": "uint8 RGB; ImageNet mean/std normalisation inside the graph",
    }
    out["preprocessing"] = pre
    if scene_metrics is not None:
        out.setdefault("metrics", {})["scene"] = scene_metrics
    return out
