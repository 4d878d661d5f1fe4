"""Dockerfile / compose lint (no Docker engine needed), CLI and settings."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from app.cli import main
from app.config import REPO_ROOT, Settings
from app.preprocessing.vad import VAD_MODEL_FILE


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} not installed (it comes with the test extra)"
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(REPO_ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _dockerfile_stages() -> dict[str, str]:
    """Build stage name → its text (from its FROM line to the next)."""
    text = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages: dict[str, str] = {}
    for chunk in text.split("\nFROM ")[1:]:
        head = chunk.splitlines()[0].split()
        assert len(head) == 3 and head[1].upper() == "AS", f"unnamed stage: FROM {chunk.splitlines()[0]}"
        stages[head[2]] = "FROM " + chunk
    return stages


def test_dockerfile_has_a_cpu_and_a_cuda_target_the_cuda_one_last() -> None:
    stages = _dockerfile_stages()
    assert list(stages) == ["cpu", "cuda"]  # `docker build .` builds the last stage: the GPU image as before
    base = stages["cuda"].splitlines()[0]
    # onnxruntime-gpu 1.31: CUDA 13
    assert "nvidia/cuda:13." in base and "cudnn" in base and "runtime" in base
    assert stages["cpu"].startswith("FROM python:3.12-slim")
    for stage in stages.values():
        assert "\nUSER 10001:10001" in stage  # non-root, numeric (Kubernetes' runAsNonRoot can check it)
        assert "HEALTHCHECK" in stage and "/readyz" in stage
        assert "COPY models ./models" in stage and "SENTIMENT_MODEL_DIR=/app/models" in stage
        # The voice activity detector is found relative to the package (app/../models/detectors), so the
        # package must stay in WORKDIR /app beside models/: an editable install, never into site-packages.
        assert "WORKDIR /app\n" in stage and "COPY app ./app" in stage
        installs = [line for line in stage.splitlines() if "pip install" in line and " -r " not in line]
        assert installs and all(line.rstrip(" \\").endswith("-e .") for line in installs), installs
        # Dependencies first (a cached layer), then the code: editing app/ must not reinstall them, so the
        # package itself goes in without dependencies after COPY app.
        deps = stage.index(" -r /tmp/requirements-")
        assert deps < stage.index("COPY app ./app") < stage.index("pip install --no-cache-dir --no-deps -e .")
        assert "pip install --no-cache-dir -e ." not in stage
    assert VAD_MODEL_FILE == REPO_ROOT / "models" / "detectors" / VAD_MODEL_FILE.name


def test_cpu_image_installs_onnxruntime_and_no_cuda_build() -> None:
    stage = _dockerfile_stages()["cpu"]
    assert "cpu_requirements.py pyproject.toml > /tmp/requirements-cpu.txt" in stage
    assert "pip install --no-cache-dir --no-deps -e ." in stage  # the package's own Linux deps are skipped
    assert "pip install --no-cache-dir -e ." not in stage
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "deploy" / "docker" / "cpu_requirements.py"), "pyproject.toml"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    requirements = result.stdout.split()
    assert "onnxruntime>=1.20" in requirements
    assert not [r for r in requirements if "gpu" in r or "nvidia" in r or ";" in r]
    import tomllib

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    others = [d for d in declared if not d.startswith("onnxruntime")]
    assert set(requirements) == {*others, "onnxruntime>=1.20"}


def test_cuda_image_installs_pyproject_dependencies_with_onnxruntime_gpu_pinned_to_cuda_13() -> None:
    import re
    import tomllib

    stage = _dockerfile_stages()["cuda"]
    # The stage's requirements come from pyproject.toml by the python -c line it runs: run the same code.
    code = re.search(r'RUN python -c "([^"]+)"', stage)
    assert code, "the cuda stage no longer derives its requirements from pyproject.toml"
    result = subprocess.run(
        [sys.executable, "-c", code[1]], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert result.stdout.splitlines() == declared
    # onnxruntime-gpu held to the series built for CUDA 13 + cuDNN 9 (the base image: nvidia/cuda:13.*).
    assert "-r /tmp/requirements-cuda.txt -c /tmp/constraints-cuda.txt" in stage
    assert "COPY deploy/docker/constraints-cuda.txt /tmp/constraints-cuda.txt" in stage
    constraints = (REPO_ROOT / "deploy" / "docker" / "constraints-cuda.txt").read_text(encoding="utf-8")
    pins = [ln.strip() for ln in constraints.splitlines() if ln.strip() and not ln.startswith("#")]
    assert pins == ["onnxruntime-gpu==1.31.*"]
    assert "FROM nvidia/cuda:13." in stage
    # The service no longer imports OpenCV: no libglib or other Debian package for it.
    assert "libglib" not in stage
    imports_cv2 = re.compile(r"^\s*(import|from) cv2\b", re.M)
    sources = (REPO_ROOT / "app").rglob("*.py")
    assert not [f for f in sources if imports_cv2.search(f.read_text(encoding="utf-8"))]


def test_cpu_requirements_refuses_a_pyproject_without_onnxruntime(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["numpy"]\n')
    script = REPO_ROOT / "deploy" / "docker" / "cpu_requirements.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "pyproject.toml")], capture_output=True, text=True
    )
    assert result.returncode == 1 and "no onnxruntime requirement" in result.stderr


def test_compose_file_matches_the_compose_spec() -> None:
    path = REPO_ROOT / "docker-compose.yml"
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    service = YAML(typ="safe").load(path.read_text(encoding="utf-8"))["services"]["sentiment"]
    device = service["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "8000:8000" in service["ports"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    # Docker waits 10 s by default before SIGKILL; the service drains requests in flight for up to 30 s.
    from app.cli import GRACEFUL_SHUTDOWN_TIMEOUT_S

    grace = service["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > GRACEFUL_SHUTDOWN_TIMEOUT_S


def test_ci_script_runs_the_readme_test_command() -> None:
    script = REPO_ROOT / ".ci" / "run"
    assert script.stat().st_mode & stat.S_IXUSR
    lines = [ln.strip() for ln in script.read_text(encoding="utf-8").splitlines()]
    assert "set -euo pipefail" in lines and "make test" in lines
    assert "make test" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("SENTIMENT_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("SENTIMENT_AUDIO_BUCKET_SECONDS", "[2, 1]")
    s = Settings()
    assert s.providers == ["CPUExecutionProvider"]
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.max_batch_size == 8
    assert s.audio_buckets_frames()[:2] == [98, 198]  # 1 s and 2 s of 10 ms hops with a 25 ms window
    assert s.audio_buckets_frames()[-1] == 2998  # max_audio_seconds = 30 s


def test_settings_refuse_impossible_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_QUEUE_SIZE", "2")
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_SIZE", "8")
    with pytest.raises(ValueError):
        Settings()


def test_every_setting_has_a_description_and_is_documented() -> None:
    docs = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"`SENTIMENT_{name.upper()}`" in docs, name


def test_cli_predict_prints_json(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SENTIMENT_MODEL_DIR", str(settings.model_dir))
    monkeypatch.setenv("SENTIMENT_PROVIDERS", "CPUExecutionProvider")
    assert main(["predict", "--text", "what a lovely day"]) == 0
    import json

    body = json.loads(capsys.readouterr().out)
    assert set(body["probabilities"]) == {"negative", "neutral", "positive"}
    assert body["modalities"]["text"]["tokens"] > 2


def test_cli_train_calls_the_training_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: list[list[str]] = []
    fake = types.ModuleType("app.training.pipeline")
    fake.main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app.training.pipeline", fake)
    assert main(["train", "--epochs", "1"]) == 7
    assert seen == [["--epochs", "1"]]


def test_cli_train_without_the_train_extra_explains(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "app.training.pipeline", None)  # import now raises ModuleNotFoundError
    assert main(["train"]) == 2
    assert "pip install -e '.[train]'" in capsys.readouterr().err


def test_settings_refuse_an_unknown_execution_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_PROVIDERS", "FooProvider,CPUExecutionProvider")
    with pytest.raises(ValueError, match="unknown execution provider"):
        Settings()
