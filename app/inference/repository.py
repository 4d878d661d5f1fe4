"""Model repository: ``<model_dir>/<name>/<version>/model.onnx`` + ``<model_dir>/<name>/config.json``.

Triton-style layout (numeric version folders). ``config.json`` is read defensively: every key is optional;
known keys are ``labels``, ``inputs``/``input_names``, ``outputs``/``output_names``, ``version``,
``tokenizer`` (file name relative to the model folder) and ``variants`` (execution provider → ONNX file,
relative to the model folder or the version folder, e.g. an fp16 graph for CUDA).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.contract import LABELS, ContractError, ModelContract

logger = logging.getLogger("app.inference.repository")


class ModelLoadError(RuntimeError):
    """The model repository is missing, incomplete or inconsistent with the contract."""


@dataclass(frozen=True)
class ModelSpec:
    """Where the files of one model version are and what its config says.

    Attributes:
        name: model folder name.
        version: version folder name.
        model_file: path of the default ONNX graph.
        tokenizer_file: path of ``tokenizer.json``.
        labels: class labels in output order (must be a permutation of ``app.contract.LABELS``).
        variants: execution provider → ONNX file, for provider-specific graphs.
        config: the raw config dict (for /v1/models).
        contract: the experts and tensors the config declares (v1 defaults where it is silent).
    """

    name: str
    version: str
    model_file: Path
    tokenizer_file: Path
    labels: tuple[str, ...] = LABELS
    variants: dict[str, Path] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    contract: ModelContract = field(default_factory=lambda: ModelContract.from_config({}))

    def file_for(self, provider: str) -> Path:
        """The graph to use when ``provider`` is the preferred execution provider."""
        return self.variants.get(provider, self.model_file)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        logger.warning("no config.json at %s; using the contract defaults", path)
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"config.json at {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"config.json at {path} must hold a JSON object")
    return data


def _pick_version(model_root: Path, requested: str | None) -> str:
    if requested:
        if not (model_root / requested / "model.onnx").is_file():
            raise ModelLoadError(f"model version {requested!r} has no model.onnx under {model_root}")
        return requested
    versions = (
        [
            p.name
            for p in model_root.iterdir()
            if p.is_dir() and p.name.isdigit() and (p / "model.onnx").is_file()
        ]
        if model_root.is_dir()
        else []
    )
    if not versions:
        raise ModelLoadError(f"no <version>/model.onnx found under {model_root}")
    return max(versions, key=int)


def _labels(config: dict[str, Any]) -> tuple[str, ...]:
    labels = config.get("labels")
    if labels is None:
        return LABELS
    if not isinstance(labels, list) or sorted(map(str, labels)) != sorted(LABELS):
        raise ModelLoadError(f"config.json labels {labels!r} are not a permutation of {list(LABELS)}")
    return tuple(str(x) for x in labels)


def _names(config: dict[str, Any], keys: tuple[str, ...]) -> list[str] | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, list):
            return [str(v["name"]) if isinstance(v, dict) and "name" in v else str(v) for v in value]
        if isinstance(value, dict):
            return [str(k) for k in value]
    return None


def load_spec(model_dir: Path, name: str, version: str | None = None) -> ModelSpec:
    """Resolve the files of model ``name`` (and ``version``, default: highest numeric) under ``model_dir``.

    Raises:
        ModelLoadError: missing folder/model/tokenizer, invalid config, or a config that contradicts the
            fused-model contract (labels, input/output names).
    """
    model_root = model_dir / name
    if not model_root.is_dir():
        raise ModelLoadError(f"model folder {model_root} does not exist (set SENTIMENT_MODEL_DIR)")
    chosen = _pick_version(model_root, version)
    config = _read_config(model_root / "config.json")
    labels = _labels(config)
    try:
        contract = ModelContract.from_config(config)
    except (ContractError, KeyError, TypeError, IndexError) as exc:
        raise ModelLoadError(
            f"config.json at {model_root} describes its experts inconsistently: {exc}"
        ) from exc
    for keys, expected in (
        (("inputs", "input_names"), contract.input_names),
        (("outputs", "output_names"), contract.outputs),
    ):
        names = _names(config, keys)
        if names is not None and set(names) != set(expected):
            raise ModelLoadError(f"config.json {keys[0]} {names} differ from the contract {list(expected)}")

    tokenizer_name = config.get("tokenizer") if isinstance(config.get("tokenizer"), str) else None
    candidates = [model_root / tokenizer_name] if tokenizer_name else []
    candidates += [model_root / chosen / "tokenizer.json", model_root / "tokenizer.json"]
    tokenizer_file = next((c for c in candidates if c.is_file()), None)
    if tokenizer_file is None:
        raise ModelLoadError(
            f"no tokenizer.json found for {model_root} (looked at {[str(c) for c in candidates]})"
        )

    variants: dict[str, Path] = {}
    raw_variants = config.get("variants")
    if isinstance(raw_variants, dict):
        for provider, rel in raw_variants.items():
            if not isinstance(rel, str):
                continue
            for base in (model_root / chosen, model_root):
                if (base / rel).is_file():
                    variants[str(provider)] = base / rel
                    break
            else:
                logger.warning("variant %s → %s listed in config.json but not found; ignored", provider, rel)

    return ModelSpec(
        name=name,
        version=chosen,
        model_file=model_root / chosen / "model.onnx",
        tokenizer_file=tokenizer_file,
        labels=labels,
        variants=variants,
        config=config,
        contract=contract,
    )
