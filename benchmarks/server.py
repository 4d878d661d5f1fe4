"""Start a server under test as a subprocess, wait for readiness, measure its CPU and RSS with psutil."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class ServerProcess:
    """A server subprocess (its own process group) with readiness wait and resource sampling.

    CPU and RSS cover the whole process tree (LitServe and PyTriton run worker processes).
    """

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        ready_path: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name, self.cmd, self.port, self.ready_path = name, cmd, port, ready_path
        self.log_path = log_dir / f"server-{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.cold_start_s = float("nan")
        self._rss_peak = 0
        self._sampling = False

    def start(self, timeout_s: float | None = None) -> float:
        """Spawn and wait until ``GET ready_path`` answers 200; returns the cold start in seconds.

        ``timeout_s`` defaults to ``BENCH_READY_TIMEOUT`` (seconds, default 300)."""
        if timeout_s is None:
            timeout_s = float(os.environ.get("BENCH_READY_TIMEOUT", "300"))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
        )
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        with httpx.Client(timeout=5.0) as client:
            while time.perf_counter() - t0 < timeout_s:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
                try:
                    if client.get(url).status_code == 200:
                        self.cold_start_s = time.perf_counter() - t0
                        return self.cold_start_s
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout_s} s; see {self.log_path}")

    @property
    def ps(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in _tree(self.ps):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss_bytes(self) -> int:
        total = 0
        for p in _tree(self.ps):
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def start_sampling(self, interval_s: float = 0.25) -> None:
        """Track the peak tree RSS in a background thread until :meth:`stop_sampling`."""
        self._rss_peak, self._sampling = self.rss_bytes(), True

        def loop() -> None:
            while self._sampling:
                self._rss_peak = max(self._rss_peak, self.rss_bytes())
                time.sleep(interval_s)

        threading.Thread(target=loop, daemon=True).start()

    def stop_sampling(self) -> int:
        self._sampling = False
        return self._rss_peak

    def pause(self) -> None:
        """SIGSTOP the server's whole process group: it keeps its memory and sockets but takes no CPU (no
        idle polling, no spinning threads) while another target is measured."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group after :meth:`pause`."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()  # a stopped process would not act on SIGINT
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
