"""Soak test (issue 5): the service under steady load, mixed good and bad inputs, for a long time.

``python -m benchmarks.soak --duration 600`` starts ``msa serve`` (the committed model, or
``--model-dir``), measures its closed-loop throughput on good inputs for ``--calibrate`` seconds, then
sends an open-loop (Poisson) stream at ``--load`` (default 80 %) of that throughput for ``--duration``
seconds: ``--bad-fraction`` (default 20 %) of the requests are bad inputs from the robustness corpus, each
with the one 4xx it must get. At the end it reports, and exits non-zero if a bar is missed:

* errors on good inputs (anything but 200, including 429) — bar 0;
* wrong answers to bad inputs (another status or ``error.type`` than expected; any 5xx) — bar 0;
* lost requests (sent, never answered: connection reset, timeout) — bar 0;
* RSS growth of the server from the end of the first tenth of the run (after warm-up, allocator pools and
  the first ONNX Runtime arenas) to the end — bar 5 %; the maximum is reported too;
* latency percentiles of good requests, and that the server drains and exits on SIGTERM.

The client is a small asyncio HTTP/1.1 keep-alive client over pre-serialised requests (like
``benchmarks/loadgen.py``), so it takes little CPU from the server on a 2-core machine. Results are
written as JSON next to the printed summary (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


# ------------------------------------------------------------------------------------------ corpus
@dataclass(frozen=True)
class Req:
    """A pre-serialised request and what it must get."""

    name: str
    good: bool
    raw: bytes  # request line + headers + body (without the Host line, added per connection)
    status: int = 200
    error_type: str | None = None


def _serialise(name: str, good: bool, status: int, error_type: str | None, **kwargs: Any) -> Req:
    request = httpx.Request("POST", "http://soak/v1/predict", **kwargs)
    body = request.read()
    headers = [
        f"{k}: {v}"
        for k, v in request.headers.items()
        if k.lower() not in ("host", "content-length", "transfer-encoding", "accept-encoding", "user-agent")
    ]
    head = "POST /v1/predict HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers)
    head += f"Content-Length: {len(body)}\r\n"
    return Req(name, good, head.encode("latin-1") + b"\r\n" + body, status, error_type)


def build_corpus(seed: int = 0) -> tuple[list[Req], list[Req]]:
    """(good, bad) requests, generated here (no files): a real face, speech-like audio, texts."""
    import soundfile as sf
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    face = Image.fromarray(data.astronaut())

    def img(fmt: str, im: Image.Image = face, **kw: Any) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        return buf.getvalue()

    def voice(seconds: float, rate: int, f0: float) -> np.ndarray:
        t = np.arange(int(seconds * rate)) / rate
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, int(7000 // f0)))
        x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.shape)
        return (0.3 * x / np.abs(x).max()).astype(np.float32)

    def snd(seconds: float, rate: int, fmt: str, subtype: str | None = None, f0: float = 140.0) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, voice(seconds, rate, f0), rate, format=fmt, subtype=subtype)
        return buf.getvalue()

    texts = [
        "I absolutely love this, what a wonderful day!",
        "This is the worst service I have ever used.",
        "The meeting is at three o'clock in room four.",
        "Not bad at all, honestly better than I expected 🙂",
        "Je suis très content du résultat.",
        "meh " * 60,
    ]
    jpeg = img("JPEG", quality=90)
    wav = snd(2.0, 16_000, "WAV", "PCM_16")
    good: list[Req] = []
    for i, t in enumerate(texts):
        good.append(_serialise(f"text_json_{i}", True, 200, None, json={"text": t}))
        good.append(_serialise(f"text_form_{i}", True, 200, None, files={"text": (None, t.encode())}))
    good += [
        _serialise("image_jpeg", True, 200, None, files={"image": ("face.jpg", jpeg, "image/jpeg")}),
        _serialise(
            "image_png_small",
            True,
            200,
            None,
            files={"image": ("f.png", img("PNG", face.resize((256, 256))), "image/png")},
        ),
        _serialise("audio_wav_2s", True, 200, None, files={"audio": ("a.wav", wav, "audio/wav")}),
        _serialise(
            "audio_flac_4s_44k",
            True,
            200,
            None,
            files={"audio": ("a.flac", snd(4.0, 44_100, "FLAC"), "audio/flac")},
        ),
        _serialise(
            "audio_mp3_3s", True, 200, None, files={"audio": ("a.mp3", snd(3.0, 44_100, "MP3"), "audio/mpeg")}
        ),
        _serialise(
            "audio_ogg_opus_1s",
            True,
            200,
            None,
            files={"audio": ("a.ogg", snd(1.0, 48_000, "OGG", "OPUS", 220.0), "audio/ogg")},
        ),
        _serialise(
            "all_three",
            True,
            200,
            None,
            data={"text": "so happy to see you"},
            files={"image": ("f.jpg", jpeg, "image/jpeg"), "audio": ("a.wav", wav, "audio/wav")},
        ),
        _serialise(
            "all_three_json",
            True,
            200,
            None,
            json={
                "text": "this is terrible",
                "image_base64": base64.b64encode(jpeg).decode(),
                "audio_base64": base64.b64encode(snd(1.5, 22_050, "WAV", "PCM_24", 180.0)).decode(),
            },
        ),
    ]
    truncated = jpeg[: len(jpeg) // 2]
    nan = voice(1.0, 16_000, 150.0)
    nan[100] = np.nan
    nan_buf = io.BytesIO()
    sf.write(nan_buf, nan, 16_000, format="WAV", subtype="FLOAT")
    bomb = img("PNG", Image.new("1", (20_000, 20_000)))
    bad = [
        _serialise(
            "truncated_jpeg",
            False,
            422,
            "undecodable_input",
            files={"image": ("t.jpg", truncated, "image/jpeg")},
        ),
        _serialise(
            "random_image",
            False,
            415,
            "unsupported_media_type",
            files={"image": ("r.bin", rng.bytes(3000), "image/png")},
        ),
        _serialise(
            "pdf_image",
            False,
            415,
            "unsupported_media_type",
            files={"image": ("a.pdf", b"%PDF-1.4\n%%EOF", "application/pdf")},
        ),
        _serialise("bomb_png", False, 413, "input_too_large", files={"image": ("b.png", bomb, "image/png")}),
        _serialise(
            "nan_wav",
            False,
            422,
            "undecodable_input",
            files={"audio": ("n.wav", nan_buf.getvalue(), "audio/wav")},
        ),
        _serialise(
            "empty_audio", False, 422, "undecodable_input", files={"audio": ("e.wav", b"", "audio/wav")}
        ),
        _serialise(
            "random_audio",
            False,
            415,
            "unsupported_media_type",
            files={"audio": ("r.wav", rng.bytes(3000), "audio/wav")},
        ),
        _serialise("whitespace_text", False, 422, "invalid_input", json={"text": "  \u200b "}),
        _serialise("emoji_text", False, 422, "invalid_input", json={"text": "🎉🎉"}),
        _serialise("text_too_long", False, 413, "input_too_large", json={"text": "a" * 10_001}),
        _serialise("bad_base64", False, 422, "validation_error", json={"image_base64": "*not base64*"}),
        _serialise("wrong_json_type", False, 422, "validation_error", json={"text": 5}),
        _serialise("no_modality", False, 422, "missing_modality", json={}),
        _serialise("bad_utf8_form", False, 422, "invalid_input", files={"text": (None, b"caf\xe9\xff")}),
        _serialise(
            "too_many_parts",
            False,
            413,
            "payload_too_large",
            files=[("image", (f"{i}.png", b"x", "image/png")) for i in range(40)],
        ),
        _serialise(
            "wrong_content_type",
            False,
            415,
            "unsupported_media_type",
            content=b"hello",
            headers={"Content-Type": "text/plain"},
        ),
    ]
    return good, bad


# ------------------------------------------------------------------------------------------ client
@dataclass
class Outcome:
    req: Req
    status: int | None  # None = lost (no answer)
    error_type: str | None
    latency_s: float
    detail: str = ""


#: uvicorn closes a keep-alive connection idle for 5 s (``timeout_keep_alive``); a request written on it
#: just then is never read by the server and would look lost. Connections idle this long are replaced first.
MAX_IDLE_S = 4.0


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects after the server closes it or before it would."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.idle_since = time.monotonic()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def send(self, req: Req, timeout_s: float) -> tuple[int, dict[str, str], bytes]:
        if self.writer is not None and time.monotonic() - self.idle_since > MAX_IDLE_S:
            await self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        line_end = req.raw.index(b"\r\n") + 2
        self.writer.write(
            req.raw[:line_end] + f"Host: {self.host}:{self.port}\r\n".encode() + req.raw[line_end:]
        )
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout_s)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await asyncio.wait_for(
            self.reader.readexactly(int(headers.get("content-length", "0"))), timeout_s
        )
        if headers.get("connection", "").lower() == "close":
            await self.close()
        self.idle_since = time.monotonic()
        return status, headers, body


async def _one(pool: asyncio.Queue[Connection], req: Req, timeout_s: float) -> Outcome:
    conn = await pool.get()
    started = time.perf_counter()
    try:
        status, _, body = await conn.send(req, timeout_s)
        error_type = None
        if status >= 400:
            try:
                error_type = json.loads(body)["error"]["type"]
            except (ValueError, KeyError, TypeError):
                error_type = "<not the error schema>"
        return Outcome(req, status, error_type, time.perf_counter() - started)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
        await conn.close()
        return Outcome(req, None, None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    finally:
        pool.put_nowait(conn)


async def closed_loop(host: str, port: int, reqs: list[Req], seconds: float, concurrency: int) -> float:
    """Requests per second with ``concurrency`` clients sending back to back (good inputs only)."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(concurrency):
        pool.put_nowait(Connection(host, port))
    done = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(1)

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            out = await _one(pool, rng.choice(reqs), 60)
            if out.status == 200:
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    while not pool.empty():
        await pool.get_nowait().close()
    return done / (time.perf_counter() - started)


