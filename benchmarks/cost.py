"""Server CPU time per request, this checkout against a baseline commit, on the realistic corpus (issue 15).

    python -m benchmarks.cost --baseline b0cf561 [--n 10] [--kinds KIND ...] [--json PATH]
    python -m benchmarks.cost --split [--n 10] [--kinds KIND ...]

**Servers.** The baseline commit is checked out with ``git worktree add --detach`` into a temporary folder
(its models are committed in its tree) and removed at the end, whatever happens. Both services start as a
user starts them, ``python -m app.cli serve`` from their own tree with this interpreter (this venv), each on
a free loopback port and its own tree's ``models/``, with the same settings: one uvicorn worker, the CPU
execution provider, and the same thread settings (``SENTIMENT_PREPROCESS_WORKERS``, ``_BATCH_WORKERS``,
``_INTRA_OP_THREADS``, ``_INTER_OP_THREADS``, ``_MAX_BATCH_SIZE``; ``--env KEY=VALUE`` adds more, to
both). Other ``SENTIMENT_*`` variables of the calling shell reach both servers alike. A baseline whose
declared dependencies (its ``pyproject.toml``) are missing from this venv gets them with
``pip install --no-deps --target`` into a cache folder (``benchmarks/results/raw/cost/deps-*``,
gitignored; the venv is not touched) put on its ``PYTHONPATH`` only: b0cf561 needs
``opencv-python-headless<5`` (its Haar-cascade face detector), which the service no longer uses.
``--no-install`` stops with the pip command instead.

**Measurement.** Both servers are warmed up with every request kind, then for each request kind ``--n``
sequential multipart ``POST /v1/predict`` requests go to each server, the two servers alternating request
by request (and which goes first alternating too), so drift of the machine hits both alike. The CPU time of
a request is the server process tree's CPU time (user + system, all threads) after the answer plus
``--settle-ms`` (post-response work) minus before the request, read from the kernel's per-process CPU
clock (``clock_gettime`` on the pid's CPU-time clock, ns resolution; psutil's ``cpu_times`` counts 10 ms
ticks, which is too coarse for a 20 ms request; children are found with psutil). A request a server
answers with anything but 200 (e.g. 413 for an image over its pixel limit) is counted as such, not timed.
Printed: per kind the median and mean CPU ms per request of each server and the ratio this ÷ baseline,
each server's peak RSS increase while it answered that kind (process tree, sampled every 10 ms, over its
RSS just before the kind's first request, after the warm-up),
how many requests each server used each modality in (``T``/``I``/``A``: text, image, audio), and each
server's HTTP status counts. ``--json`` (default ``benchmarks/results/raw/cost/cost-<baseline>.json``)
gets every per-request number.

**Split (``--split``).** In this process, for this checkout only, with the same settings: per request kind
the service's own stages on ``--n`` requests: decoding (``app.preprocessing.experts.DECODERS``), each
expert's preparation (``DEFAULT_EXPERTS[...].prepare``: face detector + crop, scene pixels, tokenizer +
language gate, voice activity detector + log-mel), and the model (``collate`` + ``OnnxModel.run`` at batch
1). Prints median CPU ms per stage and kind (``time.process_time``: all threads of this process) and the
median wall ms. Needs no baseline.

Request kinds (:data:`KINDS`): the item kinds of :mod:`benchmarks.realistic` and ``tweet+12mp+m4a`` (a
tweet, a 12 MP phone photo and an 8 s M4A voice note in one request). Linux only (per-process CPU clocks).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]

from benchmarks import realistic
from benchmarks.corpus import Sample
from benchmarks.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
RAW = ROOT / "benchmarks" / "results" / "raw" / "cost"
#: Request kinds measured by default, in this order: every item kind of the corpus alone (the 8 s M4A only
#: inside the three-field request) and the three-field request.
KINDS: tuple[str, ...] = (*(k for k in realistic.KINDS if k != "voice_m4a_8s"), "tweet+12mp+m4a")
#: Request fields, in the order the response lists them.
_MODALITIES = ("text", "image", "audio")


# --------------------------------------------------------------------------- CPU clocks
def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads, ns resolution) of process ``pid``: the kernel's
    per-process CPU-time clock (``clock_getcpuclockid``: clock id ``(~pid << 3) | 2``, CPUCLOCK_SCHED).
    Falls back to psutil (10 ms ticks) where that clock cannot be read.

    Raises:
        psutil.NoSuchProcess: the process is gone.
    """
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)


