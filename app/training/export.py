"""Export :class:`FusedSentiment` to ONNX, store large weights as float16, verify with ONNX Runtime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from torch.jit._trace import TracerWarning  # public as torch.jit.TracerWarning, which is not in its __all__

from app.contract import DYNAMIC_AXES, FACE_SIZE, N_MELS, OUTPUT_NAMES
from app.training.whisper_audio import WhisperLogMel

OPSET = 17
#: Tensors with at least this many elements are stored as float16 (see :func:`round_to_fp16`).
FP16_MIN_ELEMENTS = 1024


@torch.no_grad()
def round_to_fp16(model: torch.nn.Module) -> None:
    """Round every float parameter/buffer with ≥ ``FP16_MIN_ELEMENTS`` elements to the nearest float16 value
    (kept as float32). After this, storing those initializers as float16 in the ONNX file is lossless, so the
    shipped graph computes the same function as this PyTorch model. The Whisper log-mel front end's DFT basis
    and mel filters (:class:`~app.training.whisper_audio.WhisperLogMel`) stay float32: they are not
    float16-exact, and the cached training features of the audio expert were computed with them."""
    front_ends = [m for m in model.modules() if isinstance(m, WhisperLogMel)]
    kept = {id(t) for m in front_ends for t in [*m.parameters(), *m.buffers()]}
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and t.numel() >= FP16_MIN_ELEMENTS and id(t) not in kept:
            t.copy_(t.half().float())


def example_inputs(
    batch: int, text_len: int, frames: int, seed: int = 0, *, waveform: bool = False
) -> dict[str, np.ndarray]:
    """Random model inputs (``app.contract`` names, dtypes and shapes) for export and tests: ``batch`` rows,
    ``text_len`` tokens, ``frames`` log-mel frames (``audio_features`` float32 [B, frames, 64]); with
    ``waveform``, the Whisper audio expert's ``waveform`` float32 [B, frames * 160] (16 kHz samples)
    instead."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(batch, text_len)).astype(np.int64)
    ids[:, 0] = 101
    ids[:, -1] = 102
    if waveform:
        n = frames * 160
        audio = {"waveform": rng.normal(0, 0.1, size=(batch, n)).astype(np.float32)}
    else:
        n = frames
        audio = {"audio_features": rng.normal(-5, 3, size=(batch, frames, N_MELS)).astype(np.float32)}
    return {
        "input_ids": ids,
        "attention_mask": np.ones((batch, text_len), dtype=np.int64),
        "face": rng.uniform(-1, 1, size=(batch, 1, FACE_SIZE, FACE_SIZE)).astype(np.float32),
        **audio,
        "audio_mask": np.ones((batch, n), dtype=np.float32),
        "modality_mask": np.ones((batch, 3), dtype=np.float32),
    }


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    fp16_weights: bool = True,
    *,
    example: dict[str, np.ndarray] | None = None,
    output_names: tuple[str, ...] = OUTPUT_NAMES,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> None:
    """torch.onnx (TorchScript exporter, opset 17) with dynamic batch, text length and audio frames; then
    optionally move float16-exact large initializers to float16 storage with a Cast to float32.

    ``example`` (input name → array, in graph order; default :func:`example_inputs` of the v1 contract),
    ``output_names`` and ``dynamic_axes`` (default :data:`app.contract.DYNAMIC_AXES`) let the contract-v2
    model (:mod:`app.training.fusion_v2`) use the same export."""
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    feeds = example if example is not None else example_inputs(2, 16, 120)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) is chosen on purpose: it handles the dynamic text length
        # and audio frame axes of this graph directly; silence its deprecation notice and tracer warnings.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=list(feeds),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes if dynamic_axes is not None else DYNAMIC_AXES,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    m = onnx.load(str(path))
    if fp16_weights:
        m = fp16_storage(m)
    m.producer_name = "app.training.export"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


def fp16_storage(m: onnx.ModelProto) -> onnx.ModelProto:
    """Replace float32 initializers (≥ ``FP16_MIN_ELEMENTS`` elements, exactly representable in float16)
    by float16 initializers followed by ``Cast(to=FLOAT)`` nodes; the computation stays float32."""
    g = m.graph
    keep, casts = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= FP16_MIN_ELEMENTS:
            half = arr.astype(np.float16)
            if np.array_equal(half.astype(np.float32), arr):
                keep.append(numpy_helper.from_array(half, init.name + "__fp16"))
                casts.append(
                    helper.make_node(
                        "Cast",
                        [init.name + "__fp16"],
                        [init.name],
                        to=onnx.TensorProto.FLOAT,
                        name=init.name + "__cast",
                    )
                )
                continue
        keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    return m


def ort_session(path: Path) -> ort.InferenceSession:
    """An ONNX Runtime CPU session of the model at ``path`` (warnings and info silenced)."""

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@torch.no_grad()
def parity(model: torch.nn.Module, path: Path, cases: list[dict[str, np.ndarray]]) -> float:
    """Max |Δ probability| between ONNX Runtime (CPU) and PyTorch over both outputs and all ``cases``
    (each: input name → array, the graph's inputs; passed to the model in the graph's input order)."""
    sess = ort_session(path)
    names = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    worst = 0.0
    for feeds in cases:
        ref = model(*(torch.from_numpy(feeds[n]) for n in names))
        got = sess.run(outputs, feeds)
        for r, g in zip(ref, got, strict=True):
            worst = max(worst, float(np.abs(r.numpy() - g).max()))
    return worst
