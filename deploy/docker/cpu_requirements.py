"""Print the service's runtime requirements for the CPU image, one per line: pyproject.toml's
``[project] dependencies`` with ``onnxruntime`` (the CPU build, its platform marker removed) in place of
``onnxruntime-gpu``, so that pip never downloads the CUDA build or CUDA libraries.

pyproject.toml picks ``onnxruntime-gpu`` on Linux and ``onnxruntime`` elsewhere with environment markers:
a marker cannot be switched off by an extra, hence this filter. Used by the Dockerfile's ``cpu`` target:
``python cpu_requirements.py pyproject.toml > requirements.txt && pip install -r requirements.txt``, then
``pip install --no-deps .``. Exits 1 when the file has no ``onnxruntime`` requirement (Python >= 3.11:
tomllib).
"""

from __future__ import annotations

import re
import sys
import tomllib


def cpu_requirements(pyproject: dict[str, object]) -> list[str]:
    """The dependencies of a parsed pyproject.toml with the ONNX Runtime GPU build swapped for the CPU one.

    Raises:
        ValueError: no ``onnxruntime`` requirement among the dependencies.
    """
    project = pyproject["project"]
    assert isinstance(project, dict)
    out: list[str] = []
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        normalized = re.sub(r"[-_.]+", "-", name.group(0)).lower() if name else ""
        if normalized == "onnxruntime-gpu":
            continue
        out.append(requirement.split(";")[0].strip() if normalized == "onnxruntime" else requirement)
    if not any(re.match(r"onnxruntime\b(?!-)", r) for r in out):
        raise ValueError("pyproject.toml has no onnxruntime requirement")
    return out


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "pyproject.toml"
    with open(path, "rb") as f:
        try:
            lines = cpu_requirements(tomllib.load(f))
        except ValueError as exc:
            print(f"cpu_requirements: {exc}", file=sys.stderr)
            return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