def tree_cpu_s(server: ServerProcess) -> float:
    """CPU seconds of ``server``'s process and all its descendants (gone processes count 0)."""
    root = server.ps
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            total += process_cpu_s(p.pid)
    return total


# --------------------------------------------------------------------------- baseline tree
def _git(*args: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def resolve_commit(rev: str) -> str:
    """Full sha of ``rev``.

    Raises:
        SystemExit: ``rev`` is not a commit of this repository.
    """
    try:
        return _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--baseline {rev}: not a commit of {ROOT} ({exc.stderr.strip()})") from exc


def missing_requirements(tree: Path) -> list[str]:
    """The requirements of ``tree``'s ``pyproject.toml`` ``[project] dependencies`` (markers evaluated) that
    this interpreter's environment lacks or has in a version outside the specifier."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    project = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    missing = []
    for spec in project.get("dependencies", []):
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            missing.append(spec)
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            missing.append(spec)
    return missing


def baseline_pythonpath(tree: Path, commit: str, install: bool) -> list[str]:
    """Folders to put on the baseline server's ``PYTHONPATH``: a cache of its missing requirements
    (``pip install --no-deps --target``), installed on first use unless ``install`` is False.

    Raises:
        SystemExit: requirements are missing and ``install`` is False, or pip fails.
    """
    missing = missing_requirements(tree)
    if not missing:
        return []
    key = hashlib.sha256("\n".join(sorted(missing)).encode()).hexdigest()[:12]
    site = RAW / f"deps-{key}"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), *missing]
    if not (site / ".complete").exists():
        if not install:
            raise SystemExit(
                f"baseline {commit[:7]} needs {missing}, not installed in this environment; run\n  "
                + " ".join(f"'{c}'" if "<" in c or ">" in c else c for c in cmd)
                + "\nor drop --no-install"
            )
        print(f"baseline {commit[:7]} needs {missing} (not in this venv): installing into {site}", flush=True)
        shutil.rmtree(site, ignore_errors=True)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"pip could not install {missing} for the baseline:\n{result.stderr[-2000:]}")
        (site / ".complete").write_text("\n".join(missing) + "\n", encoding="utf-8")
    else:
        print(f"baseline {commit[:7]} needs {missing} (not in this venv): using {site}", flush=True)
    return [str(site)]


def check_imports(tree: Path, env: dict[str, str], label: str) -> None:
    """Import ``app.main`` from ``tree`` as its server will (same interpreter, env, cwd).

    Raises:
        SystemExit: the import fails (the message ends with the error's last lines).
    """
    code = "import app, app.main, sys; sys.stdout.write(app.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-6:])
        raise SystemExit(f"{label}: its app does not import with {sys.executable}:\n{tail}")
    if not Path(result.stdout).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{label}: 'import app' found {result.stdout}, not the tree {tree}")


# --------------------------------------------------------------------------- servers
@dataclass(frozen=True)
class Threads:
    """The thread settings both servers (and ``--split``) get."""

    preprocess_workers: int
    batch_workers: int
    intra_op_threads: int
    inter_op_threads: int
    max_batch_size: int

    def env(self) -> dict[str, str]:
        return {
            "SENTIMENT_WORKERS": "1",
            "SENTIMENT_PROVIDERS": "CPUExecutionProvider",
            "SENTIMENT_PREPROCESS_WORKERS": str(self.preprocess_workers),
            "SENTIMENT_BATCH_WORKERS": str(self.batch_workers),
            "SENTIMENT_INTRA_OP_THREADS": str(self.intra_op_threads),
            "SENTIMENT_INTER_OP_THREADS": str(self.inter_op_threads),
            "SENTIMENT_MAX_BATCH_SIZE": str(self.max_batch_size),
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(tree: Path, port: int, settings: dict[str, str], pythonpath: Sequence[str]) -> dict[str, str]:
    """The full environment of one server: this process's, the shared settings, its port and models."""
    env = {
        **os.environ,
        **settings,
        "SENTIMENT_HOST": "127.0.0.1",
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_MODEL_DIR": str(tree / "models"),
        "SENTIMENT_LOG_LEVEL": "warning",
        "PYTHONUNBUFFERED": "1",
    }
    paths = [*pythonpath, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


def start(name: str, tree: Path, env: dict[str, str], timeout_s: float) -> ServerProcess:
    """Start ``python -m app.cli serve`` in ``tree`` and wait for ``/readyz``.

    Raises:
        SystemExit: it exits or is not ready within ``timeout_s`` (with the log's last lines).
    """
    port = int(env["SENTIMENT_PORT"])
    cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(name, cmd, port, "/readyz", RAW, env=env, cwd=tree)
    try:
        seconds = server.start(timeout_s)
    except (RuntimeError, TimeoutError) as exc:
        server.stop()
        log = (
            server.log_path.read_text(encoding="utf-8", errors="replace") if server.log_path.exists() else ""
        )
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise SystemExit(
            f"server {name} did not become ready: {exc}\n--- {server.log_path} (end) ---\n{tail}"
        ) from None
    print(f"{name}: ready in {seconds:.1f} s on port {port} (pid {server.ps.pid})", flush=True)
    return server


# --------------------------------------------------------------------------- requests
@dataclass
class Result:
    """One server's answers to one request kind: statuses, CPU and wall ms of its 200 answers, the
    server's own timing headers, and in how many answers each modality was used."""

    statuses: Counter[int] = field(default_factory=Counter)
    cpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    rejected_cpu_ms: list[float] = field(default_factory=list)
    preprocess_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    used: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    #: Peak RSS of the server's process tree while it answered this kind, minus its RSS just before (MB).
    rss_increase_mb: float | None = None

    def summary(self) -> dict[str, Any]:
        def med(xs: list[float]) -> float | None:
            return round(statistics.median(xs), 3) if xs else None

        def mean(xs: list[float]) -> float | None:
            return round(statistics.fmean(xs), 3) if xs else None

        return {
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "median_cpu_ms": med(self.cpu_ms),
            "mean_cpu_ms": mean(self.cpu_ms),
            "median_wall_ms": med(self.wall_ms),
            "median_preprocess_ms": med(self.preprocess_ms),
            "median_inference_ms": med(self.inference_ms),
            "used": dict(self.used),
            "cpu_ms": [round(x, 3) for x in self.cpu_ms],
            "wall_ms": [round(x, 3) for x in self.wall_ms],
            "rejected_cpu_ms": [round(x, 3) for x in self.rejected_cpu_ms],
            "errors": self.errors[:3],
            "peak_rss_increase_mb": self.rss_increase_mb,
        }


@dataclass(frozen=True)
class Body:
    content: bytes
    content_type: str


def bodies(corpus: realistic.Corpus, kind: str, count: int) -> list[Body]:
    """``count`` multipart bodies of request kind ``kind`` (items cycled)."""
    return [Body(*realistic.multipart_body(s)) for s in realistic.request_samples(corpus, kind, count)]


def send(
    client: httpx.Client, server: ServerProcess, body: Body, settle_s: float
) -> tuple[httpx.Response, float, float]:
    """POST one body; returns (response, server CPU ms, wall ms). A keep-alive connection the server closed
    just before the request is retried once (the server never saw it)."""
    url = f"http://127.0.0.1:{server.port}/v1/predict"
    for attempt in range(2):
        _alive(server)
        cpu0, t0 = tree_cpu_s(server), time.perf_counter()
        try:
            response = client.post(url, content=body.content, headers={"Content-Type": body.content_type})
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError, httpx.ConnectError):
            _alive(server)
            if attempt == 1:
                raise
            continue
        wall = time.perf_counter() - t0
        time.sleep(settle_s)
        return response, (tree_cpu_s(server) - cpu0) * 1000.0, wall * 1000.0
    raise AssertionError("unreachable")


def _alive(server: ServerProcess) -> None:
    """Raises SystemExit (with the log's path) when ``server`` has exited."""
    assert server.proc is not None
    code = server.proc.poll()
    if code is not None:
        raise SystemExit(
            f"server {server.name} exited with status {code} during the run; see {server.log_path}"
        )


def record(result: Result, response: httpx.Response, cpu_ms: float, wall_ms: float) -> None:
    result.statuses[response.status_code] += 1
    if response.status_code != 200:
        result.rejected_cpu_ms.append(cpu_ms)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            result.errors.append(f"{response.status_code} {response.json()['error']['message']}")
        return
    result.cpu_ms.append(cpu_ms)
    result.wall_ms.append(wall_ms)
    for header, values in (
        ("x-preprocess-time-ms", result.preprocess_ms),
        ("x-inference-time-ms", result.inference_ms),
    ):
        with contextlib.suppress(KeyError, ValueError):
            values.append(float(response.headers[header]))
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        modalities = response.json()["modalities"]
        for m in _MODALITIES:
            if modalities.get(m) and modalities[m].get("used"):
                result.used[m] += 1


def idle_cpu_ms_per_s(server: ServerProcess, seconds: float = 1.0) -> float:
    """The server's CPU ms per second while no request is sent (background threads)."""
    c0 = tree_cpu_s(server)
    time.sleep(seconds)
    return (tree_cpu_s(server) - c0) * 1000.0 / seconds


#: Interval of the RSS sampler while a kind's requests run (s): a 48 MP photo takes ~300 ms on the server.
RSS_SAMPLE_S = 0.01


def measure(
    servers: Sequence[ServerProcess],
    corpus: realistic.Corpus,
    kinds: Sequence[str],
    n: int,
    warmup: int,
    settle_s: float,
) -> tuple[dict[str, dict[str, Result]], dict[str, Counter[int]]]:
    """Warm up, then per kind ``n`` requests to each server, alternating. Returns
    (kind → server name → :class:`Result`, server name → warm-up statuses)."""
    warm: dict[str, Counter[int]] = {s.name: Counter() for s in servers}
    results: dict[str, dict[str, Result]] = {}
    with httpx.Client(timeout=300.0) as client:
        for kind in kinds:
            for body in bodies(corpus, kind, warmup):
                for server in servers:
                    response, _, _ = send(client, server, body, 0.0)
                    warm[server.name][response.status_code] += 1
        print(f"warm-up done ({warmup} request(s) per kind per server)", flush=True)
        for kind in kinds:
            results[kind] = {s.name: Result() for s in servers}
            kind_bodies = bodies(corpus, kind, n)
            before = {s.name: s.rss_bytes() for s in servers}
            for server in servers:
                server.start_sampling(RSS_SAMPLE_S)
            t0 = time.perf_counter()
            try:
                for i, body in enumerate(kind_bodies):
                    order = servers if i % 2 == 0 else list(reversed(servers))
                    for server in order:
                        response, cpu_ms, wall_ms = send(client, server, body, settle_s)
                        record(results[kind][server.name], response, cpu_ms, wall_ms)
            finally:
                for server in servers:
                    peak = server.stop_sampling()
                    results[kind][server.name].rss_increase_mb = round((peak - before[server.name]) / 1e6, 1)
            print(f"  {kind}: {n} × {len(servers)} requests in {time.perf_counter() - t0:.1f} s", flush=True)
    return results, warm


# --------------------------------------------------------------------------- report
def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _cell(result: Result) -> tuple[str, str, str]:
    """(median, mean, note) of one server's CPU ms for one kind."""
    rejected = {k: v for k, v in result.statuses.items() if k != 200}
    note = " ".join(f"{k}×{v}" for k, v in sorted(rejected.items()))
    if not result.cpu_ms:
        return "-", "-", note or "no answer"
    return _fmt(statistics.median(result.cpu_ms)), _fmt(statistics.fmean(result.cpu_ms)), note


def _used(result: Result, n: int) -> str:
    return " ".join(f"{m[0].upper()}{result.used.get(m, 0)}" for m in _MODALITIES) if n else "-"


def table(results: dict[str, dict[str, Result]], base: str, this: str) -> list[str]:
    head = (
        f"{'kind':<24} {'baseline CPU ms/req':>24} {'this checkout CPU ms/req':>26} {'this/baseline':>15}"
        f"   {'peak RSS +MB':>14}   {'used (baseline | this)':<24} rejected"
    )
    sub = f"{'':<24} {'median':>8} {'mean':>8} {'n':>6} {'median':>10} {'mean':>8} {'n':>6}"
    sub += f" {'median':>7} {'mean':>7}   {'base':>6} {'this':>6}"
    lines = [head, sub, "-" * len(head)]
    for kind, by_server in results.items():
        b, t = by_server[base], by_server[this]
        bm, bmean, bnote = _cell(b)
        tm, tmean, tnote = _cell(t)
        ratio_med = ratio_mean = "-"
        if b.cpu_ms and t.cpu_ms:
            ratio_med = f"{statistics.median(t.cpu_ms) / statistics.median(b.cpu_ms):.2f}"
            ratio_mean = f"{statistics.fmean(t.cpu_ms) / statistics.fmean(b.cpu_ms):.2f}"
        used = f"{_used(b, len(b.cpu_ms))} | {_used(t, len(t.cpu_ms))}"
        rejected = "; ".join(
            x for x in (f"baseline {bnote}" if bnote else "", f"this {tnote}" if tnote else "") if x
        )
        lines.append(
            f"{kind:<24} {bm:>8} {bmean:>8} {len(b.cpu_ms):>6} {tm:>10} {tmean:>8} {len(t.cpu_ms):>6}"
            f" {ratio_med:>7} {ratio_mean:>7}   {_fmt(b.rss_increase_mb):>6} {_fmt(t.rss_increase_mb):>6}"
            f"   {used:<24} {rejected}"
        )
    return lines


# --------------------------------------------------------------------------- split
@dataclass
class StageTimes:
    """Per stage of one kind: CPU ms and wall ms of each request (stages absent in a request count 0)."""

    cpu: dict[str, list[float]] = field(default_factory=dict)
    wall: dict[str, list[float]] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)

    def add(self, stage: str, cpu_ms: float, wall_ms: float) -> None:
        self.cpu.setdefault(stage, []).append(cpu_ms)
        self.wall.setdefault(stage, []).append(wall_ms)


class _Clock:
    """Accumulates CPU (``time.process_time``) and wall ms per stage of one request."""

    def __init__(self) -> None:
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.wall: defaultdict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] += (time.process_time() - c0) * 1000.0
            self.wall[name] += (time.perf_counter() - t0) * 1000.0


