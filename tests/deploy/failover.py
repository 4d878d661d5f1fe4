"""Loopback failover harness: replicas of the real service behind Debian's nginx, configured with the
compose scale-out profile's own template (``deploy/compose/nginx/default.conf.template``), a bounded load,
one replica killed with SIGKILL mid-run.

Used by ``tests/deploy/test_nginx_failover.py`` (short run) and ``benchmarks/failover.py`` (the issue's
60 s run). Everything listens on 127.0.0.1; the load is bounded in time and count and stops by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.config import REPO_ROOT
from tests.robustness.server import Server, free_port, running_server

TEMPLATE = REPO_ROOT / "deploy" / "compose" / "nginx" / "default.conf.template"
#: The template's placeholder for the replicas' host:port; its line is repeated once per replica here.
UPSTREAM_VARIABLE = "${SENTIMENT_UPSTREAM}"
#: Seconds after the kill from which a log line counts as "after the kill".
AFTER_KILL_MARGIN_S = 1.0
TEXTS = (
    "what a lovely day, I love it",
    "this is the worst service I have ever used",
    "the meeting is at noon on tuesday",
    "great food but awful music",
)


def nginx_binary() -> str | None:
    """Path of Debian's nginx (``apt-get install nginx``), or None when it is not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.access(p, os.X_OK)), None
    )


def render_server_conf(template: str, *, listen_port: int, upstreams: list[str]) -> str:
    """The template with ``${NGINX_PORT}`` set and its ``${SENTIMENT_UPSTREAM}`` line repeated once per
    ``host:port`` in ``upstreams`` (what Docker's DNS does for a scaled compose service).

    Raises:
        ValueError: a ``${...}`` placeholder other than these two is left, or the upstream line is missing.
    """
    lines: list[str] = []
    for line in template.splitlines():
        if UPSTREAM_VARIABLE in line and not line.lstrip().startswith("#"):
            lines.extend(line.replace(UPSTREAM_VARIABLE, address) for address in upstreams)
        else:
            lines.append(line)
    rendered = "\n".join(lines).replace("${NGINX_PORT}", str(listen_port))
    code = "\n".join(ln for ln in rendered.splitlines() if not ln.lstrip().startswith("#"))
    left = re.findall(r"[$][{]\w+[}]", code)
    if left:
        raise ValueError(f"unrendered placeholder in the nginx template: {left}")
    if not any(f"server {address} " in code for address in upstreams):
        raise ValueError(f"the template has no `server {UPSTREAM_VARIABLE} ...` line")
    return rendered + "\n"


def main_conf(server_conf: Path, prefix: Path) -> str:
    """nginx.conf around the rendered template (the official image's /etc/nginx/nginx.conf plays this part
    there): one worker, temp paths and pid under ``prefix``, errors to stderr."""
    # As root, workers would drop to nobody, who cannot enter the test's temporary folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {kind}_temp_path {prefix / kind};\n" for kind in ("client_body", "proxy", "fastcgi"))
    temp += "".join(f"    {kind}_temp_path {prefix / kind};\n" for kind in ("uwsgi", "scgi"))
    return (
        f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log stderr notice;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n{temp}    include {server_conf};\n}}\n"
    )


