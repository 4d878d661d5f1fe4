"""MVSA-Single held-out pairs: face-found rate and image-only macro-F1 of the SHIPPED model with the new face
detector (RetinaFace, :func:`app.preprocessing.face.face_input`) and with the old one (Haar cascade,
largest face, 10 % margin, no alignment: the pre-RetinaFace ``largest_face_input``).

Split: ``app.training.data.load_mvsa`` (random 60/20/20 with seed 100; pairs whose combined label is
"inconsistent" excluded), the test part. Image-only = the calibrated face expert's probabilities
(``modality_probabilities[:, face]`` of ``models/fused-sentiment/1/model.onnx`` with only the face present),
argmax, against ``combined_label`` on the pairs where a face is found, as the model card's "image-only
macro-F1 (face subset)" (``app/training/mvsa_stage.py`` ``mvsa_eval``); also against ``image_label``.

Usage: ``python -m benchmarks.face_mvsa --data-dir ../shared/data`` (needs ``opencv-python-headless<5``
and scikit-learn: the ``bench`` and ``train`` extras) → prints one JSON object and writes
``benchmarks/results/face_mvsa.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps
from sklearn.metrics import f1_score

from app.contract import ModelContract
from app.inference.collate import collate
from app.preprocessing.face import face_input
from app.preprocessing.image import normalize_face
from app.preprocessing.pipeline import PreparedItem
from app.training.data import load_mvsa
from benchmarks.face_detection import Haar

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "fused-sentiment" / "1" / "model.onnx"


def haar_face(haar: Haar, image: Image.Image) -> np.ndarray | None:
    """The old service path: Haar boxes, largest first; crop grown by 10 % per edge; ``normalize_face``."""
    boxes = haar.detect(image)
    if not boxes:
        return None
    x, y, w, h = boxes[0]
    dx, dy = w * 0.1, h * 0.1
    gray = image.convert("L")
    crop = gray.crop(
        (
            max(0, round(x - dx)),
            max(0, round(y - dy)),
            min(gray.width, round(x + w + dx)),
            min(gray.height, round(y + h + dy)),
        )
    )
    return normalize_face(crop)


def image_only(session: Any, faces: np.ndarray) -> np.ndarray:
    """Calibrated face-expert probabilities [N, 3] of the ONNX model (only the face present), for a model
    of either contract version (the one its ``config.json`` declares)."""
    contract = ModelContract.from_config(json.loads((MODEL.parents[1] / "config.json").read_text()))
    face_index = contract.expert_names.index("face")
    out = []
    for s in range(0, len(faces), 32):
        items = [PreparedItem.of(face={"face": f}) for f in faces[s : s + 32]]
        feeds = collate(items, contract=contract)
        out.append(session.run([contract.outputs[1]], feeds)[0][:, face_index])
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "face_mvsa.json")
    args = parser.parse_args()
    mv = load_mvsa(args.data_dir, seed=0)  # split seed 0 + 100, as app/training/pipeline.py
    rows = np.flatnonzero((mv.split == "test") & (mv.combined_label >= 0))
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    haar = Haar()
    found: dict[str, list[tuple[int, np.ndarray]]] = {"retinaface": [], "haar": []}
    seconds = {"retinaface": 0.0, "haar": 0.0}
    for k, i in enumerate(rows):
        try:
            with Image.open(mv.images[i]) as im:
                image = ImageOps.exif_transpose(im).convert("RGB")
        except OSError:
            continue
        t0 = time.perf_counter()
        face, _ = face_input(image)
        t1 = time.perf_counter()
        old = haar_face(haar, image)
        t2 = time.perf_counter()
        seconds["retinaface"] += t1 - t0
        seconds["haar"] += t2 - t1
        if face is not None:
            found["retinaface"].append((k, face))
        if old is not None:
            found["haar"].append((k, old))
    result: dict[str, Any] = {"n_pairs": int(len(rows)), "split": "load_mvsa seed 100, 60/20/20, test"}
    for name, hits in found.items():
        idx = np.array([k for k, _ in hits], dtype=int)
        q = (
            image_only(session, np.stack([f for _, f in hits]).astype(np.float32))
            if hits
            else np.zeros((0, 3))
        )
        pred = q.argmax(1)
        y, y_img = mv.combined_label[rows][idx], mv.image_label[rows][idx]
        keep = y_img >= 0
        result[name] = {
            "face_found_rate": round(len(hits) / len(rows), 4),
            "n_face": len(hits),
            "image_only_macro_f1": round(float(f1_score(y, pred, average="macro", labels=[0, 1, 2])), 4),
            "image_only_vs_image_label_macro_f1": round(
                float(f1_score(y_img[keep], pred[keep], average="macro", labels=[0, 1, 2])), 4
            ),
            "detector_ms_per_image": round(seconds[name] / len(rows) * 1000, 1),
        }
    # Both detectors found a face: the same photos, each detector's own crop (alignment, margin) → F1.
    both = sorted({k for k, _ in found["retinaface"]} & {k for k, _ in found["haar"]})
    y_both = mv.combined_label[rows][np.array(both, dtype=int)]
    for name, hits in found.items():
        by_k = dict(hits)
        q = (
            image_only(session, np.stack([by_k[k] for k in both]).astype(np.float32))
            if both
            else np.zeros((0, 3))
        )
        result[name]["both_found_image_only_macro_f1"] = round(
            float(f1_score(y_both, q.argmax(1), average="macro", labels=[0, 1, 2])), 4
        )
    result["n_both_found"] = len(both)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