SPLIT_STAGES: tuple[str, ...] = (
    "decode",
    "prepare:face",
    "prepare:scene",
    "prepare:text",
    "prepare:audio",
    "prepare",
    "collate",
    "model",
    "total",
)


def split(
    corpus: realistic.Corpus, kinds: Sequence[str], n: int, settings_env: dict[str, str]
) -> dict[str, StageTimes]:
    """Time this checkout's stages in-process per request kind (``n`` requests each, after one untimed
    pass over every kind)."""
    os.environ.update(settings_env)
    os.environ.setdefault("SENTIMENT_MODEL_DIR", str(ROOT / "models"))
    from app.config import Settings
    from app.inference.collate import collate
    from app.inference.model import OnnxModel
    from app.inference.startup import build_pipeline, limit_blas_threads
    from app.preprocessing.errors import PreprocessingError
    from app.preprocessing.experts import DECODERS, DEFAULT_EXPERTS, ExpertInput
    from app.preprocessing.pipeline import PreparedItem

    settings = Settings()
    limit_blas_threads()
    model = OnnxModel.load(settings)
    pipeline = build_pipeline(model, settings, DEFAULT_EXPERTS)
    experts = {e.name: DEFAULT_EXPERTS[e.name] for e in model.contract.experts}
    buckets = settings.audio_buckets_frames()

    def one(sample: Sample, clock: _Clock) -> str | None:
        facts: dict[str, Any] = {}
        parts: dict[str, ExpertInput] = {}
        try:
            for modality in model.contract.modalities:
                value = getattr(sample, modality)
                if value is None:
                    continue
                with clock.stage("decode"):
                    decoded = DECODERS[modality](value, pipeline.limits)
                facts[modality] = decoded.facts
                for name, expert in experts.items():
                    if expert.modality == modality:
                        with clock.stage(f"prepare:{name}"):
                            parts[name] = expert.prepare(decoded.value, pipeline.resources)
        except PreprocessingError as exc:
            return type(exc).__name__
        item = PreparedItem(facts, parts)
        with clock.stage("collate"):
            feeds = collate(
                [item],
                contract=model.contract,
                text_multiple=settings.text_length_multiple,
                audio_buckets=buckets,
            )
        with clock.stage("model"):
            model.run(feeds)
        return None

    samples = {k: realistic.request_samples(corpus, k, n) for k in kinds}
    for k in kinds:  # untimed: first-call costs (detector and VAD sessions, shapes)
        one(samples[k][0], _Clock())
    out: dict[str, StageTimes] = {}
    for k in kinds:
        times = StageTimes()
        for sample in samples[k]:
            clock = _Clock()
            t0, c0 = time.perf_counter(), time.process_time()
            error = one(sample, clock)
            if error is not None:
                times.rejected[error] += 1
                continue
            prepare = [s for s in clock.cpu if s.startswith("prepare:")]
            clock.cpu["prepare"] = sum(clock.cpu[s] for s in prepare)
            clock.wall["prepare"] = sum(clock.wall[s] for s in prepare)
            clock.cpu["total"] = (time.process_time() - c0) * 1000.0
            clock.wall["total"] = (time.perf_counter() - t0) * 1000.0
            for stage in SPLIT_STAGES:
                times.add(stage, clock.cpu.get(stage, 0.0), clock.wall.get(stage, 0.0))
        out[k] = times
        print(f"  {k}: done", flush=True)
    return out


