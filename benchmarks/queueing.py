"""Latency floor of an ideal server under Poisson load: an M/G/c first-come-first-served simulation.

Question it answers: with ``c`` cores, each request needing ``S`` ms of one core, and Poisson arrivals at
utilisation ρ, how low can p99 latency be, relative to the unloaded latency, for ANY server that runs
each request on one core at full speed (no contention, no overhead)? Used in ANALYSIS.md to judge issue
4's bar "p99 at 50 % of max throughput ≤ 3 × unloaded p50".

Service times are drawn from a normal distribution with the given coefficient of variation (clipped to
[0.3, 3] × mean); ``--cv 0`` is deterministic (M/D/c), the best case.

Run: ``python -m benchmarks.queueing --cores 2 --rho 0.5 --cv 0 0.2 0.3 0.5``.
"""

from __future__ import annotations

import argparse
import heapq

import numpy as np
import numpy.typing as npt


def simulate(cores: int, rho: float, cv: float, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """p50 and p99 response time of an M/G/``cores`` FCFS queue, in units of the mean service time.

    Args:
        cores: parallel servers (each request uses one).
        rho: utilisation, arrival rate × mean service time ÷ cores, in (0, 1).
        cv: coefficient of variation of the service time (0 = deterministic).
        n: simulated requests (the first 5 % are discarded as warm-up).
        seed: NumPy RNG seed.

    Raises:
        ValueError: ``rho`` not in (0, 1) or ``cores`` < 1.
    """
    if not 0.0 < rho < 1.0 or cores < 1:
        raise ValueError("need 0 < rho < 1 and cores >= 1")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / (rho * cores), n))  # mean service time = 1
    service = np.clip(rng.normal(1.0, cv, n), 0.3, 3.0) if cv > 0 else np.ones(n)
    return _fcfs(cores, arrivals, service)


def simulate_times(
    cores: int, rate: float, service_s: npt.ArrayLike, n: int = 200_000, seed: int = 0
) -> tuple[float, float]:
    """p50 and p99 response time (seconds) of an M/G/``cores`` FCFS queue with Poisson arrivals at
    ``rate`` per second and service times drawn (with replacement) from the measured ``service_s``
    (seconds): the floor for a mix whose requests cost very different amounts (a tweet vs a phone photo).

    Raises:
        ValueError: no service times, ``cores`` < 1, or utilisation ``rate × mean ÷ cores`` not in (0, 1).
    """
    times = np.asarray(service_s, dtype=np.float64)
    if times.size == 0 or cores < 1:
        raise ValueError("need service times and cores >= 1")
    rho = rate * float(times.mean()) / cores
    if not 0.0 < rho < 1.0:
        raise ValueError(f"utilisation {rho:.3f} not in (0, 1)")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, n))
    return _fcfs(cores, arrivals, rng.choice(times, n))


def _fcfs(
    cores: int, arrivals: npt.NDArray[np.float64], service: npt.NDArray[np.float64]
) -> tuple[float, float]:
    """p50 and p99 response time of first-come-first-served ``cores`` servers (first 5 % discarded)."""
    free = [0.0] * cores  # min-heap of the times each server becomes free
    response = np.empty(arrivals.size)
    for i in range(arrivals.size):
        start = max(arrivals[i], heapq.heappop(free))
        done = start + service[i]
        heapq.heappush(free, done)
        response[i] = done - arrivals[i]
    kept = response[arrivals.size // 20 :]
    return float(np.percentile(kept, 50)), float(np.percentile(kept, 99))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.queueing", description=__doc__)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--rho", type=float, default=0.5)
    p.add_argument("--cv", type=float, nargs="+", default=[0.0, 0.2, 0.3, 0.5])
    args = p.parse_args(argv)
    print(f"M/G/{args.cores} FCFS, Poisson arrivals, utilisation {args.rho}: latency / mean service time")
    print("| service-time CV | p50 | p99 |")
    print("|---|---|---|")
    for cv in args.cv:
        p50, p99 = simulate(args.cores, args.rho, cv)
        print(f"| {cv:g} | {p50:.2f} | {p99:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
