"""Create the PyTriton peer's separate virtual environment (``benchmarks/results/raw/venv-pytriton``).

Why separate: ``nvidia-pytriton`` 0.7.0 requires ``numpy<2``; the service's OpenCV 4.12+ requires
``numpy>=2``, so they cannot share one environment. This venv gets PyTriton plus the packages
``app.preprocessing`` imports, and the CPU ``onnxruntime`` (``BENCH_GPU=1`` → ``onnxruntime-gpu``).
Run: ``python -m benchmarks.pytriton_venv`` (about a minute with PyPI reachable; idempotent).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / "results" / "raw" / "venv-pytriton"
PACKAGES = [
    "nvidia-pytriton==0.7.0",
    "tokenizers>=0.19",
    "Pillow>=10.4",
    "soundfile>=0.12",
    "soxr>=0.4",
    "av>=12",
    "psutil>=5.9",
    # What the service's preprocessing pipeline imports (benchmarks.pipeline → app.inference.startup).
    "pydantic>=2.7",
    "pydantic-settings>=2.3",
    "threadpoolctl>=3.1",
]
#: Installed without its dependencies: py3langid 0.4 declares numpy>=2, which PyTriton's numpy<2 pin
#: forbids; it runs on numpy 1.26 (the language gate loads and answers the same in both environments).
NO_DEPS = ["py3langid>=0.4,<0.5"]


def ensure(venv: Path = VENV) -> Path:
    """Create ``venv`` if needed and install :data:`PACKAGES`; returns its python."""
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run(
            [str(python), "-c", "import pytriton, onnxruntime, av, py3langid, pydantic_settings"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    ):
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    ort = "onnxruntime-gpu" if os.environ.get("BENCH_GPU") == "1" else "onnxruntime"
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES, ort], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *NO_DEPS], check=True)
    return python


if __name__ == "__main__":
    print(ensure())
