#!/usr/bin/env bash
# GPU check (issues 4 and 15): on a machine with an NVIDIA GPU, make sure ONNX Runtime's CUDA execution
# provider is really active (not a silent CPU fallback), compare CUDA and CPU answers, then run the in-process
# ceiling, the service and the naive per-request FastAPI server on the GPU (mixes realistic, small, text) with
# GPU utilisation, print one summary table, then compare GPU settings. Budget: about 7 minutes before the
# settings comparison, which is expected to take 5–8 more (GPU_CHECK_* below skip parts).
#
#   benchmarks/gpu_check.sh              run the check (from any directory)
#   benchmarks/gpu_check.sh --pack       where PyPI and ../shared/data are reachable: build .gpu/, everything a
#                                        GPU host without internet or datasets needs, in parts of at most
#                                        GPU_CHECK_PART_MB MiB (default 54) so each part travels on its own
#
# The payload (--pack; unpacked by the check when .gpu/part-* exist): a ready Python site folder for CPython
# 3.12 (onnxruntime-gpu and the service's dependencies, the versions of this .venv), the model file
# (xz-compressed; it is larger than some transfer limits alone), and the realistic corpus with
# GPU_CHECK_ITEMS files per kind (default 2) plus 96 TweetEval test tweets.
#
# Environment: PYTHON (default python3), GPU_CHECK_DURATION (s per point, default 5),
# GPU_CHECK_BATCH (max batch size on GPU, default 64), GPU_CHECK_SITE (site folder, default /tmp/gpu-site),
# GPU_CHECK_PREPROCESS_WORKERS (service preprocessing threads, default the core count minus 2),
# GPU_CHECK_TARGETS (default ceiling,service,naive; none: skip the ceiling and HTTP benchmark),
# GPU_CHECK_PARALLELISM (issue 15 item 4: threads vs preprocessing worker processes vs uvicorn workers sharing
# the GPU, mixes realistic and text, 64 connections, about 4 minutes: 0 = skip (default), 1 = also run it
# after the other steps, only = run it right after the CUDA check and stop; writes parallelism-MIX.txt),
# GPU_CHECK_CONV (1: also time cuDNN's conv algorithm search modes, about 1 minute; default 0),
# GPU_CHECK_BUCKETS (1, default: the service with SHAPE_BUCKETS + HEURISTIC + CUDA_BLOCKING_SYNC vs its defaults,
# mixes realistic at 1 and 64 connections and text at 64, fresh servers; writes gpu-settings-MIX-cN.txt).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/gpu-site}
DURATION=${GPU_CHECK_DURATION:-5}
PARALLELISM=${GPU_CHECK_PARALLELISM:-0}
BATCH=${GPU_CHECK_BATCH:-64}
ITEMS=${GPU_CHECK_ITEMS:-2}
TARGETS=${GPU_CHECK_TARGETS:-ceiling,service,naive}
OUT_DIR=benchmarks/results/gpu
START=$SECONDS

if [[ "${1:-}" == "--pack" ]]; then
    # Site folder: binary wheels for CPython 3.12 on manylinux x86-64, pinned to this .venv's versions, no
    # dependency resolution (numpy, tokenizers, Pillow, psutil, httpx, tqdm, pynvml ... are on the GPU host's
    # image; KINDS.md of the device tool lists it). onnxruntime-gpu 1.31 needs CUDA 13 / cuDNN 9, which the
    # host's torch wheels bring (nvidia-* packages).
    PART_MB=${GPU_CHECK_PART_MB:-54}
    VENV_PY=${VENV_PY:-.venv/bin/python}
    pins=$("$VENV_PY" -m pip freeze | grep -i -E '^(onnxruntime-gpu|fastapi|fastapi_offline|fastapi-offline|starlette|pydantic|pydantic_core|pydantic-core|pydantic-settings|python-dotenv|annotated-types|typing-inspection|uvicorn|httptools|python-multipart|soundfile|cffi|pycparser|soxr|av|py3langid|pybase64|annotated-doc|opentelemetry-api|importlib_metadata|importlib-metadata)==')
    rm -rf .gpu && mkdir -p .gpu/stage/site .gpu/stage/files
    # shellcheck disable=SC2086
    "$VENV_PY" -m pip install -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --target .gpu/stage/site $pins
    "$VENV_PY" - "$ITEMS" <<'PY'
import sys
from pathlib import Path

from benchmarks import realistic