def split_table(times: dict[str, StageTimes], what: str) -> list[str]:
    head = f"{'kind':<24}" + "".join(f"{s.removeprefix('prepare:'):>9}" for s in SPLIT_STAGES) + "  rejected"
    lines = [f"{what}: median ms per request (prepare = face + scene + text + audio)", head, "-" * len(head)]
    for kind, t in times.items():
        values = t.cpu if what.startswith("CPU") else t.wall
        cells = "".join(
            f"{_fmt(statistics.median(values[s]) if values.get(s) else None):>9}" for s in SPLIT_STAGES
        )
        rejected = " ".join(f"{k}×{v}" for k, v in t.rejected.items())
        lines.append(f"{kind:<24}{cells}  {rejected}")
    return lines


# --------------------------------------------------------------------------- main
def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(143)  # run the finally blocks: servers stopped, worktree removed


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def run_servers(args: argparse.Namespace, corpus: realistic.Corpus, settings: dict[str, str]) -> None:
    commit = resolve_commit(args.baseline)
    head = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "app", "models"))
    base_name, this_name = f"baseline-{commit[:7]}", "this"
    tmp = Path(tempfile.mkdtemp(prefix="msa-cost-"))
    tree = tmp / "baseline"
    servers: list[ServerProcess] = []
    try:
        _git("worktree", "add", "--detach", str(tree), commit)
        print(f"baseline {commit[:7]} checked out in {tree}", flush=True)
        pythonpath = baseline_pythonpath(tree, commit, install=not args.no_install)
        base_env = server_env(tree, free_port(), settings, pythonpath)
        this_env = server_env(ROOT, free_port(), settings, [])
        check_imports(tree, base_env, base_name)
        servers.append(start(base_name, tree, base_env, args.ready_timeout))
        servers.append(start(this_name, ROOT, this_env, args.ready_timeout))
        idle = {s.name: round(idle_cpu_ms_per_s(s), 2) for s in servers}
        print(f"idle CPU ms/s: {idle}", flush=True)
        results, warm = measure(servers, corpus, args.kinds, args.n, args.warmup, args.settle_ms / 1000.0)
    finally:
        for s in servers:
            s.stop()
        with contextlib.suppress(subprocess.CalledProcessError):
            _git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            _git("worktree", "prune")
    print()
    print(
        f"Server CPU ms per request (user + system, whole process tree), n = {args.n} per kind and server; "
        f"baseline {commit[:7]}, this checkout {head[:7]}{' + uncommitted app/ changes' if dirty else ''}"
    )
    for line in table(results, base_name, this_name):
        print(line)
    print()
    for s in servers:
        measured: Counter[int] = Counter()
        for by_server in results.values():
            measured.update(by_server[s.name].statuses)
        print(
            f"HTTP statuses {s.name}: measured {dict(sorted(measured.items()))}, "
            f"warm-up {dict(sorted(warm[s.name].items()))}; cold start {s.cold_start_s:.1f} s"
        )
        for kind, by_server in results.items():
            for err in sorted(set(by_server[s.name].errors)):
                print(f"  {kind}: {err}")
    out = args.json or RAW / f"cost-{commit[:7]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "baseline": commit,
        "this": {"head": head, "uncommitted_app_changes": dirty},
        "n": args.n,
        "warmup": args.warmup,
        "settle_ms": args.settle_ms,
        "settings": settings,
        "machine": _machine(),
        "idle_cpu_ms_per_s": idle,
        "cold_start_s": {s.name: round(s.cold_start_s, 2) for s in servers},
        "warmup_statuses": {k: {str(s): c for s, c in v.items()} for k, v in warm.items()},
        "kinds": {
            kind: {
                **{name: r.summary() for name, r in by_server.items()},
                "ratio_median": _ratio(
                    by_server[this_name].cpu_ms, by_server[base_name].cpu_ms, statistics.median
                ),
                "ratio_mean": _ratio(
                    by_server[this_name].cpu_ms, by_server[base_name].cpu_ms, statistics.fmean
                ),
            }
            for kind, by_server in results.items()
        },
    }
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def _ratio(this: list[float], base: list[float], stat: Any) -> float | None:
    return round(float(stat(this)) / float(stat(base)), 3) if this and base else None