async def open_loop(
    host: str,
    port: int,
    good: list[Req],
    bad: list[Req],
    *,
    rate: float,
    seconds: float,
    bad_fraction: float,
    connections: int,
    on_tick: Any,
    seed: int = 0,
) -> tuple[list[Outcome], int]:
    """Poisson arrivals at ``rate``/s for ``seconds``; returns the outcomes and the number sent."""
    rng = random.Random(seed)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(host, port))
    tasks: list[asyncio.Task[Outcome]] = []
    started = time.perf_counter()
    next_at = started
    next_tick = started + 1.0
    while True:
        now = time.perf_counter()
        if now - started >= seconds:
            break
        if now >= next_tick:
            on_tick(now - started, len(tasks))
            next_tick += 1.0
        if now < next_at:
            await asyncio.sleep(min(next_at - now, 0.05))
            continue
        req = rng.choice(bad) if rng.random() < bad_fraction else rng.choice(good)
        tasks.append(asyncio.create_task(_one(pool, req, 120)))
        next_at += rng.expovariate(rate)
    outcomes = list(await asyncio.gather(*tasks))
    while not pool.empty():
        await pool.get_nowait().close()
    return outcomes, len(tasks)


# ------------------------------------------------------------------------------------------ server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    port: int, model_dir: Path | None, log: Path, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **extra_env}
    if model_dir is not None:
        env["SENTIMENT_MODEL_DIR"] = str(model_dir)
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server not ready after 600 s; see {log}")