items = int(sys.argv[1])
realistic.build(n=items, data_dir=Path("../shared/data"))
realistic.build(["tweet"], n=96, data_dir=Path("../shared/data"))
PY
    base=benchmarks/results/raw/realistic/v2-seed0
    mkdir -p ".gpu/stage/files/$base"
    for kind in $("$VENV_PY" -c 'from benchmarks.realistic import KINDS; print(" ".join(KINDS))'); do
        n=$ITEMS; [[ $kind == phone_jpeg_48mp && $ITEMS -gt 4 ]] && n=4
        cp -r "$base/$kind-n$n" ".gpu/stage/files/$base/"
    done
    cp -r "$base/tweet-n96" ".gpu/stage/files/$base/"
    tar -C .gpu/stage -cf - site files | xz -T0 -6 >.gpu/payload.tar.xz
    xz -T0 -6 -c models/fused-sentiment/1/model.onnx >.gpu/model.onnx.xz
    cat .gpu/model.onnx.xz .gpu/payload.tar.xz | split -b "${PART_MB}M" -d -a 2 - .gpu/part-
    sha256sum models/fused-sentiment/1/model.onnx | cut -d' ' -f1 >.gpu/model.sha256
    stat -c %s .gpu/model.onnx.xz >.gpu/model.xz.bytes
    rm -rf .gpu/stage .gpu/payload.tar.xz .gpu/model.onnx.xz
    ls -l .gpu/
    echo "parts: $(find .gpu -name 'part-*' | wc -l) of at most $PART_MB MiB; .gpu/ must be git-ignored"
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
parts=(.gpu/part-*)
if ((${#parts[@]})); then
    say "unpacking the carried payload (${#parts[@]} parts) into $SITE and the working tree"
    "$PYTHON" - "$SITE" <<'PY'
import glob, hashlib, io, lzma, os, shutil, sys, tarfile
from pathlib import Path

site = Path(sys.argv[1])
data = b"".join(Path(p).read_bytes() for p in sorted(glob.glob(".gpu/part-*")))
n_model = int(Path(".gpu/model.xz.bytes").read_text())
model = Path("models/fused-sentiment/1/model.onnx")
want = Path(".gpu/model.sha256").read_text().strip()
if not model.exists() or hashlib.sha256(model.read_bytes()).hexdigest() != want:
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(lzma.decompress(data[:n_model]))
    if hashlib.sha256(model.read_bytes()).hexdigest() != want:
        sys.exit("model.onnx from the payload does not match its sha256")
stage = Path("/tmp/gpu-stage")
shutil.rmtree(stage, ignore_errors=True)
with tarfile.open(fileobj=io.BytesIO(data[n_model:]), mode="r:xz") as tar:
    tar.extractall(stage, filter="data")
shutil.rmtree(site, ignore_errors=True)
shutil.move(stage / "site", site)
shutil.copytree(stage / "files", ".", dirs_exist_ok=True)
print("model", model, "sha256 ok; site", site, "with", len(os.listdir(site)), "entries")
PY
fi
if [[ -d "$SITE" ]]; then
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
    sys.exit(f"missing Python packages: {missing}; run benchmarks/gpu_check.sh --pack where pip works "
             "and carry .gpu/")
import onnxruntime as ort
print("onnxruntime", ort.__version__, "available providers:", ort.get_available_providers())
for module in ("app.main", "fastapi", "benchmarks.pipeline"):  # the servers' whole import trees
    importlib.import_module(module)
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
    dtype = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_, "tensor(float16)": np.float16}.get(i.type, np.float32)
    feeds[i.name] = np.ones(shape, dtype=dtype)
probs = sess.run(["probabilities"], feeds)[0]
print("GPU inference OK, probabilities", np.round(probs.astype(np.float32), 4).tolist())
PY

# Service settings on the GPU host (docs/benchmarks.md "On a GPU"): a batch of up to $BATCH, preprocessing
# threads about the core count, one ORT intra-op thread; REQUIRE_GPU: a CPU fallback fails the run instead
# of measuring the CPU.
PREP=${GPU_CHECK_PREPROCESS_WORKERS:-$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))}
export SENTIMENT_REQUIRE_GPU=true SENTIMENT_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    SENTIMENT_MAX_BATCH_SIZE="$BATCH" SENTIMENT_QUEUE_SIZE=$((BATCH * 8)) \
    SENTIMENT_PREPROCESS_WORKERS="$PREP" SENTIMENT_INTRA_OP_THREADS=1
mkdir -p "$OUT_DIR"

