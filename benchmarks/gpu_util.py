"""GPU utilisation during a benchmark point, read through NVML (``pynvml`` from the ``nvidia-ml-py``
package, BSD-3-Clause), when the benchmark runs on a GPU (``BENCH_GPU=1``) and NVML is available.

NVML's ``utilization.gpu`` is the percentage of time over its last sample period (1/6 s to 1 s, by product)
during which one or more kernels was executing on the GPU (NVML API reference, ``nvmlUtilization_t``): a
busy-time share, not a measure of how many SMs the kernels kept busy. ``memory.used`` is the device memory
in use by every process.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class GpuSampler:
    """Samples GPU 0's utilisation (%) and device memory in use (MiB) every ``interval_s`` seconds in a
    background thread between :meth:`start` and :meth:`stop`. Without NVML (no ``pynvml``, no driver) it
    samples nothing and :meth:`stop` returns ``{}``."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self._handle: Any = None
        self._nvml: Any = None
        try:
            import pynvml  # type: ignore[import-not-found,unused-ignore]

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - no NVML: the point is reported without GPU columns
            self._handle = None
        self._util: list[float] = []
        self._mem: list[float] = []
        self._running = False
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if not self.available:
            return
        self._util, self._mem, self._running = [], [], True

        def loop() -> None:
            while self._running:
                try:
                    self._util.append(float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
                    self._mem.append(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20)
                except Exception:  # noqa: BLE001 - a failed read is skipped
                    pass
                time.sleep(self.interval_s)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """``{"gpu_util_pct": mean, "gpu_util_max_pct": max, "gpu_mem_mib": max}`` over the samples, or
        ``{}`` without NVML or samples."""
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if not self._util:
            return {}
        return {
            "gpu_util_pct": sum(self._util) / len(self._util),
            "gpu_util_max_pct": max(self._util),
            "gpu_mem_mib": max(self._mem) if self._mem else float("nan"),
        }
