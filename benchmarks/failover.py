"""Failover through the compose scale-out profile's nginx (issue 14): 60 s of load through Debian's nginx
to two replicas of the service (bundled model) on loopback, one replica killed with SIGKILL after 20 s.
Bar: 0 failed client requests; the killed replica's requests in flight are retried by nginx.

``python -m benchmarks.failover [--duration 60] [--kill-at 20] [--clients 3] [--think-ms 20]
[--out benchmarks/results/failover.txt]`` prints the numbers (and writes them to ``--out``); exit status 1
when a client request failed. Needs nginx (``apt-get install -y --no-install-recommends nginx``). The
harness is tests/deploy/failover.py, which the short test in tests/deploy also runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.deploy.failover import nginx_binary, run_failover

ROOT = Path(__file__).resolve().parent.parent


def _nginx_version() -> str:
    binary = nginx_binary()
    result = subprocess.run([binary or "nginx", "-v"], capture_output=True, text=True, timeout=10)
    return (result.stderr or result.stdout).strip()  # "nginx version: nginx/1.22.1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--kill-at", type=float, default=20.0, help="seconds into the load of the SIGKILL")
    parser.add_argument("--clients", type=int, default=3, help="concurrent closed-loop clients")
    parser.add_argument("--think-ms", type=float, default=20.0, help="pause of each client between requests")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "failover.txt")
    args = parser.parse_args(argv)
    if nginx_binary() is None:
        print("nginx not installed: apt-get install -y --no-install-recommends nginx", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="failover-") as workdir:
        result = run_failover(
            Path(workdir),
            duration_s=args.duration,
            kill_at_s=args.kill_at,
            clients=args.clients,
            think_s=args.think_ms / 1000,
        )
    lines = [
        f"# Failover through nginx (deploy/compose/nginx/default.conf.template), {time.strftime('%Y-%m-%d')}",
        f"machine: {platform.machine()}, {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"{_nginx_version()}",
        f"command: python -m benchmarks.failover --duration {args.duration:g} --kill-at {args.kill_at:g} "
        f"--clients {args.clients} --think-ms {args.think_ms:g}",
        f"client requests: {result.requests}",
        f"failed client requests: {len(result.failures)}",
        f"requests nginx retried on the other replica: {result.retried}",
        f"  of which in flight on the killed replica when it died: {result.in_flight_retried}",
        f"answered before the kill, per replica: {dict(result.answered_before_kill)}",
        f"answered from 1 s after the kill, per replica: {dict(result.answered_after_kill)} "
        f"(killed: {result.killed})",
        f"latency: p50 {result.percentile_ms(0.5):.1f} ms, p99 {result.percentile_ms(0.99):.1f} ms, "
        f"max {1000 * max(result.latencies_s, default=0):.1f} ms",
        *(f"FAILED: {line}" for line in result.failures[:50]),
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
