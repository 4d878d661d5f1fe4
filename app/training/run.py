"""The state one ``msa train`` run carries between its stages: folders, timings, metrics, provenance."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def round_metrics(x: Any, n: int = 4) -> Any:
    """``x`` with every float (nested in dicts, lists, tuples) rounded to ``n`` decimals, or to 3
    significant digits when smaller than 1e-3 in magnitude (so parity values such as 5e-7 survive); tuples
    become lists."""
    if isinstance(x, dict):
        return {k: round_metrics(v, n) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [round_metrics(v, n) for v in x]
    if isinstance(x, float | np.floating):
        v = float(x)
        return round(v, n) if abs(v) >= 1e-3 or v == 0 else float(f"{v:.3g}")
    return x


def process_start_time() -> float:
    """Wall-clock start of this process (Unix seconds) from ``/proc`` on Linux (so the reported total
    includes interpreter start-up and imports), else the current time."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22: starttime in clock ticks
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


class Run:
    """Holds paths, timings and the metrics dictionary that ends up in config.json / REPORT.md.

    Creates ``<output-dir>/eval`` and ``<cache-dir>/stages`` (branch checkpoints, leave-one-out jobs).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.output_dir
        self.eval_dir = self.out / "eval"
        self.eval_dir.mkdir(parents=True, exist_ok=True)
        self.stage_dir: Path = args.cache_dir / "stages"
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self.metrics: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.t0 = time.time()
        self.process_t0 = process_start_time()

    def tick(self, name: str, start: float) -> None:
        """Record (and print) the seconds since ``start`` as the duration of stage ``name``."""
        self.timings[name] = round(time.time() - start, 1)
        print(f"[{name}] {self.timings[name]:.0f} s (total {time.time() - self.t0:.0f} s)", flush=True)
