"""Face-detection benchmark: RetinaFace-MobileNet0.25 (the service's detector) and OpenCV's Haar cascade (the
detector it replaced) side by side on the same generated images.

Images: real faces pasted into face-free photos.

* Faces (half the images each): scikit-image's ``lfw_subset`` (its first 100 images are 25 × 25 grayscale
  face crops, brows to chin; the other 100 are non-faces and are not used) and the face of ``astronaut``
  (the region x 140–312, y 20–215 of the 512 × 512 photo; the true box inside it, x 180–272, y 60–175, was
  set by hand). Each is resized so that the true box's side is s pixels, s log-uniform in [16, 1,500],
  and pasted at a uniformly random position.
* Backgrounds: MVSA-Single photos (``<data-dir>/mvsa_single``) in which NEITHER detector finds a face
  (RetinaFace at score ≥ 0.5, Haar as configured below; both on the photo as stored and upscaled to
  640 px), taken in a seeded random order; each is upscaled
  (bicubic) so that its longest side is log-uniform in [256, 4,000] px (the short side keeps the aspect
  ratio), large enough for the face.
* Orientation: each image is stored as a JPEG (quality 92) with EXIF orientation 1, 3, 6 or 8 (a quarter
  each; the pixels stored rotated so that the displayed image is the composed one) and decoded by the
  service's :func:`app.preprocessing.image.decode_image` (which applies the tag).

Metrics (true box = the pasted face box, in displayed pixels):

* recall: a detection with IoU ≥ 0.5 with the true box, by face-size bucket (side in original pixels, and
  side in the detector's copy: side × ``detection_scale``);
* false faces per image: detections that match no true box (the backgrounds hold no face);
* chosen = true: the face the service would use (``choice_key`` for RetinaFace, the largest for Haar, as
  the old service did) is the true face, over the images where the true face was found;
* ms per image: the detector alone on the decoded image (downscaling included), median and p90.

RetinaFace detections are recorded once at score ≥ 0.5, so the score threshold can be compared offline
(greedy NMS makes this equal to running at each threshold).

Usage: ``python -m benchmarks.face_detection --data-dir ../shared/data --images 240`` → prints the tables and
writes ``benchmarks/results/face_detection.json``. Needs ``opencv-python-headless<5`` (the ``bench`` extra)
for the Haar side.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.preprocessing.face import (
    DETECTION_MAX_SIDE,
    SCORE_THRESHOLD,
    FaceBox,
    choice_key,
    default_detector,
    detection_scale,
)
from app.preprocessing.image import decode_image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "face_detection.json"
ASTRONAUT_CROP = (140, 20, 312, 215)
ASTRONAUT_FACE = (180, 60, 272, 175)
ORIENTATIONS = (1, 3, 6, 8)
#: stored pixels = displayed.transpose(_STORE[o]); exif_transpose undoes it.
_STORE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
SIZE_BUCKETS = (16, 24, 48, 96, 192, 384, 1501)
DET_BUCKETS = (0, 6, 12, 24, 48, 10_000)
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
MAX_PIXELS = 40_000_000

Box = tuple[float, float, float, float]  # x, y, w, h


class Haar:
    """The old service detector: ``haarcascade_frontalface_default``, scaleFactor 1.1, minNeighbors 5,
    min face 24 px, on a copy downscaled to 640 px (as app/preprocessing/face.py before RetinaFace)."""

    def __init__(self) -> None:
        import cv2

        cv2.setNumThreads(1)
        self.cv2 = cv2
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))

    def detect(self, image: Image.Image) -> list[Box]:
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        h, w = gray.shape
        scale = min(1.0, DETECTION_MAX_SIDE / max(h, w))
        small = gray
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = self.cv2.resize(gray, size, interpolation=self.cv2.INTER_AREA)
        if min(small.shape) < 24:
            return []
        found = self.cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        boxes = [
            (x / scale, y / scale, bw / scale, bh / scale) for (x, y, bw, bh) in (found if len(found) else [])
        ]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


def backgrounds(data_dir: Path, count: int, seed: int, haar: Haar) -> list[Path]:
    """``count`` MVSA-Single photos where neither detector finds a face (seeded random order)."""
    paths = sorted((data_dir / "mvsa_single" / "data").glob("*.jpg"))
    random.Random(seed).shuffle(paths)
    detector, kept = default_detector(), []
    for path in paths:
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
        except OSError:
            continue
        # checked at its own size and at 640 px (the detectors' working size for every upscaled copy)
        k = 640 / max(rgb.size)
        big = rgb.resize((round(rgb.width * k), round(rgb.height * k)), Image.Resampling.BICUBIC)
        if min(rgb.size) < 64 or any(detector.detect(im, 0.5).faces or haar.detect(im) for im in (rgb, big)):
            continue
        kept.append(path)
        if len(kept) == count:
            break
    return kept


@dataclass
class Case:
    data: bytes
    truth: Box
    side: float
    longest: int
    orientation: int
    source: str


def faces() -> list[tuple[str, Image.Image, Box]]:
    """(name, RGB crop, true box inside the crop)."""
    from skimage import data

    out = []
    ax0, ay0, ax1, ay1 = ASTRONAUT_CROP
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE
    astro = Image.fromarray(data.astronaut()).crop(ASTRONAUT_CROP)
    out.append(("astronaut", astro, (fx0 - ax0, fy0 - ay0, fx1 - fx0, fy1 - fy0)))
    for i, arr in enumerate(data.lfw_subset()[:100]):
        crop = Image.fromarray((arr * 255).round().astype(np.uint8)).convert("RGB")
        out.append((f"lfw{i}", crop, (0.0, 0.0, 25.0, 25.0)))
    return out


def make_case(rng: random.Random, bg_path: Path, face: tuple[str, Image.Image, Box]) -> Case:
    name, crop, (tx, ty, tw, th) = face
    with Image.open(bg_path) as im:
        bg0 = im.convert("RGB")
    while True:
        side = math.exp(rng.uniform(math.log(16), math.log(1500)))
        longest = round(math.exp(rng.uniform(math.log(256), math.log(4000))))
        k = longest / max(bg0.size)
        size = (max(1, round(bg0.width * k)), max(1, round(bg0.height * k)))
        f = side / math.sqrt(tw * th)  # crop scale so the true box has side `side`
        cw, ch = round(crop.width * f), round(crop.height * f)
        if cw <= size[0] and ch <= size[1]:
            break
    bg = bg0.resize(size, Image.Resampling.BICUBIC)
    x, y = rng.randint(0, size[0] - cw), rng.randint(0, size[1] - ch)
    bg.paste(crop.resize((cw, ch), Image.Resampling.BICUBIC), (x, y))
    truth = (x + tx * f, y + ty * f, tw * f, th * f)
    orientation = rng.choice(ORIENTATIONS)
    stored = bg.transpose(_STORE[orientation]) if orientation in _STORE else bg
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(buf, format="JPEG", quality=92, exif=exif.tobytes())
    return Case(buf.getvalue(), truth, side, longest, orientation, name)


def _bucket(value: float, edges: tuple[int, ...]) -> str:
    for lo, hi in zip(edges, edges[1:], strict=False):
        if lo <= value < hi:
            return f"{lo}–{hi - 1 if hi < 10_000 else '∞'}"
    return "other"


def evaluate(records: list[dict[str, Any]], method: str, threshold: float | None = None) -> dict[str, Any]:
    """Recall by bucket, false faces per image, chosen = true, ms per image for one detector."""
    hits: dict[str, list[int]] = {}
    det_hits: dict[str, list[int]] = {}
    false, chosen_ok, found_n, ms = 0, 0, 0, []
    for r in records:
        dets = [d for d in r[method] if threshold is None or d["score"] >= threshold]
        match = [iou(tuple(d["box"]), tuple(r["truth"])) >= 0.5 for d in dets]
        hit = any(match)
        hits.setdefault(_bucket(r["side"], SIZE_BUCKETS), []).append(int(hit))
        det_hits.setdefault(_bucket(r["det_side"], DET_BUCKETS), []).append(int(hit))
        false += sum(1 for m in match if not m)
        ms.append(r[f"{method}_ms"])
        if hit:
            found_n += 1
            if method == "retinaface":
                boxes = [FaceBox(*map(round, d["box"]), score=d["score"]) for d in dets]
                best = max(range(len(boxes)), key=lambda i: choice_key(boxes[i], r["det_scale"]))
            else:
                best = 0  # largest first
            chosen_ok += int(match[best])
    n = len(records)

    def table(h: dict[str, list[int]]) -> dict[str, Any]:
        return {k: {"n": len(v), "recall": round(sum(v) / len(v), 4)} for k, v in sorted(h.items(), key=_key)}

    def found(r: dict[str, Any]) -> int:
        """1 when a detection (above ``threshold``) overlaps the true face at IoU ≥ 0.5."""
        return int(
            any(
                iou(tuple(d["box"]), tuple(r["truth"])) >= 0.5
                for d in r[method]
                if threshold is None or d["score"] >= threshold
            )
        )

    big = [found(r) for r in records if r["side"] >= 24]
    big_det = [found(r) for r in records if r["det_side"] >= 24]
    return {
        "images": n,
        "recall_all": round(sum(sum(v) for v in hits.values()) / n, 4),
        "recall_side_ge_24px": round(sum(big) / max(len(big), 1), 4),
        "recall_detection_side_ge_24px": round(sum(big_det) / max(len(big_det), 1), 4),
        "n_detection_side_ge_24px": len(big_det),
        "recall_by_side_px": table(hits),
        "recall_by_detection_side_px": table(det_hits),
        "false_faces_per_image": round(false / n, 4),
        "chosen_is_true_face": round(chosen_ok / max(found_n, 1), 4),
        "ms_median": round(statistics.median(ms), 2),
        "ms_p90": round(float(np.percentile(ms, 90)), 2),
        "ms_mean": round(statistics.fmean(ms), 2),
    }


def _key(item: tuple[str, Any]) -> int:
    head = item[0].split("–")[0]
    return int(head) if head.isdigit() else 10**9


def face_module_max_side() -> int:
    import app.preprocessing.face as face_module

    return int(face_module.DETECTION_MAX_SIDE)


def run(
    data_dir: Path, images: int, n_backgrounds: int, seed: int, max_side: int = DETECTION_MAX_SIDE
) -> dict[str, Any]:
    haar, detector = Haar(), default_detector()
    bgs = backgrounds(data_dir, n_backgrounds, seed, haar)  # chosen at the shipped size, for any max_side
    import app.preprocessing.face as face_module

    face_module.DETECTION_MAX_SIDE = max_side  # read by detection_scale at call time
    pool = faces()
    rng = random.Random(seed)
    records = []
    for i in range(images):
        face = pool[0] if i % 2 == 0 else pool[1 + (i // 2) % (len(pool) - 1)]  # half astronaut, half LFW
        case = make_case(rng, bgs[i % len(bgs)], face)
        image = decode_image(case.data, max_pixels=MAX_PIXELS, work_side=None).image  # the full-size file
        t0 = time.perf_counter()
        found = detector.detect(image, min(THRESHOLDS))
        t1 = time.perf_counter()
        haar_boxes = haar.detect(image)
        t2 = time.perf_counter()
        scale = detection_scale(*image.size)
        records.append(
            {
                "source": case.source,
                "orientation": case.orientation,
                "size": list(image.size),
                "truth": list(case.truth),
                "side": case.side,
                "det_side": case.side * scale,
                "det_scale": scale,
                "retinaface": [{"box": [f.x, f.y, f.width, f.height], "score": f.score} for f in found.faces],
                "retinaface_ms": (t1 - t0) * 1000,
                "haar": [{"box": list(b), "score": 1.0} for b in haar_boxes],
                "haar_ms": (t2 - t1) * 1000,
            }
        )
    return {
        "config": {
            "images": images,
            "backgrounds": [p.name for p in bgs],
            "seed": seed,
            "detection_max_side": face_module_max_side(),
            "score_threshold": SCORE_THRESHOLD,
        },
        "retinaface": evaluate(records, "retinaface", SCORE_THRESHOLD),
        "retinaface_by_threshold": {str(t): evaluate(records, "retinaface", t) for t in THRESHOLDS},
        "haar": evaluate(records, "haar"),
        "by_source": {
            src: {
                m: evaluate(sub, m, SCORE_THRESHOLD if m == "retinaface" else None)
                for m in ("retinaface", "haar")
            }
            for src, sub in (
                ("astronaut", [r for r in records if r["source"] == "astronaut"]),
                ("lfw", [r for r in records if r["source"] != "astronaut"]),
            )
        },
        "records": records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--backgrounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--max-side", type=int, default=DETECTION_MAX_SIDE, help="RetinaFace's copy size (Haar stays at 640)"
    )
    parser.add_argument("--records", action="store_true", help="also write every image's detections")
    args = parser.parse_args()
    result = run(args.data_dir, args.images, args.backgrounds, args.seed, args.max_side)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    saved = result if args.records else {k: v for k, v in result.items() if k != "records"}
    args.out.write_text(json.dumps(saved, indent=1))
    for name in ("retinaface", "haar"):
        summary = {k: v for k, v in result[name].items() if not k.startswith("recall_by")}
        print(name, json.dumps(summary))
        print("  by side px:", json.dumps(result[name]["recall_by_side_px"]))
        print("  by detection side px:", json.dumps(result[name]["recall_by_detection_side_px"]))
    for src, by in result["by_source"].items():
        for m, r in by.items():
            print(
                f"{src} {m}: recall≥24px {r['recall_side_ge_24px']} recall≥24px(det) "
                f"{r['recall_detection_side_ge_24px']} false/img {r['false_faces_per_image']} "
                f"chosen {r['chosen_is_true_face']}"
            )
    for t, r in result["retinaface_by_threshold"].items():
        print(
            f"retinaface@{t}: recall≥24px(det) {r['recall_detection_side_ge_24px']} false/img "
            f"{r['false_faces_per_image']} chosen {r['chosen_is_true_face']}"
        )


if __name__ == "__main__":
    main()
