"""PyTriton peer: NVIDIA Triton Inference Server (its C++ HTTP front end and dynamic batcher) calling our
Python inference function through PyTriton's proxy.

Runs in its own virtual environment (``make bench-pytriton-venv``; ``benchmarks/results/raw/venv-pytriton``)
because ``nvidia-pytriton`` 0.7.0 pins ``numpy<2`` while the service uses NumPy 2:
``PYTHONPATH=. venv-pytriton/bin/python -m benchmarks.peers.pytriton_server --model-dir ... --port 8103``.

Request: KServe v2 JSON, three BYTES inputs of shape [1, 1]: ``text``, ``image_base64``, ``audio_base64``
("" = absent). Same ONNX model and ``app.preprocessing`` functions (:mod:`benchmarks.pipeline`).
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import sysconfig
from pathlib import Path

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from benchmarks.pipeline import Pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8103)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # pytriton issue #51: the Triton python-backend stub links against whatever libpython3.11.so the loader
    # finds first (here Debian's 3.11.2 in /lib), but imports this interpreter's stdlib (3.11.7), whose
    # multiprocessing.resource_tracker calls RLock._recursion_count (added in 3.11.?>2) -> AttributeError at
    # the first inference. Put this interpreter's own libpython first on the loader path so they match.
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and os.path.exists(os.path.join(libdir, sysconfig.get_config_var("LDLIBRARY") or "")):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")])
        )
    pipeline = Pipeline(args.model_dir)

    def _s(v: np.ndarray) -> bytes:
        x = v.reshape(-1)[0]
        return x if isinstance(x, bytes) else str(x).encode()

    @batch
    def infer(text: np.ndarray, image_base64: np.ndarray, audio_base64: np.ndarray) -> dict[str, np.ndarray]:
        feats = []
        for t, im, au in zip(text, image_base64, audio_base64, strict=True):
            tb, ib, ab = _s(t), _s(im), _s(au)
            feats.append(
                pipeline.preprocess(
                    tb.decode() if tb else None,
                    base64.b64decode(ib) if ib else None,
                    base64.b64decode(ab) if ab else None,
                )
            )
        return {"probabilities": pipeline.run(feats).astype(np.float32)}

    config = TritonConfig(
        http_port=args.port,
        grpc_port=args.port + 1000,
        metrics_port=args.port + 2000,
        http_address="127.0.0.1",
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name="fused",
            infer_func=infer,
            inputs=[
                Tensor(name=n, dtype=bytes, shape=(1,)) for n in ("text", "image_base64", "audio_base64")
            ],
            outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(3,))],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(args.max_wait_ms * 1000)),
            ),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
