# Multimodal sentiment service: two images, one build stage each (named targets).
#   cuda (default, the last stage): NVIDIA GPU, onnxruntime-gpu
#       docker build -t multimodal-sentiment:0.1.0 .
#   cpu: python:3.12-slim with the plain onnxruntime wheel, no CUDA libraries
#       docker build --target cpu -t multimodal-sentiment:0.1.0-cpu .
# Both: the model baked in at /app/models (SENTIMENT_MODEL_DIR), non-root numeric user 10001, `msa serve` on
# 0.0.0.0:8000, HEALTHCHECK on /readyz. Another model repository: mount it read-only at another path and point
# SENTIMENT_MODEL_DIR there (docker run -v "$PWD/models:/models:ro" -e SENTIMENT_MODEL_DIR=/models ...).
# Never mount over /app/models: the voice activity detector is always read from /app/models/detectors
# (found relative to app/), and the face detector too unless the mounted repository brings one.

# ---------------------------------------------------------------------------------------------- cpu
FROM python:3.12-slim-bookworm AS cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app

# pyproject.toml's dependencies with onnxruntime in place of onnxruntime-gpu (deploy/docker/
# cpu_requirements.py), so no CUDA wheel is downloaded; then the package itself without dependencies.
# Every wheel the service needs bundles its native libraries: no apt packages.
COPY pyproject.toml README.md ./
COPY deploy/docker/cpu_requirements.py /tmp/cpu_requirements.py
RUN python -m venv /opt/venv \
    && python /tmp/cpu_requirements.py pyproject.toml > /tmp/requirements-cpu.txt \
    && pip install --no-cache-dir -r /tmp/requirements-cpu.txt \
    && rm /tmp/cpu_requirements.py /tmp/requirements-cpu.txt
COPY app ./app
# Editable (-e): the package stays in /app, where the service looks for the files committed beside it
# (models/detectors: the voice activity detector and the face detector, found relative to app/; a
# non-editable install would put app/ in site-packages and the start-up would fail on the missing VAD).
RUN pip install --no-cache-dir --no-deps -e . \
    && groupadd --gid 10001 sentiment \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin sentiment

COPY models ./models

ENV SENTIMENT_HOST=0.0.0.0 \
    SENTIMENT_PORT=8000 \
    SENTIMENT_MODEL_DIR=/app/models \
    SENTIMENT_PROVIDERS=CPUExecutionProvider

USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

CMD ["msa", "serve"]

# --------------------------------------------------------------------------------------------- cuda
# CUDA 13 + cuDNN 9 runtime: what onnxruntime-gpu 1.31 is built against (its CUDA EP loads libcublasLt.so.13
# and cuDNN 9); a CUDA 12 base would make ONNX Runtime fall back to the CPU silently. The version is pinned by
# deploy/docker/constraints-cuda.txt (onnxruntime-gpu==1.31.*) so that a later release built for another CUDA
# major cannot slip in. Host: NVIDIA driver >= 580, GPU of compute capability >= 7.5 (docs/deploy.md).
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS cuda

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Ubuntu's python3 (3.12) in a venv; no compilers. No other Debian package: the service's wheels bundle their
# native libraries (the service no longer uses OpenCV).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app

# Dependencies first, from pyproject.toml alone (a cached layer: editing app/ does not reinstall them), with
# onnxruntime-gpu held to the CUDA 13 series by the constraints file; then the code and the package itself
# without dependencies. Versions are bounded in pyproject.toml.
COPY pyproject.toml README.md ./
COPY deploy/docker/constraints-cuda.txt /tmp/constraints-cuda.txt
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements-cuda.txt \
    && pip install --no-cache-dir -r /tmp/requirements-cuda.txt -c /tmp/constraints-cuda.txt \
    && rm /tmp/requirements-cuda.txt /tmp/constraints-cuda.txt
COPY app ./app
# Editable (-e) for the same reason as in the cpu stage: models/detectors is found relative to app/.
RUN pip install --no-cache-dir --no-deps -e . \
    && groupadd --gid 10001 sentiment \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin sentiment

# The model is baked in. Another model repository: mount it at another path (e.g. /models) and set
# SENTIMENT_MODEL_DIR to it; mounting over /app/models would hide the detectors in /app/models/detectors.
COPY models ./models

ENV SENTIMENT_HOST=0.0.0.0 \
    SENTIMENT_PORT=8000 \
    SENTIMENT_MODEL_DIR=/app/models

# Non-root (numeric so Kubernetes' runAsNonRoot can verify it).
USER 10001:10001
EXPOSE 8000

# Ready = model loaded, warmed up and a probe inference passed (503 otherwise).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

CMD ["msa", "serve"]
