"""Imports in app/ point one way: contract → preprocessing → inference → api (DESIGN.md, "Where each job
lives"). Every ``import``/``from ... import`` of an ``app`` module anywhere in a file counts, including
imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[3] / "app"

#: Layer of each top-level part of ``app``; a module may import only its own layer or lower ones.
LAYERS: dict[str, int] = {
    "app": 0,  # app/__init__.py (version)
    "app.contract": 0,
    "app.errors": 0,
    "app.config": 0,
    "app.malloc": 0,
    "app.logging_setup": 0,  # log formats and the request log context (framework-free)
    "app.metrics": 0,  # Prometheus metric objects; recorded with plain values, so any layer may record
    "app.preprocessing": 1,
    "app.inference": 2,
    "app.training": 3,  # offline; may use preprocessing and inference, never the API
    "app.schemas": 4,
    "app.api": 4,
    "app.head_guard": 4,  # the HTTP protocol guard of `msa serve` (request-head limits)
    "app.main": 5,
    "app.cli": 6,
}


def _layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return LAYERS[name]
    raise AssertionError(f"{module} has no layer in LAYERS")


def _module_name(path: Path) -> str:
    rel = path.relative_to(APP.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "app"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "app":
            found.append(node.module)
    return found


FILES = sorted(APP.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[_module_name(p) for p in FILES])
def test_app_modules_import_only_their_own_or_lower_layers(path: Path) -> None:
    own = _module_name(path)
    upward = [m for m in _imports(path) if _layer(m) > _layer(own)]
    assert not upward, f"{own} (layer {_layer(own)}) imports higher layers: {upward}"


def test_inference_imports_nothing_from_the_api_or_its_schemas() -> None:
    offending = {
        _module_name(p): [m for m in _imports(p) if m.startswith(("app.api", "app.schemas", "app.main"))]
        for p in (APP / "inference").rglob("*.py")
    }
    assert not {k: v for k, v in offending.items() if v}


def test_the_layering_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The check itself can fail: an inference module importing the API is reported.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from app.api.responses import predict_response\n", encoding="utf-8")
    assert [m for m in _imports(bad) if _layer(m) > _layer("app.inference.model")] == ["app.api.responses"]
