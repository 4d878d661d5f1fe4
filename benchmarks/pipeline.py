"""Preprocessing + batched ONNX run, shared by the in-process ceiling and every peer server.

Everything model-specific goes through the service's own functions in :mod:`app.preprocessing`
(``decode_image`` → ``face_input``; ``decode_audio`` → ``log_mel``, or the samples for a ``waveform``
audio expert; ``encode_text``) and its batch
collation (``app.inference.collate.collate``), so the peers and the ceiling do the service's work.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.contract import LABELS, WAVEFORM_WINDOW_SAMPLES
from app.inference.collate import collate
from app.preprocessing.audio import decode_audio, log_mel
from app.preprocessing.face import face_input
from app.preprocessing.image import decode_image
from app.preprocessing.pipeline import PreparedItem
from app.preprocessing.text import encode_text, load_tokenizer

#: Same limits as the service's defaults (app/config.py).
MAX_IMAGE_PIXELS = 40_000_000
MAX_AUDIO_SECONDS = 30.0


#: One request after preprocessing: the service's typed item (absent expert = not in it).
Features = PreparedItem


def find_model(model_dir: Path, provider: str = "CPUExecutionProvider") -> tuple[Path, Path]:
    """``(model.onnx, tokenizer.json)`` of the model folder ``model_dir`` (``<version>/model.onnx`` inside),
    resolved by the service's own repository code (highest version; ``variants`` in config.json, e.g. an
    fp16 graph for ``CUDAExecutionProvider``)."""
    from app.inference.repository import load_spec

    spec = load_spec(model_dir.parent, model_dir.name)
    return spec.file_for(provider), spec.tokenizer_file


class Pipeline:
    """ORT session + tokenizer; ``preprocess`` one request, ``run`` a padded batch."""

    def __init__(self, model_dir: Path, *, intra_op_threads: int = 0, tuned: bool = True) -> None:
        opts = ort.SessionOptions()
        if tuned:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = intra_op_threads
            opts.inter_op_num_threads = 1
        # CPU unless BENCH_GPU=1 (benchmarks/gpu_check.sh): then CUDA first, as the service does.
        providers = ["CPUExecutionProvider"]
        if os.environ.get("BENCH_GPU") == "1":
            if hasattr(ort, "preload_dlls"):
                ort.preload_dlls()
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        model, tok = find_model(model_dir, providers[0])
        self.model_file = model
        self.session = ort.InferenceSession(str(model), opts, providers=providers)
        self.tokenizer = load_tokenizer(tok)
        # fp16 variants take float16 inputs: cast the float32 feeds to the graph's declared types.
        self._dtypes = {
            i.name: (np.float16 if i.type == "tensor(float16)" else None) for i in self.session.get_inputs()
        }

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    def preprocess(self, text: str | None, image: bytes | None, audio: bytes | None) -> Features:
        enc = encode_text(self.tokenizer, text) if text else None
        face = None
        if image is not None:
            face, _ = face_input(decode_image(image, max_pixels=MAX_IMAGE_PIXELS).image)
        wave = decode_audio(audio, max_seconds=MAX_AUDIO_SECONDS).waveform if audio is not None else None
        if wave is not None and "waveform" in self._dtypes:  # the Whisper expert: samples, front end in graph
            wave = wave[:WAVEFORM_WINDOW_SAMPLES]
            mel = None
        else:
            mel = log_mel(wave) if wave is not None else None
            wave = None
        parts: dict[str, dict[str, np.ndarray]] = {}
        if enc is not None:
            parts["text"] = {"input_ids": enc.input_ids, "attention_mask": np.ones(enc.num_tokens, np.int64)}
        if face is not None:
            parts["face"] = {"face": face}
        if mel is not None:
            parts["audio"] = {"audio_features": mel, "audio_mask": np.ones(mel.shape[0], np.float32)}
        if wave is not None:
            parts["audio"] = {"waveform": wave, "audio_mask": np.ones(wave.shape[0], np.float32)}
        return PreparedItem.of(**parts)

    def preprocess_json(self, payload: dict[str, str]) -> Features:
        """Same as :meth:`preprocess` for the service's JSON body (``text``, ``image_base64``,
        ``audio_base64``)."""
        img, aud = payload.get("image_base64"), payload.get("audio_base64")
        return self.preprocess(
            payload.get("text"),
            base64.b64decode(img) if img else None,
            base64.b64decode(aud) if aud else None,
        )

    def feeds(self, batch: list[Features]) -> dict[str, np.ndarray]:
        """Pad a batch with the service's own collation (:func:`app.inference.collate.collate`): text to
        its longest sequence, audio to its longest clip (no length buckets: the tutorial way), masks mark
        real data."""
        return collate(batch)

    def run(self, batch: list[Features]) -> np.ndarray:
        """float32 [B, 3] fused probabilities."""
        feeds = {
            k: (v.astype(t) if (t := self._dtypes.get(k)) is not None else v)
            for k, v in self.feeds(batch).items()
        }
        return np.asarray(self.session.run(["probabilities"], feeds)[0], dtype=np.float32)


def to_json(probs: np.ndarray) -> dict[str, object]:
    """Minimal response body: label + probabilities."""
    p = [float(x) for x in probs]
    return {"label": LABELS[int(np.argmax(probs))], "probabilities": dict(zip(LABELS, p, strict=True))}