@dataclass
class RssTrace:
    times: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=600.0, help="soak seconds (default 600 = 10 minutes)"
    )
    parser.add_argument(
        "--load", type=float, default=0.8, help="fraction of the measured max throughput (0.8)"
    )
    parser.add_argument(
        "--calibrate", type=float, default=20.0, help="seconds of closed-loop calibration (20)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="fixed request rate (req/s): skip calibration"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="clients during calibration (16)")
    parser.add_argument("--connections", type=int, default=64, help="open-loop connection pool size (64)")
    parser.add_argument("--bad-fraction", type=float, default=0.2, help="share of bad inputs (0.2)")
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="SENTIMENT_MODEL_DIR (default: the repo's)"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="extra KEY=VALUE for the server (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json", help="JSON report path")
    parser.add_argument("--max-rss-growth", type=float, default=0.05, help="RSS growth bar (0.05 = 5 %%)")
    args = parser.parse_args(argv)

    good, bad = build_corpus()
    port = _free_port()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = RESULTS / "raw" / (args.out.stem + ".server.log")  # raw/ is git-ignored
    log.parent.mkdir(parents=True, exist_ok=True)
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    proc = start_server(port, args.model_dir, log, extra_env)
    ps = psutil.Process(proc.pid)
    info = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()["models"][0]
    model = f"{info['name']} v{info['version']} on {info['execution_provider']}"
    print(f"server pid {proc.pid}: model {model}; log {log}")

    if args.rate is None:
        max_rps = asyncio.run(closed_loop("127.0.0.1", port, good, args.calibrate, args.concurrency))
        rate = args.load * max_rps
        print(f"calibration: {max_rps:.1f} req/s closed-loop on good inputs → soak at {rate:.1f} req/s")
    else:
        max_rps, rate = float("nan"), args.rate
    trace = RssTrace()
    t_start = time.monotonic()

    def tick(elapsed: float, sent: int) -> None:
        trace.times.append(elapsed)
        trace.rss.append(ps.memory_info().rss)
        if int(elapsed) % 30 == 0:
            print(f"  t={elapsed:5.0f} s  sent={sent}  rss={trace.rss[-1] / 2**20:.1f} MiB", flush=True)

    outcomes, sent = asyncio.run(
        open_loop(
            "127.0.0.1",
            port,
            good,
            bad,
            rate=rate,
            seconds=args.duration,
            bad_fraction=args.bad_fraction,
            connections=args.connections,
            on_tick=tick,
        )
    )
    elapsed = time.monotonic() - t_start
    trace.times.append(elapsed)
    trace.rss.append(ps.memory_info().rss)
    ready_after = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code

    proc.send_signal(signal.SIGTERM)
    try:
        exit_code: int | None = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        exit_code = None

    lost = [o for o in outcomes if o.status is None]
    good_out = [o for o in outcomes if o.req.good and o.status is not None]
    bad_out = [o for o in outcomes if not o.req.good and o.status is not None]
    good_errors = [o for o in good_out if o.status != 200]
    bad_wrong = [o for o in bad_out if (o.status, o.error_type) != (o.req.status, o.req.error_type)]
    server_errors = [o for o in outcomes if o.status is not None and o.status >= 500]
    warm_index = next(
        i for i, t in enumerate(trace.times) if t >= args.duration * 0.1 or i == len(trace.times) - 1
    )
    rss_warm, rss_end, rss_max = trace.rss[warm_index], trace.rss[-1], max(trace.rss)
    growth = (rss_end - rss_warm) / rss_warm
    lat = sorted(o.latency_s * 1000 for o in good_out if o.status == 200)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")

    report = {
        "model": {k: info[k] for k in ("name", "version", "execution_provider")},
        "duration_s": args.duration,
        "max_rps_closed_loop": max_rps,
        "rate_rps": rate,
        "achieved_rps": len(outcomes) / args.duration,
        "sent": sent,
        "answered": len(outcomes) - len(lost),
        "good": len(good_out),
        "bad": len(bad_out),
        "errors_on_good_inputs": len(good_errors),
        "good_error_statuses": dict(Counter(f"{o.status} {o.error_type}" for o in good_errors)),
        "wrong_answers_to_bad_inputs": len(bad_wrong),
        "bad_wrong_detail": dict(Counter(f"{o.req.name}: {o.status} {o.error_type}" for o in bad_wrong)),
        "server_errors_5xx": len(server_errors),
        "lost_requests": len(lost),
        "lost_detail": dict(Counter(o.detail.split(":")[0] for o in lost)),
        "rss_mib": {"warm": rss_warm / 2**20, "end": rss_end / 2**20, "max": rss_max / 2**20},
        "rss_growth": growth,
        "latency_ms_good": {
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "max": lat[-1] if lat else float("nan"),
        },
        "ready_after_soak": ready_after,
        "exit_code_after_sigterm": exit_code,
        "status_counts": dict(Counter(str(o.status) for o in outcomes)),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    ok = (
        not good_errors
        and not bad_wrong
        and not lost
        and not server_errors
        and growth <= args.max_rss_growth
        and ready_after == 200
        and sent == len(outcomes)
    )
    print(
        f"SOAK {'PASSED' if ok else 'FAILED'}: {len(outcomes)} requests in {args.duration:.0f} s "
        f"at {rate:.1f} req/s ({len(good_out)} good, {len(bad_out)} bad): {len(good_errors)} errors on good "
        f"inputs, {len(bad_wrong)} wrong answers to bad inputs, {len(lost)} lost, "
        f"RSS {rss_warm / 2**20:.1f} → {rss_end / 2**20:.1f} MiB "
        f"({growth * 100:+.2f} %, max {rss_max / 2**20:.1f} MiB), p50/p99 {pct(50):.0f}/{pct(99):.0f} ms"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