# Threads vs preprocessing worker processes vs uvicorn worker processes, each configuration a fresh
# `msa serve` on the GPU (benchmarks.tune).
parallelism() {
    for mix in realistic text; do
        say "threads vs processes on the GPU, mix $mix, 64 connections"
        BENCH_GPU=1 timeout 300 "$PYTHON" -m benchmarks.tune --mix "$mix" --concurrency 64 \
            --duration "$DURATION" --realistic-items "$ITEMS" --configs "threads=" \
            "preprocess-processes-4=PREPROCESS_PROCESSES=4" "uvicorn-workers-4=WORKERS=4" \
            | tee "$OUT_DIR/parallelism-$mix.txt"
    done
}
if [[ "$PARALLELISM" == "only" ]]; then
    parallelism
    say "done"
    exit 0
fi

say "CUDA vs CPU execution provider: same probabilities on the small and realistic mixes"
# The service's own Predictor (prepare + run_batch, its padding and length buckets) on both providers, for
# each request mix and a shuffled mixed batch, at several batch sizes. Tolerance 1e-3: cuDNN/cuBLAS may
# pick TF32 or other reduction orders; the fp32 CPU graph matches PyTorch to 1e-6 (tests).
PARITY_OK=1
[[ "${GPU_CHECK_PARITY:-1}" == "1" ]] || PARITY_SKIP=1
[[ -n "${PARITY_SKIP:-}" ]] || "$PYTHON" - "$ITEMS" <<'PY' | tee "$OUT_DIR/parity.txt" || PARITY_OK=0
import random
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.__main__ import load_mixes
from benchmarks.ceiling import AppEngine

samples = load_mixes(["small", "realistic", "text"], Path("../shared/data"), int(sys.argv[1]))
mixed = [s for m in samples.values() for s in m]
random.Random(0).shuffle(mixed)
samples["mixed"] = mixed
model_dir = Path("models/fused-sentiment")
gpu, cpu = AppEngine(model_dir, True), AppEngine(model_dir, False)
print("providers: gpu engine", gpu.provider, "| cpu engine", cpu.provider)
if gpu.provider != "CUDAExecutionProvider":
    sys.exit("the service's predictor did not get the CUDA execution provider")
worst = 0.0
print(f"{'mix':9} {'batch':>5} {'max |dprob| fused':>18} {'max |dprob| per modality':>25} {'labels equal':>12}")
for mix, ss in samples.items():
    for bs in (1, 16):
        batch = ss[:bs]
        og, oc = gpu.run([gpu.prep(s) for s in batch]), cpu.run([cpu.prep(s) for s in batch])
        d_f = max(float(np.abs(a.probabilities - b.probabilities).max()) for a, b in zip(og, oc))
        d_m = max(
            float(np.nanmax(np.abs(np.nan_to_num(a.modality_probabilities) - np.nan_to_num(b.modality_probabilities))))
            for a, b in zip(og, oc)
        )
        same = sum(int(np.argmax(a.probabilities) == np.argmax(b.probabilities)) for a, b in zip(og, oc))
        worst = max(worst, d_f, d_m)
        print(f"{mix:9} {bs:5d} {d_f:18.2e} {d_m:25.2e} {same:>6d}/{len(og):<5d}")
print(f"worst |dprob| CUDA vs CPU: {worst:.2e}")
# model-only time per batch (prepared inputs, the service's collate + session.run), median of 20
for name, eng in (("CUDA", gpu), ("CPU", cpu)):
    for bs in (1, 8, 64):
        prepared = [eng.prep(s) for s in samples["realistic"][:bs]]
        eng.run(prepared)
        ts = []
        for _ in range(20 if name == "CUDA" else 5):
            t0 = time.perf_counter()
            eng.run(prepared)
            ts.append(time.perf_counter() - t0)
        print(f"model-only realistic batch {bs:2d} on {name}: median {1e3 * float(np.median(ts)):.2f} ms "
              f"({bs / float(np.median(ts)):.0f} items/s)")
if worst > 1e-3:
    sys.exit(f"CUDA and CPU probabilities differ by {worst:.2e} > 1e-3")
PY

say "where the model's time goes on the GPU (ORT profile per node; cudnn_conv_algo_search modes)"
[[ "${GPU_CHECK_PROFILE:-1}" == "1" ]] && { "$PYTHON" -m benchmarks.gpu_profile --items "$ITEMS" --batch 1,16 | tee "$OUT_DIR/profile.txt" || true; }

