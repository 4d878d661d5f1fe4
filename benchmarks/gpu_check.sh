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
# GPU_CHECK_BATCH (max batch size on GPU, default 64), GPU_CHECK_SITE (pip --target dir, default /tmp/gpu-site).
# Wheels in .whl/ (if any) are installed with --no-index into GPU_CHECK_SITE and put first on PYTHONPATH.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/gpu-site}
DURATION=${GPU_CHECK_DURATION:-5}
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
        "tokenizers>=0.19" "opencv-python-headless>=4.9,<5" "psutil>=5.9" "tqdm>=4.66" "matplotlib>=3.8"
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
                       "soundfile", "soxr", "av", "tokenizers", "cv2", "psutil", "tqdm", "numpy")
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

say "in-process ceiling + HTTP benchmark on the GPU"
# BENCH_GPU=1: the ceiling and the service use CUDA first; SENTIMENT_REQUIRE_GPU makes the service refuse
# to become ready on a CPU fallback, so a silent fallback fails the run instead of reporting CPU numbers.
mkdir -p "$OUT_DIR"
BENCH_GPU=1 BENCH_READY_TIMEOUT=120 SENTIMENT_REQUIRE_GPU=true \
    SENTIMENT_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    SENTIMENT_MAX_BATCH_SIZE="$BATCH" SENTIMENT_QUEUE_SIZE=$((BATCH * 8)) \
    timeout 390 "$PYTHON" -m benchmarks --targets ceiling,service --duration "$DURATION" --warmup 2 \
    --concurrency 1,8,32,64 --ceiling-configs "${BATCH}x1,${BATCH}x2,16x2" --ceiling-duration 4 \
    --memory-requests 0 --open-loop-duration 10 --out "$OUT_DIR" >"$OUT_DIR/run.log" 2>&1 \
    || { tail -40 "$OUT_DIR/run.log"; echo "benchmark failed (log: $OUT_DIR/run.log)" >&2; exit 1; }

say "summary"
"$PYTHON" -m benchmarks.report "$OUT_DIR/results.json"
grep -q '"provider": "CUDAExecutionProvider"' "$OUT_DIR/results.json" \
    || { echo "ceiling did not run on CUDAExecutionProvider" >&2; exit 1; }
say "done"
