"""One command for the whole benchmark: ``python -m benchmarks`` (``make bench``).

Mixes (``--mixes``; :func:`load_mixes`): ``small`` (tweets, 256 px thumbnails, 3 s 16 kHz WAVs and the three
together) and ``realistic`` (phone photos of 12 and 48 MP, EXIF-rotated photos, 1080p screenshots, 48 kHz
voice notes as M4A and Ogg/Opus, tweets, alone and together), both from :mod:`benchmarks.realistic`, and
``text`` (tweets only); the older corpus mixes ``image``, ``audio`` and ``all`` (:mod:`benchmarks.corpus`)
on request. Every target runs every mix; the mixes in ``--sweep`` get the whole concurrency sweep.

Order: in-process ceiling (best of batch sizes, run workers, single-item workers and ORT intra-op threads;
no server running) → the HTTP targets (the service, naive FastAPI, LitServe, PyTriton), all started at
once and measured point by point in turn (closed-loop sweep; :func:`bench_http`) → the service's open loop
at 50 % of its best throughput per swept mix (→ memory/start-up of the service with ``--memory-requests
N``; by default that is the separate ``python -m benchmarks.memory``). Writes
``benchmarks/results/RESULTS.md``, ``results.json`` and PNG plots.
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

import numpy as np
from tqdm import tqdm

from benchmarks import ceiling, loadgen, memory, queueing, report
from benchmarks.corpus import Sample, build
from benchmarks.gpu_util import GpuSampler
from benchmarks.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RAW = RESULTS / "raw"
PYTRITON_VENV = RAW / "venv-pytriton"

#: Mixes ``python -m benchmarks`` knows: the two of :data:`benchmarks.realistic.MIXES`, tweets only, and the
#: older corpus mixes of :mod:`benchmarks.corpus` (MVSA thumbnails with a face, CREMA-D WAVs).
MIX_NAMES: tuple[str, ...] = ("small", "realistic", "text", "image", "audio", "all")
#: Requests per mix (drawn by the mix's weights; bodies are built once per target).
MIX_REQUESTS = 96


def load_mixes(names: list[str], data_dir: Path, items: int = 12) -> dict[str, list[Sample]]:
    """Samples per mix name (:data:`MIX_NAMES`), building the corpora on first use; ``items`` distinct files
    per kind of the realistic corpus (:func:`benchmarks.realistic.build`'s ``n``).

    Raises:
        ValueError: an unknown mix name.
        FileNotFoundError: ``data_dir`` lacks the datasets a realistic or small mix needs.
    """
    from benchmarks import realistic

    unknown = [m for m in names if m not in MIX_NAMES]
    if unknown:
        raise ValueError(f"unknown mix(es) {unknown}; known: {', '.join(MIX_NAMES)}")
    out: dict[str, list[Sample]] = {}
    for m in names:
        if m in realistic.MIXES:
            out[m] = realistic.mix_samples(m, MIX_REQUESTS, n=items, data_dir=data_dir)
        elif m == "text" and realistic.cached_or_buildable("tweet", MIX_REQUESTS, data_dir):
            tweets = realistic.build(["tweet"], n=MIX_REQUESTS, data_dir=data_dir)  # TweetEval test tweets
            out[m] = realistic.request_samples(tweets, "tweet", MIX_REQUESTS)
        else:  # the corpus mixes (synthesised where the datasets are absent, e.g. on a GPU host)
            out[m] = build(data_dir, RAW / "corpus")[m]
    return out


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
    """One closed-loop point. CPU shares are over the whole call (warm-up, window and the tail of requests
    still in flight when the window ends), and ``server_cpu_ms_per_request`` divides the server's CPU time
    over the call by every answer received in it, so neither is inflated by the tail."""
    me = psutil_self()
    gpu = GpuSampler() if os.environ.get("BENCH_GPU", "0") == "1" else None
    server.start_sampling()
    cpu0, me0, t0 = server.cpu_seconds(), me.cpu_times(), time.perf_counter()
    if gpu is not None:
        gpu.start()
    stats = asyncio.run(loadgen.closed_loop("127.0.0.1", server.port, raw, concurrency, duration, warmup))
    cpu1, me1, wall = server.cpu_seconds(), me.cpu_times(), time.perf_counter() - t0
    peak = server.stop_sampling()
    out = stats.summary()
    if gpu is not None:
        out.update(gpu.stop())  # GPU utilisation over the whole call, warm-up included
    out.update(
        {
            "server_cpu_pct": 100 * (cpu1 - cpu0) / wall,
            "server_cpu_ms_per_request": 1e3 * (cpu1 - cpu0) / max(1, stats.completed),
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


def bench_http(
    names: list[str],
    makers: dict[str, Any],
    samples: dict[str, list[Sample]],
    args: argparse.Namespace,
    bar: tqdm,
    errors: dict[str, str],
) -> dict[str, Any]:
    """Every HTTP target started at once; each (mix, concurrency) point measured for every target in turn,
    the order rotating from point to point, so the slow drifts of a shared machine hit all targets alike
    and the ratios are side by side; the targets not being measured are paused (SIGSTOP of their process
    group: no idle CPU taken from the one measured); then the service's open loops (one per swept mix). A
    target that fails to start or to answer is recorded in ``errors`` and left out; the others go on."""
    servers: dict[str, ServerProcess] = {}
    bodies: dict[str, dict[str, list[bytes]]] = {}
    res: dict[str, Any] = {}
    try:
        for i, name in enumerate(names):
            server = makers[name](args.port + i)
            bar.set_description(f"{name}: starting")
            try:
                cold = server.start()
                path = "/v2/models/fused/infer" if name == "pytriton" else "/v1/predict"
                body = pytriton_body if name == "pytriton" else Sample.json_body
                bodies[name] = {
                    m: [loadgen.build_request("127.0.0.1", server.port, path, body(s)) for s in samples[m]]
                    for m in args.mixes
                }
                bar.set_description(f"{name}: warm-up")
                for mix in args.mixes:
                    asyncio.run(
                        loadgen.closed_loop("127.0.0.1", server.port, bodies[name][mix], 8, args.warmup, 0.0)
                    )
            except Exception as exc:  # noqa: BLE001 - a failing peer must not lose the other results
                errors[name] = f"{type(exc).__name__}: {exc}"
                tqdm.write(f"{name} failed: {errors[name]}")
                server.stop()
                bodies.pop(name, None)
                continue
            server.pause()
            servers[name] = server
            res[name] = {"points": [], "cold_start_s": cold}
        for k, (mix, c) in enumerate(plan(args)):
            live = [n for n in names if n in servers]
            for name in live[k % max(1, len(live)) :] + live[: k % max(1, len(live))]:
                bar.set_description(f"{name}: {mix} c={c}")
                try:
                    servers[name].resume()
                    point = measure_point(servers[name], bodies[name][mix], c, args.duration, args.warmup)
                    servers[name].pause()
                except Exception as exc:  # noqa: BLE001
                    errors[name] = f"{type(exc).__name__}: {exc}"
                    tqdm.write(f"{name} failed: {errors[name]}")
                    servers.pop(name).stop()
                    continue
                point["mix"] = mix  # type: ignore[assignment]
                res[name]["points"].append(point)
                bar.update(1)
        if "service" in servers and not args.skip_open_loop:
            server = servers["service"]
            server.resume()
            res["service"]["open_loop"] = {}
            for mix in args.sweep:
                best = max(p["throughput"] for p in res["service"]["points"] if p["mix"] == mix)
                rate = 0.5 * best
                bar.set_description(f"service: {mix} open loop {rate:.1f}/s")
                server.start_sampling()
                cpu0 = server.cpu_seconds()
                stats = asyncio.run(
                    loadgen.open_loop(
                        "127.0.0.1",
                        server.port,
                        bodies["service"][mix],
                        rate,
                        args.open_loop_duration,
                        args.warmup,
                    )
                )
                cpu1 = server.cpu_seconds()
                server.stop_sampling()
                res["service"]["open_loop"][mix] = {
                    "rate": rate,
                    "max_throughput": best,
                    "server_cpu_ms_per_request": 1e3 * (cpu1 - cpu0) / max(1, stats.completed),
                    **stats.summary(),
                    "statuses": {str(k): v for k, v in stats.statuses.items()},
                    "exceptions": stats.exceptions,
                }
                bar.update(1)
    finally:
        for server in servers.values():
            server.stop()
    return res


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(mix, concurrency) points: every concurrency for the swept mixes, the top one for the others."""
    top = max(args.concurrency)
    return [(m, c) for m in args.mixes for c in (args.concurrency if m in args.sweep else [top])]


def mgc_floor(
    res: dict[str, Any], profile: dict[str, Any], cores: int, errors: dict[str, str]
) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of an ideal ``cores``-core first-come-first-served server at each open loop's arrival
    rate (:func:`benchmarks.queueing.simulate_times`): service times with the shape of the mix's measured
    per-request CPU costs (``profile[mix]["item_ms"]``, in-process, one thread), scaled to the service's own
    server CPU time per request measured during that open loop (so HTTP and JSON are in it). A mix whose
    floor cannot be computed is recorded in ``errors``."""
    out: dict[str, dict[str, float]] = {}
    for mix, ol in res.get("targets", {}).get("service", {}).get("open_loop", {}).items():
        costs = profile.get(mix, {}).get("item_ms")
        cpu_ms = ol.get("server_cpu_ms_per_request")
        if not costs or not cpu_ms:
            continue
        try:
            cpu_s = cpu_ms / 1e3
            times = np.asarray(costs, dtype=np.float64) * (cpu_s / float(np.mean(costs)))
            p50, p99 = queueing.simulate_times(cores, ol["rate"], times)
        except (ValueError, ZeroDivisionError) as exc:
            errors[f"floor {mix}"] = f"{type(exc).__name__}: {exc}"
            continue
        out[mix] = {
            "cpu_ms_per_request": cpu_ms,
            "rho": ol["rate"] * cpu_s / cores,
            "cv": float(np.std(times) / np.mean(times)),
            "p50_ms": p50 * 1e3,
            "p99_ms": p99 * 1e3,
        }
    return out


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
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each point")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64])
    p.add_argument(
        "--targets",
        default="ceiling,service,naive,litserve,pytriton",
        help="comma-separated subset of ceiling,service,naive,litserve,pytriton",
    )
    p.add_argument(
        "--mixes",
        type=lambda v: [m.strip() for m in v.split(",") if m.strip()],
        default=["small", "realistic", "text"],
        help=f"comma-separated mixes, of {', '.join(MIX_NAMES)}",
    )
    p.add_argument(
        "--sweep",
        type=lambda v: [m.strip() for m in v.split(",") if m.strip()],
        default=["small", "realistic"],
        help="mixes measured at every --concurrency (and in an open loop); the others at the top one",
    )
    p.add_argument(
        "--ceiling-configs",
        type=lambda v: [ceiling.parse_config(c) for c in v.split(",")],
        default=[ceiling.parse_config(c) for c in ("16x1", "4x1", "4x2", "1x2", "i2", "i4")],
        help="in-process ceiling configurations: BATCHxRUN_WORKERS (a preprocessing pool kept ahead of "
        "batched runs) or iTHREADS (threads that each prepare and run one item, the naive server's "
        "structure); each with every --ceiling-intra-op; the best per mix is the ceiling",
    )
    p.add_argument(
        "--ceiling-intra-op",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, min(2, os.cpu_count() or 1)],
        help="ORT intra-op thread counts tried for the ceiling",
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
    p.add_argument(
        "--realistic-items",
        type=int,
        default=12,
        help="distinct files per kind in the realistic and small mixes (fewer travel lighter to a GPU host: "
        "benchmarks/gpu_check.sh)",
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

    args.sweep = [m for m in args.sweep if m in args.mixes]
    settings = service_settings()
    batch, wait_ms = int(settings["max_batch_size"]), args.peer_wait_ms
    try:
        samples = load_mixes(args.mixes, args.data_dir, args.realistic_items)
    except (ValueError, FileNotFoundError) as exc:
        p.error(str(exc))
    errors: dict[str, str] = {}
    if "pytriton" in targets:
        try:
            from benchmarks import pytriton_venv

            pytriton_venv.ensure(PYTRITON_VENV)
        except (OSError, subprocess.CalledProcessError) as exc:
            errors["pytriton"] = f"could not build its venv ({exc}); see `python -m benchmarks.pytriton_venv`"
            targets.remove("pytriton")

    n_points = len(plan(args))
    n_ceiling = len(args.ceiling_configs) * len(args.ceiling_intra_op) * len(args.mixes)
    total = sum(
        {"ceiling": n_ceiling, "service": n_points + len(args.sweep)}.get(t, n_points) for t in targets
    )
    results: dict[str, Any] = {"meta": meta(model_dir, settings, args), "targets": {}}
    gpu = os.environ.get("BENCH_GPU") == "1"
    with tqdm(total=total, unit="point") as bar:
        if "ceiling" in targets:
            cres: dict[str, Any] = {}
            for threads in args.ceiling_intra_op:
                eng = ceiling.engine(model_dir, gpu=gpu, intra_op_threads=threads)
                results["meta"]["provider"] = eng.provider
                results["meta"]["ceiling_engine"] = type(eng).__name__
                for mix in args.mixes:
                    for config in args.ceiling_configs:
                        key = f"{mix}/{ceiling.config_name(config)}t{threads}"
                        bar.set_description(f"ceiling: {key}")
                        cres[key] = {
                            **ceiling.run(
                                eng.prep,
                                eng.run,
                                samples[mix],
                                config=config,
                                duration_s=args.ceiling_duration,
                                warmup_s=1.0,
                                prep_threads=int(settings.get("preprocess_workers", 2)),
                            ),
                            "intra_op_threads": float(threads),
                        }
                        bar.update(1)
                del eng
            for mix in args.mixes:
                cres[mix] = max(
                    (v for k, v in cres.items() if k.startswith(f"{mix}/")), key=lambda r: r["throughput"]
                )
            results["targets"]["ceiling"] = cres
            if not gpu:
                bar.set_description("ceiling: CPU cost profile")
                results["profile"] = ceiling.cost_profile(model_dir, samples)
        makers = {
            "service": lambda port: service_server(model_dir, port),
            "naive": lambda port: naive_server(model_dir, port),
            "litserve": lambda port: litserve_server(model_dir, port, batch, wait_ms, args.litserve_workers),
            "pytriton": lambda port: pytriton_server(model_dir, port, batch, wait_ms),
        }
        http = [t for t in targets if t != "ceiling"]
        results["targets"].update(bench_http(http, makers, samples, args, bar, errors))
    if "profile" in results:
        results["floor"] = mgc_floor(results, results["profile"], os.cpu_count() or 1, errors)
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
        "mixes": args.mixes,
        "interleaved": True,
        "sweep": args.sweep,
        "warmup_s": args.warmup,
        "oha_or_wrk": bool(shutil.which("oha") or shutil.which("wrk")),
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


if __name__ == "__main__":
    raise SystemExit(main())