def main() -> None:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--baseline", help="commit to compare with (e.g. b0cf561); required without --split")
    parser.add_argument("--split", action="store_true", help="time this checkout's stages in-process instead")
    parser.add_argument("--n", type=int, default=10, help="requests per kind and server (default 10)")
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=sorted(realistic.REQUESTS),
        default=list(KINDS),
        metavar="KIND",
        help=f"request kinds (default: all of {', '.join(KINDS)}; choices: {', '.join(realistic.REQUESTS)})",
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="warm-up requests per kind and server (default 1)"
    )
    parser.add_argument(
        "--settle-ms",
        type=float,
        default=20.0,
        help="wait after each answer before reading the CPU (default 20)",
    )
    parser.add_argument(
        "--items", type=int, default=12, help="corpus items per kind (benchmarks.realistic --n)"
    )
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--data-dir", type=Path, default=realistic.DATA_DIR, help="default ../shared/data")
    parser.add_argument(
        "--json", type=Path, default=None, help="default benchmarks/results/raw/cost/cost-<sha>.json"
    )
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for /readyz")
    parser.add_argument(
        "--no-install", action="store_true", help="never pip-install missing baseline packages"
    )
    parser.add_argument("--preprocess-workers", type=int, default=max(1, min(4, cpus)))
    parser.add_argument("--batch-workers", type=int, default=2)
    parser.add_argument("--intra-op-threads", type=int, default=max(1, cpus // 2))
    parser.add_argument("--inter-op-threads", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another setting for both (repeatable)",
    )
    args = parser.parse_args()
    if not args.split and not args.baseline:
        parser.error("--baseline is required (or --split)")
    if args.n < 1:
        parser.error("--n must be at least 1")
    threads = Threads(
        args.preprocess_workers,
        args.batch_workers,
        args.intra_op_threads,
        args.inter_op_threads,
        args.max_batch_size,
    )
    settings = threads.env()
    for pair in args.env:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser.error(f"--env {pair!r}: expected KEY=VALUE")
        settings[key] = value
    needed = sorted({k for r in args.kinds for k in realistic.REQUESTS[r]}, key=realistic.KINDS.index)
    corpus = realistic.build(needed, n=args.items, seed=args.seed, data_dir=args.data_dir, progress=print)
    signal.signal(signal.SIGTERM, _sigterm)
    if args.split:
        print(f"in-process stages of this checkout, n = {args.n} per kind; settings {settings}", flush=True)
        times = split(corpus, args.kinds, args.n, settings)
        print()
        for what in ("CPU", "wall"):
            for line in split_table(times, what):
                print(line)
            print()
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "n": args.n,
                "settings": settings,
                "machine": _machine(),
                "kinds": {
                    k: {"cpu_ms": t.cpu, "wall_ms": t.wall, "rejected": dict(t.rejected)}
                    for k, t in times.items()
                },
            }
            args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
            print(f"wrote {args.json}")
        return
    run_servers(args, corpus, settings)


if __name__ == "__main__":
    main()
