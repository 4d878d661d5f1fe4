#!/usr/bin/env bash
# GPU check (issue 4, item 5): on a machine with an NVIDIA GPU, make sure ONNX Runtime's CUDA execution
# provider is really active (not a silent CPU fallback), then run the in-process ceiling and the HTTP
# benchmark of the service on the GPU and print one summary table. Budget: under 8 minutes.
#
#   benchmarks/gpu_check.sh              run the check (from any directory)
#   benchmarks/gpu_check.sh --download   on a machine WITH internet: fetch cp312 wheels into .whl/ for a GPU
#                                        machine without internet (onnxruntime-gpu + the service's deps)
#
# Environment: PYTHON (default python3), GPU_CHECK_DURATION (s per point, default 5),
# GPU_CHECK_BATCH (max batch size on GPU, default 64), GPU_CHECK_SITE (pip --target dir, default /tmp/gpu-site),
# GPU_CHECK_PARALLELISM (issue 15 item 4: threads vs preprocessing worker processes vs uvicorn workers sharing
# the GPU, mixes realistic and text, 64 connections, about 4 minutes: 0 = skip (default), 1 = also run it
# after the other steps, only = run it right after the CUDA check and stop; writes parallelism-MIX.txt).
# Wheels in .whl/ (if any) are installed with --no-index into GPU_CHECK_SITE and put first on PYTHONPATH.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/gpu-site}
DURATION=${GPU_CHECK_DURATION:-5}
PARALLELISM=${GPU_CHECK_PARALLELISM:-0}
BATCH=${GPU_CHECK_BATCH:-64}
OUT_DIR=benchmarks/results/gpu
START=$SECONDS

if [[ "${1:-}" == "--download" ]]; then
    mkdir -p .whl
    # Full dependency closure for CPython 3.12 on manylinux x86-64 (binary wheels only). torch and the
    # nvidia-* CUDA libraries are expected on the GPU machine already; onnxruntime-gpu 1.31 needs CUDA 13.
    "$PYTHON" -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        "onnxruntime-gpu==1.31.1" "fastapi>=0.115" "uvicorn[standard]>=0.30" "pydantic-settings>=2.3" \
        "python-multipart>=0.0.9" "httpx>=0.27" "Pillow>=10.4" "soundfile>=0.12" "soxr>=0.4" "av>=12" \
        "tokenizers>=0.19" "psutil>=5.9" "tqdm>=4.66" "matplotlib>=3.8"
    echo "wheels in .whl/: $(find .whl -name '*.whl' | wc -l) files, $(du -sh .whl | cut -f1)"
    exit 0
fi

say() { printf '\n== %s (%ds)\n' "$*" "$((SECONDS - START))"; }

say "GPU"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "no NVIDIA GPU visible (nvidia-smi missing or failing): nothing to check" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

