"""Preprocessing + batched ONNX run, shared by the peer servers (and the ceiling's fallback engine).

Everything model-specific is the service's own code: the preprocessing pipeline the service builds for
the model (:func:`app.inference.startup.build_pipeline`: decoding with the service's limits, the face
detector, the scene pixels, the voice activity detector, the tokenizer and the language gate, as the
model's contract lists its experts) and its batch collation (:func:`app.inference.collate.collate` with
the model's contract), so the peers and the ceiling do the service's work. What differs is only how the
ONNX Runtime session is configured (``tuned``) and how requests reach it (each peer's server).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort

from app.contract import LABELS
from app.inference.collate import collate
from app.preprocessing.pipeline import PreparedItem, RawInput

#: One request after preprocessing: the service's typed item (absent or unused expert = not in it).
Features = PreparedItem

_ORT_FLOAT16 = "tensor(float16)"


def find_model(model_dir: Path, provider: str = "CPUExecutionProvider") -> tuple[Path, Path]:
    """``(model.onnx, tokenizer.json)`` of the model folder ``model_dir`` (``<version>/model.onnx`` inside),
    resolved by the service's own repository code (highest version; ``variants`` in config.json, e.g. an
    fp16 graph for ``CUDAExecutionProvider``)."""
    from app.inference.repository import load_spec

    spec = load_spec(model_dir.parent, model_dir.name)
    return spec.file_for(provider), spec.tokenizer_file


class Pipeline:
    """ORT session + the service's preprocessing for one model folder; ``preprocess`` one request, ``run``
    a padded batch.

    Args:
        model_dir: model folder (``<version>/model.onnx``, ``config.json``, ``tokenizer.json``).
        intra_op_threads: ORT intra-op threads when ``tuned`` (0 = ORT's default, all cores).
        tuned: False = default ``SessionOptions`` (the tutorial way, naive peer).

    Raises:
        app.inference.repository.ModelLoadError: the model folder, tokenizer or a detector cannot be
            loaded.
    """

    def __init__(self, model_dir: Path, *, intra_op_threads: int = 0, tuned: bool = True) -> None:
        from app.config import Settings
        from app.inference.repository import load_spec
        from app.inference.startup import build_pipeline
        from app.preprocessing.experts import DEFAULT_EXPERTS

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
        model_dir = Path(model_dir).resolve()
        # SENTIMENT_* settings (e.g. SENTIMENT_MODEL_VERSION, the limits) as the service reads them.
        settings = Settings(model_dir=model_dir.parent, model_name=model_dir.name, providers=providers)
        self.spec = load_spec(model_dir.parent, model_dir.name, settings.model_version)
        self.contract = self.spec.contract
        self.model_file = self.spec.file_for(providers[0])
        self.session = ort.InferenceSession(str(self.model_file), opts, providers=providers)
        # The service's preprocessing for this model, its detectors on the providers the session got.
        view: Any = SimpleNamespace(
            spec=self.spec,
            contract=self.contract,
            loaded=SimpleNamespace(active_providers=tuple(self.session.get_providers())),
        )
        self.preprocessing = build_pipeline(view, settings, DEFAULT_EXPERTS)
        # fp16 variants take float16 inputs: cast the float32 feeds to the graph's declared types.
        self._dtypes = {
            i.name: (np.float16 if i.type == _ORT_FLOAT16 else None) for i in self.session.get_inputs()
        }
        self._label_order = [self.spec.labels.index(label) for label in LABELS]

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    def preprocess(self, text: str | None, image: bytes | None, audio: bytes | None) -> Features:
        """Decode and prepare one request, as the service does (raises its typed PreprocessingError)."""
        return self.preprocessing.prepare(RawInput(text=text, image=image, audio=audio))

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
        """Pad a batch with the service's own collation for the model's contract: text to its longest
        sequence, audio to its longest clip (no length buckets: the tutorial way), masks mark real data."""
        return collate(batch, contract=self.contract)

    def run(self, batch: list[Features]) -> np.ndarray:
        """float32 [B, 3] fused probabilities in ``app.contract.LABELS`` order."""
        feeds = self.feeds(batch)
        inputs = {
            n: (feeds[n].astype(t) if (t := self._dtypes.get(n)) is not None else feeds[n])
            for n in self.contract.input_names
        }
        # Both outputs, as the service asks for (the per-expert one feeds its response).
        fused = np.asarray(self.session.run(list(self.contract.outputs), inputs)[0], dtype=np.float32)
        return fused[:, self._label_order]


def to_json(probs: np.ndarray) -> dict[str, object]:
    """Minimal response body: label + probabilities."""
    p = [float(x) for x in probs]
    return {"label": LABELS[int(np.argmax(probs))], "probabilities": dict(zip(LABELS, p, strict=True))}
