"""LitServe peer with its dynamic batching on (``max_batch_size`` / ``batch_timeout``).

Run: ``python -m benchmarks.peers.litserve_server --model-dir models/fused-sentiment --port 8102``.
Same ONNX model, same ``app.preprocessing`` functions (:mod:`benchmarks.pipeline`), same JSON body as the
service, and the batch limits of the service's defaults (16 / 5 ms) unless overridden. LitServe runs
``decode_request`` (our preprocessing) and ``predict`` in its inference worker process; the HTTP front end
is a separate uvicorn process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import litserve as ls

from benchmarks.pipeline import Features, Pipeline, to_json


class SentimentAPI(ls.LitAPI):
    def __init__(self, model_dir: Path, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.model_dir = model_dir

    def setup(self, device: str) -> None:  # noqa: ARG002 - CPU/GPU chosen by Pipeline
        self.pipeline = Pipeline(self.model_dir)

    def decode_request(self, request: dict[str, str]) -> Features:
        return self.pipeline.preprocess_json(request)

    def batch(self, inputs: list[Features]) -> list[Features]:
        return inputs

    def predict(self, x: list[Features]):  # noqa: ANN201
        return self.pipeline.run(x)

    def unbatch(self, output):  # noqa: ANN001, ANN201
        return list(output)

    def encode_response(self, output) -> dict[str, object]:  # noqa: ANN001
        return to_json(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout", type=float, default=0.005, help="seconds")
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes")
    args = parser.parse_args()
    api = SentimentAPI(
        args.model_dir,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        api_path="/v1/predict",
    )
    server = ls.LitServer(
        api, accelerator="cpu", workers_per_device=args.workers, timeout=60, healthcheck_path="/readyz"
    )
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False)


if __name__ == "__main__":
    main()