if [[ "${GPU_CHECK_CONV:-0}" == "1" ]]; then
    say "cuDNN conv algorithm search: cost of a new batch shape vs steady state"
    # ORT's CUDA Conv repeats cudnn_conv_algo_search for every new input shape; the service's batches vary in
    # size and in face count (the face network runs on the rows with a face only), so new shapes keep coming.
    "$PYTHON" - "$ITEMS" <<'PY' | tee "$OUT_DIR/conv_algo.txt"
import sys
import time
from pathlib import Path

import numpy as np

from app.config import Settings
from app.inference.predictor import Predictor
from app.preprocessing.pipeline import RawInput
from benchmarks.__main__ import load_mixes

samples = load_mixes(["realistic"], Path("../shared/data"), int(sys.argv[1]))["realistic"]
print(f"{'cudnn_conv_algo_search':22} {'new shapes':>10} {'ms per new batch size (median / max)':>38} "
      f"{'steady ms b8':>12} {'steady ms b64':>13}")
for mode, n_new in (("DEFAULT", 32), ("HEURISTIC", 12), ("EXHAUSTIVE", 4)):
    s = Settings(model_dir=Path("models"), model_name="fused-sentiment", warmup=False,
                 providers=["CUDAExecutionProvider", "CPUExecutionProvider"], cuda_conv_algo_search=mode)
    p = Predictor(s)
    p.load()
    prepared = [p.prepare(RawInput(x.text, x.image, x.audio)) for x in samples]
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
fi

if [[ "$TARGETS" != "none" ]]; then
    say "in-process ceiling + the service + naive FastAPI on the GPU, GPU utilisation per point"
    # BENCH_GPU=1: the ceiling and every server use CUDA first (the naive server through benchmarks.pipeline);
    # the service's SENTIMENT_REQUIRE_GPU makes it refuse to become ready on a CPU fallback.
    BENCH_GPU=1 BENCH_READY_TIMEOUT=120 timeout 420 "$PYTHON" -m benchmarks --targets "$TARGETS" \
        --duration "$DURATION" --warmup 2 --concurrency 1,8,32,64 --mixes realistic,small,text --sweep realistic \
        --realistic-items "$ITEMS" --ceiling-configs "8x2,16x2,32x2,${BATCH}x2,i16" --ceiling-intra-op 1 \
        --ceiling-duration 8 --memory-requests 0 --open-loop-duration 10 --out "$OUT_DIR" >"$OUT_DIR/run.log" 2>&1 \
        || { tail -40 "$OUT_DIR/run.log"; echo "benchmark failed (log: $OUT_DIR/run.log)" >&2; exit 1; }
    say "summary"
    "$PYTHON" -m benchmarks.report "$OUT_DIR/results.json"
    if [[ ",$TARGETS," == *",ceiling,"* ]]; then
        grep -q '"provider": "CUDAExecutionProvider"' "$OUT_DIR/results.json" \
            || { echo "ceiling did not run on CUDAExecutionProvider" >&2; exit 1; }
    fi
fi

if [[ "${GPU_CHECK_BUCKETS:-1}" == "1" ]]; then
    # Issue 15 item 3 and its CPU bar: shape buckets (filler rows, fixed detector canvas, every shape warmed
    # up) with cuDNN's HEURISTIC search and CUDA blocking synchronisation, vs the defaults; fresh servers one
    # after the other (benchmarks.tune); blocking synchronisation alone at one connection (server CPU).
    tuned="SHAPE_BUCKETS=true;CUDA_CONV_ALGO_SEARCH=HEURISTIC;CUDA_BLOCKING_SYNC=true"
    for point in "realistic 1" "realistic 64" "text 64"; do
        read -r mix conns <<<"$point"
        configs=("defaults=" "gpu-tuned=$tuned")
        if [[ "$conns" == "1" ]]; then configs+=("blocking-sync=CUDA_BLOCKING_SYNC=true"); fi
        say "GPU settings vs defaults, mix $mix, $conns connections"
        BENCH_GPU=1 BENCH_READY_TIMEOUT=600 timeout 900 "$PYTHON" -m benchmarks.tune --mix "$mix" \
            --concurrency "$conns" --duration "$DURATION" --realistic-items "$ITEMS" --configs "${configs[@]}" \
            | tee "$OUT_DIR/gpu-settings-$mix-c$conns.txt"
    done
fi

if [[ "$PARALLELISM" == "1" ]]; then
    parallelism
fi
if ((!PARITY_OK)); then
    echo "CUDA vs CPU parity failed (see $OUT_DIR/parity.txt)" >&2
    exit 1
fi
say "done"