shopt -s nullglob
wheels=(.whl/*.whl)
if ((${#wheels[@]})); then
    say "installing ${#wheels[@]} carried wheels into $SITE"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${wheels[@]}"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# CUDA/cuDNN from nvidia-* pip packages (how torch ships them): put their lib folders on the loader path
# so ONNX Runtime's CUDA provider finds libcublasLt / libcudnn in this script AND in the service process.
NV_LIBS=$("$PYTHON" - <<'PY'
import glob, os, site, sys
bases = list(dict.fromkeys(site.getsitepackages() + [site.getusersitepackages()] + sys.path))
dirs = [d for b in bases for d in sorted(glob.glob(os.path.join(b, "nvidia", "*", "lib"))) if os.path.isdir(d)]
print(":".join(dict.fromkeys(dirs)))
PY
)
if [[ -n "$NV_LIBS" ]]; then
    export LD_LIBRARY_PATH="$NV_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

say "checking imports"
"$PYTHON" - <<'PY'
import importlib, sys
missing = [m for m in ("onnxruntime", "fastapi", "uvicorn", "pydantic_settings", "multipart", "httpx", "PIL",
                       "soundfile", "soxr", "av", "tokenizers", "psutil", "tqdm", "numpy")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {missing}; run benchmarks/gpu_check.sh --download where pip works "
             "and carry .whl/")
import onnxruntime as ort
print("onnxruntime", ort.__version__, "available providers:", ort.get_available_providers())
PY

say "verifying the CUDA execution provider is really active"
"$PYTHON" - <<'PY'
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* pip packages (onnxruntime-gpu >= 1.21)
    try:
        ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001
        print("preload_dlls:", exc)
from app.inference.repository import load_spec

spec = load_spec(Path("models"), "fused-sentiment")
model = spec.file_for("CUDAExecutionProvider")
sess = ort.InferenceSession(str(model), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
active = sess.get_providers()
print("model", model, "-> session providers", active)
if active[0] != "CUDAExecutionProvider":
    sys.exit("CUDAExecutionProvider is NOT active (silent CPU fallback): check CUDA 13 / cuDNN 9 libraries")
feeds = {}
for i in sess.get_inputs():
    shape = [2 if isinstance(d, str) or d is None else d for d in i.shape]
    if i.name in ("input_ids", "attention_mask"):
        shape[1] = 8
    dtype = {"tensor(int64)": np.int64, "tensor(float16)": np.float16}.get(i.type, np.float32)
    feeds[i.name] = np.ones(shape, dtype=dtype)
probs = sess.run(["probabilities"], feeds)[0]
print("GPU inference OK, probabilities", np.round(probs.astype(np.float32), 4).tolist())
PY

# Threads vs preprocessing worker processes vs uvicorn worker processes, each configuration a fresh
# `msa serve` on the GPU (benchmarks.tune; REQUIRE_GPU: a CPU fallback fails instead of measuring the CPU).
parallelism() {
    local gpu="REQUIRE_GPU=true;MAX_BATCH_SIZE=$BATCH;QUEUE_SIZE=$((BATCH * 8))"
    mkdir -p "$OUT_DIR"
    for mix in realistic text; do
        say "threads vs processes on the GPU, mix $mix, 64 connections"
        BENCH_GPU=1 timeout 300 "$PYTHON" -m benchmarks.tune --mix "$mix" --concurrency 64 \
            --duration "$DURATION" --configs "threads=$gpu" "preprocess-processes-4=$gpu;PREPROCESS_PROCESSES=4" \
            "uvicorn-workers-4=$gpu;WORKERS=4" | tee "$OUT_DIR/parallelism-$mix.txt"
    done
}
if [[ "$PARALLELISM" == "only" ]]; then
    parallelism
    say "done"
    exit 0
fi

say "CUDA vs CPU execution provider: same probabilities on the benchmark corpus"
# The service's own Predictor (prepare + run_batch, its padding and length buckets) on both providers, for
# each request mix and a shuffled mixed batch, at several batch sizes. Tolerance 1e-3: cuDNN/cuBLAS may
# pick TF32 or other reduction orders; the fp32 CPU graph matches PyTorch to 1e-6 (tests).
mkdir -p "$OUT_DIR"
"$PYTHON" - <<'PY' | tee "$OUT_DIR/parity.txt"
import random
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.ceiling import AppEngine
from benchmarks.corpus import build

samples = build(Path("../shared/data"), Path("benchmarks/results/raw/corpus"))
mixed = [s for m in samples.values() for s in m]
random.Random(0).shuffle(mixed)
samples["mixed"] = mixed
model_dir = Path("models/fused-sentiment")
gpu, cpu = AppEngine(model_dir, True), AppEngine(model_dir, False)
print("providers: gpu engine", gpu.provider, "| cpu engine", cpu.provider)
if gpu.provider != "CUDAExecutionProvider":
    sys.exit("the service's predictor did not get the CUDA execution provider")
worst = 0.0
print(f"{'mix':8} {'batch':>5} {'max |dprob| fused':>18} {'max |dprob| per modality':>25} {'labels equal':>12}")
for mix, ss in samples.items():
    for bs in (1, 7, 64):
        batch = ss[:bs]
        og, oc = gpu.run([gpu.prep(s) for s in batch]), cpu.run([cpu.prep(s) for s in batch])
        d_f = max(float(np.abs(a.probabilities - b.probabilities).max()) for a, b in zip(og, oc))
        d_m = max(
            float(np.nanmax(np.abs(np.nan_to_num(a.modality_probabilities) - np.nan_to_num(b.modality_probabilities))))
            for a, b in zip(og, oc)
        )
        same = sum(int(np.argmax(a.probabilities) == np.argmax(b.probabilities)) for a, b in zip(og, oc))
        worst = max(worst, d_f, d_m)
        print(f"{mix:8} {bs:5d} {d_f:18.2e} {d_m:25.2e} {same:>6d}/{len(og):<5d}")
print(f"worst |dprob| CUDA vs CPU: {worst:.2e}")
# model-only time per batch (prepared inputs, the service's collate + session.run), median of 20
for name, eng in (("CUDA", gpu), ("CPU", cpu)):
    for bs in (1, 8, 64):
        prepared = [eng.prep(s) for s in samples["all"][:bs]]
        eng.run(prepared)
        ts = []
        for _ in range(20):
            t0 = time.perf_counter()
            eng.run(prepared)
            ts.append(time.perf_counter() - t0)
        print(f"model-only all-three batch {bs:2d} on {name}: median {1e3 * float(np.median(ts)):.2f} ms "
              f"({bs / float(np.median(ts)):.0f} items/s)")
if worst > 1e-3:
    sys.exit(f"CUDA and CPU probabilities differ by {worst:.2e} > 1e-3")
PY

say "cuDNN conv algorithm search: cost of a new batch shape vs steady state"
# ORT's CUDA Conv repeats cudnn_conv_algo_search for every new input shape; the service's batches vary in
# size and in face count (the face network runs on the rows with a face only), so new shapes keep coming.
"$PYTHON" - <<'PY' | tee "$OUT_DIR/conv_algo.txt"
import time
from pathlib import Path

import numpy as np

from app.config import Settings
from app.inference.predictor import Predictor
from app.preprocessing.pipeline import RawInput
from benchmarks.corpus import build

samples = build(Path("../shared/data"), Path("benchmarks/results/raw/corpus"))
print(f"{'cudnn_conv_algo_search':22} {'new shapes':>10} {'ms per new batch size (median / max)':>38} "
      f"{'steady ms b8':>12} {'steady ms b64':>13}")
for mode, n_new in (("DEFAULT", 32), ("HEURISTIC", 12), ("EXHAUSTIVE", 4)):
    s = Settings(model_dir=Path("models"), model_name="fused-sentiment", warmup=False,
                 providers=["CUDAExecutionProvider", "CPUExecutionProvider"], cuda_conv_algo_search=mode)
    p = Predictor(s)
    p.load()
    prepared = [p.prepare(RawInput(x.text, x.image, x.audio)) for x in samples["all"]]
    p.run_batch(prepared[:64])  # CUDA context, first kernels
    sizes = np.random.default_rng(0).permutation(np.arange(1, 64))[:n_new]
    new = []
    for b in sizes:
        t0 = time.perf_counter()
        p.run_batch(prepared[: int(b)])
        new.append(1e3 * (time.perf_counter() - t0))
    steady = {}
    for b in (8, 64):
        ts = []
        for _ in range(20):
            t0 = time.perf_counter()
            p.run_batch(prepared[:b])
            ts.append(1e3 * (time.perf_counter() - t0))
        steady[b] = float(np.median(ts))
    print(f"{mode:22} {n_new:10d} {np.median(new):26.1f} / {max(new):9.1f} {steady[8]:12.2f} {steady[64]:13.2f}")
    del p
PY

say "in-process ceiling + HTTP benchmark on the GPU"
# BENCH_GPU=1: the ceiling and the service use CUDA first; SENTIMENT_REQUIRE_GPU makes the service refuse
# to become ready on a CPU fallback, so a silent fallback fails the run instead of reporting CPU numbers.
mkdir -p "$OUT_DIR"
BENCH_GPU=1 BENCH_READY_TIMEOUT=120 SENTIMENT_REQUIRE_GPU=true \
    SENTIMENT_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    SENTIMENT_MAX_BATCH_SIZE="$BATCH" SENTIMENT_QUEUE_SIZE=$((BATCH * 8)) \
    timeout 390 "$PYTHON" -m benchmarks --targets ceiling,service --duration "$DURATION" --warmup 2 \
    --concurrency 1,8,32,64 --mixes all,text --sweep all --ceiling-configs "${BATCH}x1,${BATCH}x2,16x2,i8" \
    --ceiling-duration 4 \
    --memory-requests 0 --open-loop-duration 10 --out "$OUT_DIR" >"$OUT_DIR/run.log" 2>&1 \
    || { tail -40 "$OUT_DIR/run.log"; echo "benchmark failed (log: $OUT_DIR/run.log)" >&2; exit 1; }

say "summary"
"$PYTHON" -m benchmarks.report "$OUT_DIR/results.json"
grep -q '"provider": "CUDAExecutionProvider"' "$OUT_DIR/results.json" \
    || { echo "ceiling did not run on CUDAExecutionProvider" >&2; exit 1; }
if [[ "$PARALLELISM" == "1" ]]; then
    parallelism
fi
say "done"
