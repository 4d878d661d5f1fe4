"""The tutorial way: FastAPI, a sync route (Starlette's thread pool), one ``session.run`` per request.

Run: ``BENCH_MODEL_DIR=models/fused-sentiment uvicorn benchmarks.peers.naive_fastapi:app --port 8101``.
Default ``InferenceSession`` options, one uvicorn worker — what the usual "serve an ONNX model with
FastAPI" tutorial does. Same JSON body as the service's ``POST /v1/predict``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

from benchmarks.pipeline import Pipeline, to_json

pipeline = Pipeline(Path(os.environ["BENCH_MODEL_DIR"]), tuned=False)
app = FastAPI(title="naive ONNX FastAPI")


class PredictRequest(BaseModel):
    text: str | None = None
    image_base64: str | None = None
    audio_base64: str | None = None


@app.get("/readyz")
def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/predict")
def predict(req: PredictRequest) -> dict[str, object]:
    features = pipeline.preprocess_json(req.model_dump(exclude_none=True))
    return to_json(pipeline.run([features])[0])