@contextmanager
def running_nginx(upstreams: list[str], workdir: Path) -> Iterator[tuple[str, Path]]:
    """Start nginx with the rendered template in front of ``upstreams``; yield (its URL, its access log).

    Raises:
        RuntimeError: nginx is not installed, refuses the configuration or does not answer within 10 s.
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install -y --no-install-recommends nginx)")
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server_conf = prefix / "sentiment.conf"
    server_conf.write_text(
        render_server_conf(TEMPLATE.read_text(encoding="utf-8"), listen_port=port, upstreams=upstreams)
    )
    conf = prefix / "nginx.conf"
    conf.write_text(main_conf(server_conf, prefix))
    access_log, error_log = prefix / "access.log", prefix / "error.log"
    command = [binary, "-p", str(prefix), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]
    with access_log.open("wb") as out, error_log.open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited with {process.returncode}: {error_log.read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx not answering after 10 s: {error_log.read_text()}")
            time.sleep(0.05)
        yield url, access_log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: finish open requests, flush logs
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class FailoverResult:
    """What the clients saw and what nginx logged during one run."""

    duration_s: float
    kill_at_s: float
    requests: int = 0
    failures: list[str] = field(default_factory=list)  # one line per failed client request
    latencies_s: list[float] = field(default_factory=list)
    #: Requests nginx sent to more than one replica (its log's upstream_addr lists several).
    retried: int = 0
    #: Upstream address → requests it answered (the last address of each log line), logged before the kill /
    #: more than AFTER_KILL_MARGIN_S after it.
    answered_before_kill: Counter[str] = field(default_factory=Counter)
    answered_after_kill: Counter[str] = field(default_factory=Counter)
    killed: str = ""
    #: Requests the victim had in flight when it died, which nginx sent to the other replica (its error
    #: log: the connection to the victim closed or was reset while reading the response).
    in_flight_retried: int = 0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def summary(self) -> str:
        return (
            f"requests={self.requests} failed={len(self.failures)} retried_by_nginx={self.retried} "
            f"(of which in flight on the killed replica: {self.in_flight_retried}) "
            f"killed={self.killed} at {self.kill_at_s:.0f} s of {self.duration_s:.0f} s; "
            f"answered before kill={dict(self.answered_before_kill)} "
            f"after kill={dict(self.answered_after_kill)}; "
            f"latency p50={self.percentile_ms(0.5):.1f} ms p99={self.percentile_ms(0.99):.1f} ms "
            f"max={1000 * max(self.latencies_s, default=float('nan')):.1f} ms"
        )


def _client(url: str, deadline: float, max_requests: int, think_s: float, result: FailoverResult,
            lock: threading.Lock, index: int) -> None:
    """One closed-loop client: POST /v1/predict (JSON text) until ``deadline`` (monotonic s) or
    ``max_requests``, sleeping ``think_s`` between requests."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for n in range(max_requests):
            if time.monotonic() >= deadline:
                return
            start = time.monotonic()
            try:
                response = client.post("/v1/predict", json={"text": TEXTS[(n + index) % len(TEXTS)]})
                ok = response.status_code == 200 and "probabilities" in response.json()
                problem = "" if ok else f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - start
            with lock:
                result.requests += 1
                result.latencies_s.append(elapsed)
                if problem:
                    result.failures.append(f"t={start - deadline + result.duration_s:.2f}s {problem}")
            time.sleep(think_s)


_LOG_LINE = re.compile(
    r'"POST /v1/predict[^"]*" \d+ .* upstream=(?P<up>[^ ,]+(?:, [^ ,]+)*) upstream_status=.* t=(?P<t>[\d.]+)$'
)


def _read_access_log(log: Path, kill_wall_time: float, result: FailoverResult) -> None:
    for line in log.read_text(errors="replace").splitlines():
        match = _LOG_LINE.search(line)
        if match is None:
            continue
        addresses = [a.strip() for a in match["up"].split(",")]
        if len(addresses) > 1:
            result.retried += 1
        # $msec: when nginx logged the request (its end), epoch seconds with ms resolution. A response the
        # victim sent just before its death may be logged a little later (nginx descheduled under CPU
        # load): lines in the second after the kill count as neither.
        logged = float(match["t"])
        if logged < kill_wall_time:
            result.answered_before_kill[addresses[-1]] += 1
        elif logged > kill_wall_time + AFTER_KILL_MARGIN_S:
            result.answered_after_kill[addresses[-1]] += 1


def run_failover(
    workdir: Path,
    *,
    duration_s: float,
    kill_at_s: float,
    clients: int = 3,
    think_s: float = 0.02,
    max_requests_per_client: int = 20_000,
    model_dir: Path | None = None,
) -> FailoverResult:
    """Two replicas (``msa serve``, the bundled model unless ``model_dir``) behind nginx; ``clients``
    closed-loop clients for ``duration_s`` seconds; the first replica gets SIGKILL at ``kill_at_s``.

    Raises:
        RuntimeError: a replica or nginx does not start.
    """
    model_dir = model_dir or REPO_ROOT / "models"
    result = FailoverResult(duration_s=duration_s, kill_at_s=kill_at_s)
    with ExitStack() as stack:
        replicas: list[Server] = [
            stack.enter_context(running_server(model_dir, workdir, startup_s=120)) for _ in range(2)
        ]
        upstreams = [r.url.removeprefix("http://") for r in replicas]
        url, access_log = stack.enter_context(running_nginx(upstreams, workdir))
        lock = threading.Lock()
        start = time.monotonic()
        deadline = start + duration_s
        threads = [
            threading.Thread(
                target=_client,
                args=(url, deadline, max_requests_per_client, think_s, result, lock, i),
                daemon=True,
            )
            for i in range(clients)
        ]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, start + kill_at_s - time.monotonic()))
        victim = replicas[0]
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        kill_wall_time = time.time()
        result.killed = upstreams[0]
        for thread in threads:
            thread.join(timeout=duration_s + 60)
    # nginx has exited (SIGQUIT) and flushed its logs.
    _read_access_log(access_log, kill_wall_time, result)
    result.in_flight_retried = sum(
        f'upstream: "http://{result.killed}/' in line and "reading response header" in line
        for line in (access_log.parent / "error.log").read_text(errors="replace").splitlines()
    )
    return result
