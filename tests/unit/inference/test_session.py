"""Quiet CPU start (issue 13, item 7): CUDA is requested only when its libraries load.

The decision is tested with the library probe stubbed both ways; a subprocess runs ``msa predict`` on this
machine and checks that stderr holds one plain warning instead of ONNX Runtime's red error line.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import app.inference.session as session_module
from app.config import REPO_ROOT
from app.inference.repository import load_spec
from app.inference.session import (
    create_session,
    cuda_libraries,
    missing_cuda_libraries,
    usable_providers,
)

GPU_FIRST = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cuda_libraries_follow_the_build_cuda_major() -> None:
    libs = cuda_libraries("13.0")
    assert {"libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcudnn.so.9"} <= set(libs)
    assert "libcublasLt.so.12" in cuda_libraries("12.8")
    assert cuda_libraries(None) == ()


def test_missing_cuda_libraries_lists_what_the_loader_refuses() -> None:
    def load(name: str) -> object:
        if name.startswith("libcublas"):
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        if name == "libcudnn.so.9":
            raise OSError(f"{name}: undefined symbol: cudnnFoo")
        return object()

    names = ("libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcudnn.so.9")
    assert missing_cuda_libraries(names, load) == [
        "libcublasLt.so.13",
        "libcublas.so.13",
        "libcudnn.so.9 (undefined symbol: cudnnFoo)",
    ]
    assert missing_cuda_libraries(names, lambda name: object()) == []


def test_gpu_host_keeps_the_providers_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="app.inference.session"):
        assert usable_providers(GPU_FIRST, probe=lambda: []) == GPU_FIRST
    assert not caplog.records


def test_cpu_host_drops_cuda_with_one_plain_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="app.inference.session"):
        kept = usable_providers(
            ["TensorrtExecutionProvider", *GPU_FIRST], probe=lambda: ["libcublasLt.so.13"]
        )
    assert kept == ["CPUExecutionProvider"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    message = caplog.records[0].getMessage()
    assert "CUDA execution provider not used" in message and "libcublasLt.so.13" in message
    assert "\n" not in message and "\x1b" not in message


def test_cuda_only_config_on_a_cpu_host_still_gets_a_session() -> None:
    assert usable_providers(["CUDAExecutionProvider"], probe=lambda: ["libcuda.so.1"]) == [
        "CPUExecutionProvider"
    ]


def test_cpu_only_config_does_not_probe() -> None:
    def probe() -> list[str]:
        raise AssertionError("probed although CUDA was not asked for")

    assert usable_providers(["CPUExecutionProvider"], probe=probe) == ["CPUExecutionProvider"]


@pytest.mark.parametrize(("missing", "asked"), [([], GPU_FIRST), (["libcudart.so.13"], GPU_FIRST[1:])])
def test_create_session_asks_ort_for_cuda_only_when_its_libraries_load(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, missing: list[str], asked: list[str]
) -> None:
    seen: list[list[str]] = []
    real = session_module.ort.InferenceSession

    def recording(path: str, sess_options: object = None, providers: list[object] | None = None) -> object:
        seen.append([p if isinstance(p, str) else str(p[0]) for p in providers or []])  # type: ignore[index]
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(session_module.ort, "InferenceSession", recording)
    monkeypatch.setattr(session_module, "missing_cuda_libraries", lambda: missing)
    loaded = create_session(load_spec(model_dir, "fused-sentiment"), GPU_FIRST)
    assert seen == [asked]
    assert loaded.requested_providers == tuple(GPU_FIRST)  # what was configured is still reported
    assert loaded.active_providers == ("CPUExecutionProvider",)


@pytest.mark.parametrize(("missing", "spinning"), [([], "0"), (["libcudart.so.13"], "")])
def test_thread_pools_do_not_spin_when_cuda_comes_first(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, missing: list[str], spinning: str
) -> None:
    """On a GPU host the intra-/inter-op pools must not spin-wait (they would burn host cores between runs);
    on a CPU host ORT's default (spin) is kept. The options ORT gets are read back from the session."""
    seen: list[dict[str, str]] = []
    real = session_module.ort.InferenceSession

    def recording(path: str, sess_options: object = None, providers: list[object] | None = None) -> object:
        entries = {}
        for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
            try:
                entries[key] = sess_options.get_session_config_entry(key)  # type: ignore[attr-defined]
            except RuntimeError:  # not set: ORT's default (spin)
                pass
        seen.append(entries)
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(session_module.ort, "InferenceSession", recording)
    monkeypatch.setattr(session_module, "missing_cuda_libraries", lambda: missing)
    create_session(load_spec(model_dir, "fused-sentiment"), GPU_FIRST)
    expected = (
        {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"} if spinning else {}
    )
    assert seen == [expected]


def test_msa_predict_on_this_cpu_host_prints_one_plain_warning(model_dir: Path) -> None:
    if not missing_cuda_libraries():
        pytest.skip("the CUDA libraries load on this host: nothing to be quiet about")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update({"PYTHONPATH": str(REPO_ROOT), "SENTIMENT_MODEL_DIR": str(model_dir)})
    env["SENTIMENT_PROVIDERS"] = ",".join(GPU_FIRST)  # the default, spelled out
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "predict", "--text", "good"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "WARNING" in lines[0] and "CUDA execution provider not used" in lines[0], result.stderr
    assert "[E:onnxruntime" not in result.stderr and "ERROR" not in result.stderr
    assert "\x1b" not in result.stderr  # no colour codes


class _FakeDriver:
    """libcuda.so.1 for set_blocking_sync: ``devices`` GPUs; ``fail``: the CUresult of setting the flags."""

    def __init__(self, devices: int, fail: int = 0, v2: bool = True) -> None:
        self.devices, self.fail, self.flags = devices, fail, {}
        if v2:
            self.cuDevicePrimaryCtxSetFlags_v2 = self._set

    def cuInit(self, flags: int) -> int:  # noqa: N802 - the driver's names
        return 0

    def cuDeviceGetCount(self, count: object) -> int:  # noqa: N802
        count._obj.value = self.devices  # type: ignore[attr-defined]
        return 0

    def cuDeviceGet(self, device: object, index: int) -> int:  # noqa: N802
        device._obj.value = 100 + index  # type: ignore[attr-defined]
        return 0

    def cuDevicePrimaryCtxSetFlags(self, device: object, flags: int) -> int:  # noqa: N802
        return self._set(device, flags)

    def _set(self, device: object, flags: int) -> int:
        self.flags[device.value] = flags  # type: ignore[attr-defined]
        return self.fail


@pytest.mark.parametrize("v2", [True, False])
def test_blocking_sync_is_set_on_every_device(v2: bool) -> None:
    driver = _FakeDriver(devices=2, v2=v2)
    assert session_module.set_blocking_sync(lambda name: driver) is None
    assert driver.flags == {100: session_module.CU_CTX_SCHED_BLOCKING_SYNC, 101: 0x04}


def test_blocking_sync_says_why_it_was_not_set() -> None:
    def no_driver(name: str) -> object:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    assert "libcuda.so.1 not loadable" in (session_module.set_blocking_sync(no_driver) or "")
    # a library that loads but is no CUDA driver (here the C library): a reason, not an AttributeError
    assert "lacks a driver API symbol" in (
        session_module.set_blocking_sync(lambda n: ctypes.CDLL(None)) or ""
    )
    assert (
        session_module.set_blocking_sync(lambda name: _FakeDriver(devices=1, fail=201))
        == "device 0: CUresult 201"
    )
