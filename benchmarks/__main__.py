"""One command for the whole benchmark: ``python -m benchmarks`` (``make bench``).

Order (one heavy process at a time): in-process ceiling → the service over HTTP (closed-loop sweep +
open-loop at 50 % of its best throughput) → naive FastAPI → LitServe → PyTriton (→ memory/start-up of the
service with ``--memory-requests N``; by default that is the separate ``python -m benchmarks.memory``).
Writes ``benchmarks/results/RESULTS.md``, ``results.json`` and PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks import ceiling, loadgen, memory, report
from benchmarks.corpus import MIXES, Sample, build
from benchmarks.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RAW = RESULTS / "raw"
PYTRITON_VENV = RAW / "venv-pytriton"


def _cpu_env() -> dict[str, str]:
    return {"BENCH_GPU": os.environ.get("BENCH_GPU", "0")}


def service_server(model_dir: Path, port: int, extra_env: dict[str, str] | None = None) -> ServerProcess:
    """The service as a user starts it (``msa serve``), configured only through SENTIMENT_* variables."""
    gpu = os.environ.get("BENCH_GPU", "0") == "1"
    env = {
        "SENTIMENT_MODEL_DIR": str(model_dir.resolve().parent),
        "SENTIMENT_MODEL_NAME": model_dir.name,
        "SENTIMENT_HOST": "127.0.0.1",
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_LOG_LEVEL": "warning",
        **({} if gpu else {"SENTIMENT_PROVIDERS": "CPUExecutionProvider"}),
        **(extra_env or {}),
    }
    if (ROOT / "app" / "cli.py").exists():
        cmd = [sys.executable, "-m", "app.cli", "serve"]
    else:  # before the CLI exists
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    return ServerProcess("service", cmd, port, "/readyz", RAW, env=env, cwd=ROOT)


def naive_server(model_dir: Path, port: int) -> ServerProcess:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.peers.naive_fastapi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return ServerProcess(
        "naive",
        cmd,
        port,
        "/readyz",
        RAW,
        env={"BENCH_MODEL_DIR": str(model_dir.resolve()), **_cpu_env()},
        cwd=ROOT,
    )


def litserve_server(model_dir: Path, port: int, batch: int, wait_ms: float, workers: int) -> ServerProcess:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.peers.litserve_server",
        "--model-dir",
        str(model_dir.resolve()),
        "--port",
        str(port),
        "--max-batch-size",
        str(batch),
        "--batch-timeout",
        str(wait_ms / 1000),
        "--workers",
        str(workers),
    ]
    return ServerProcess("litserve", cmd, port, "/readyz", RAW, env=_cpu_env(), cwd=ROOT)


def pytriton_server(model_dir: Path, port: int, batch: int, wait_ms: float) -> ServerProcess:
    python = PYTRITON_VENV / "bin" / "python"
    cmd = [
        str(python),
        "-m",
        "benchmarks.peers.pytriton_server",
        "--model-dir",
        str(model_dir.resolve()),
        "--port",
        str(port),
        "--max-batch-size",
        str(batch),
        "--max-wait-ms",
        str(wait_ms),
    ]
    env = {"PYTHONPATH": str(ROOT), **_cpu_env()}
    return ServerProcess("pytriton", cmd, port, "/v2/models/fused/ready", RAW, env=env, cwd=ROOT)


def pytriton_body(s: Sample) -> bytes:
    """KServe v2 / Triton JSON: three BYTES inputs [1, 1] (base64 for binary media, "" = absent)."""
    body = json.loads(s.json_body())
    return json.dumps(
        {
            "inputs": [
                {"name": k, "shape": [1, 1], "datatype": "BYTES", "data": [body.get(k, "")]}
                for k in ("text", "image_base64", "audio_base64")
            ]
        }
    ).encode()


def service_settings() -> dict[str, Any]:
    try:
        from app.config import Settings

        s = Settings()
        return {
            "max_batch_size": s.max_batch_size,
            "max_wait_ms": s.max_wait_ms,
            "max_audio_seconds": s.max_audio_seconds,
            "preprocess_workers": s.preprocess_workers,
            "intra_op_threads": s.intra_op_threads,
            "batch_workers": s.batch_workers,
        }
    except Exception:  # noqa: BLE001 - before app.config exists
        return {"max_batch_size": 16, "max_wait_ms": 5.0, "max_audio_seconds": 30.0}


def measure_point(
    server: ServerProcess, raw: list[bytes], concurrency: int, duration: float, warmup: float
) -> dict[str, float]:
    me = psutil_self()
    server.start_sampling()
    cpu0, me0 = server.cpu_seconds(), me.cpu_times()
    stats = asyncio.run(loadgen.closed_loop("127.0.0.1", server.port, raw, concurrency, duration, warmup))
    cpu1, me1 = server.cpu_seconds(), me.cpu_times()
    peak = server.stop_sampling()
    wall = duration + warmup
    out = stats.summary()
    out.update(
        {
            "server_cpu_pct": 100 * (cpu1 - cpu0) / wall,
            "client_cpu_pct": 100 * ((me1.user + me1.system) - (me0.user + me0.system)) / wall,
            "server_rss_mb": peak / 2**20,
            "concurrency": float(concurrency),
            "statuses": {str(k): v for k, v in stats.statuses.items()},
        }
    )  # type: ignore[dict-item]
    return out


def psutil_self():  # noqa: ANN201
    import psutil

    return psutil.Process()


def bench_target(
    name: str, server: ServerProcess, bodies: dict[str, list[bytes]], args: argparse.Namespace, bar: tqdm
) -> dict[str, Any]:
    res: dict[str, Any] = {"points": []}
    bar.set_description(f"{name}: starting")
    res["cold_start_s"] = server.start()
    try:
        bar.set_description(f"{name}: warm-up")
        for mix in MIXES:
            asyncio.run(loadgen.closed_loop("127.0.0.1", server.port, bodies[mix], 8, args.warmup, 0.0))
        top = max(args.concurrency)
        plan = [("all", c) for c in args.concurrency]
        plan += [
            (m, c)
            for m in ("text", "image", "audio")
            for c in (args.concurrency if args.sweep_all_mixes else [top])
        ]
        for mix, c in plan:
            bar.set_description(f"{name}: {mix} c={c}")
            point = measure_point(server, bodies[mix], c, args.duration, args.warmup)
            point["mix"] = mix  # type: ignore[assignment]
            res["points"].append(point)
            bar.update(1)
        if name == "service" and not args.skip_open_loop:
            best = max(p["throughput"] for p in res["points"] if p["mix"] == "all")
            rate = 0.5 * best
            bar.set_description(f"{name}: open loop {rate:.1f}/s")
            server.start_sampling()
            stats = asyncio.run(
                loadgen.open_loop(
                    "127.0.0.1", server.port, bodies["all"], rate, args.open_loop_duration, args.warmup
                )
            )
            server.stop_sampling()
            res["open_loop"] = {
                "rate": rate,
                "max_throughput": best,
                **stats.summary(),
                "statuses": {str(k): v for k, v in stats.statuses.items()},
                "exceptions": stats.exceptions,
            }
            bar.update(1)
    finally:
        server.stop()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=ROOT / "models" / "fused-sentiment",
        help="model folder with <version>/model.onnx and tokenizer.json",
    )
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each point")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64])
    p.add_argument(
        "--targets",
        default="ceiling,service,naive,litserve,pytriton",
        help="comma-separated subset of ceiling,service,naive,litserve,pytriton",
    )
    p.add_argument(
        "--sweep-all-mixes",
        action="store_true",
        help="concurrency sweep for every mix (default: sweep all-three, other mixes at the top)",
    )
    p.add_argument(
        "--ceiling-configs",
        type=lambda v: [tuple(int(x) for x in c.split("x")) for c in v.split(",")],
        default=[(16, 1), (4, 1), (4, 2), (1, 2)],
        help="in-process ceiling configurations BATCHxRUN_WORKERS (best per mix is reported), e.g. 16x1,4x2",
    )
    p.add_argument("--ceiling-duration", type=float, default=5.0, help="measured seconds per configuration")
    p.add_argument("--open-loop-duration", type=float, default=20.0)
    p.add_argument("--skip-open-loop", action="store_true")
    p.add_argument(
        "--memory-requests",
        type=int,
        default=0,
        help="random-shape requests for the memory benchmark in this run (default 0: it takes 15–25 min on "
        "2 cores, so it is a separate command, `python -m benchmarks.memory`, whose memory.json is included)",
    )
    p.add_argument(
        "--litserve-workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="LitServe inference worker processes (its preprocessing runs serially inside each worker)",
    )
    p.add_argument(
        "--peer-wait-ms",
        type=float,
        default=5.0,
        help="LitServe batch_timeout / PyTriton max_queue_delay (ms); they get the service's max_batch_size. "
        "Not 0: LitServe 0.2.19 busy-polls its queue when batch_timeout is 0 (loops/simple_loops.py, "
        "`if not batches: continue`), which would burn a core per worker",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--allow-standin", action="store_true", help="allow a model folder under results/raw")
    p.add_argument("--port", type=int, default=8100, help="first port; targets use port, port+1, ...")
    args = p.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    model_dir: Path = args.model_dir.resolve()
    if RAW in model_dir.resolve().parents and not args.allow_standin:
        p.error(
            "the model is a stand-in under results/raw; pass --allow-standin (numbers are not reportable)"
        )

    settings = service_settings()
    batch, wait_ms = int(settings["max_batch_size"]), args.peer_wait_ms
    samples = build(args.data_dir, RAW / "corpus")
    errors: dict[str, str] = {}
    if "pytriton" in targets:
        try:
            from benchmarks import pytriton_venv

            pytriton_venv.ensure(PYTRITON_VENV)
        except (OSError, subprocess.CalledProcessError) as exc:
            errors["pytriton"] = f"could not build its venv ({exc}); see `python -m benchmarks.pytriton_venv`"
            targets.remove("pytriton")

    n_points = len(args.concurrency) + 3 * (len(args.concurrency) if args.sweep_all_mixes else 1)
    n_ceiling = len(args.ceiling_configs) * len(MIXES)
    total = sum({"ceiling": n_ceiling, "service": n_points + 1}.get(t, n_points) for t in targets)
    results: dict[str, Any] = {"meta": meta(model_dir, settings, args), "targets": {}}
    with tqdm(total=total, unit="point") as bar:
        if "ceiling" in targets:
            eng = ceiling.engine(model_dir, gpu=os.environ.get("BENCH_GPU") == "1")
            results["meta"]["provider"] = eng.provider
            results["meta"]["ceiling_engine"] = type(eng).__name__
            cres: dict[str, Any] = {}
            for mix in MIXES:
                for bs, workers in args.ceiling_configs:
                    bar.set_description(f"ceiling: {mix} batch {bs} x{workers}")
                    cres[f"{mix}/b{bs}w{workers}"] = ceiling.run(
                        eng.prep,
                        eng.run,
                        samples[mix],
                        batch_size=bs,
                        duration_s=args.ceiling_duration,
                        warmup_s=1.0,
                        prep_threads=int(settings.get("preprocess_workers", 2)),
                        run_workers=workers,
                    )
                    bar.update(1)
                cres[mix] = max(
                    (cres[f"{mix}/b{bs}w{w}"] for bs, w in args.ceiling_configs),
                    key=lambda r: r["throughput"],
                )
            results["targets"]["ceiling"] = cres
            if isinstance(eng, ceiling.AppEngine) and os.environ.get("BENCH_GPU") != "1":
                bar.set_description("ceiling: CPU cost profile")
                results["profile"] = ceiling.cost_profile(model_dir, samples)
            del eng
        makers = {
            "service": lambda port: service_server(model_dir, port),
            "naive": lambda port: naive_server(model_dir, port),
            "litserve": lambda port: litserve_server(model_dir, port, batch, wait_ms, args.litserve_workers),
            "pytriton": lambda port: pytriton_server(model_dir, port, batch, wait_ms),
        }
        for i, name in enumerate(t for t in targets if t != "ceiling"):
            server = makers[name](args.port + i)
            path = "/v2/models/fused/infer" if name == "pytriton" else "/v1/predict"
            body = pytriton_body if name == "pytriton" else Sample.json_body
            bodies = {
                m: [loadgen.build_request("127.0.0.1", server.port, path, body(s)) for s in samples[m]]
                for m in MIXES
            }
            try:
                results["targets"][name] = bench_target(name, server, bodies, args, bar)
            except Exception as exc:  # noqa: BLE001 - a failing peer must not lose the other results
                errors[name] = f"{type(exc).__name__}: {exc}"
                tqdm.write(f"{name} failed: {errors[name]}")
    if args.memory_requests > 0 and "service" in targets:
        try:
            results["memory"] = memory.run(
                service_server(model_dir, args.port + 20),
                RAW / "corpus",
                requests=args.memory_requests,
                max_audio_s=float(settings["max_audio_seconds"]),
            )
        except Exception as exc:  # noqa: BLE001
            errors["memory"] = f"{type(exc).__name__}: {exc}"
    elif (args.out / "memory.json").exists():  # from a separate `python -m benchmarks.memory` run
        results["memory"] = json.loads((args.out / "memory.json").read_text(encoding="utf-8"))
    results["errors"] = errors
    results["meta"]["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    md = report.write(results, args.out)
    print(md)
    return 0


def meta(model_dir: Path, settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import hashlib

    import onnxruntime

    from benchmarks.pipeline import find_model

    model, _ = find_model(model_dir)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "git_commit": commit,
        "model": str(model.resolve().relative_to(ROOT) if ROOT in model.resolve().parents else model),
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()[:16],
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "service_settings": settings,
        "peer_wait_ms": args.peer_wait_ms,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "oha_or_wrk": bool(shutil.which("oha") or shutil.which("wrk")),
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


if __name__ == "__main__":
    raise SystemExit(main())
