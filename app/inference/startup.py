"""Start-up helpers of the predictor: BLAS threads, the preprocessing pipeline for a model, the readiness
probe upload and its verdict."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.config import Settings
from app.contract import ModelContract
from app.inference.model import InferenceModel
from app.inference.repository import ModelLoadError
from app.inference.session import CUDA_PROVIDERS
from app.preprocessing.experts import Expert, Limits, Resources
from app.preprocessing.face import DETECTOR_FILE, FaceDetector
from app.preprocessing.language import LanguageGate
from app.preprocessing.pipeline import PreprocessingPipeline, RawInput
from app.preprocessing.text import load_tokenizer
from app.preprocessing.vad import VoiceActivityDetector


def limit_blas_threads() -> None:
    """Make numpy's BLAS (OpenBLAS in the numpy wheels) single-threaded in this process, for good.

    The log-mel filterbank product (:func:`app.preprocessing.audio.log_mel`) is a small matrix product that
    runs inside every preprocessing thread; a multi-threaded BLAS starts its own CPU-count threads for each,
    which only oversubscribes the cores (the pool already runs in parallel). Measured side by side with
    ``python -m benchmarks.blas_threads`` (see its docstring). ONNX Runtime's own thread pool is not
    affected. Uses ``threadpoolctl`` (limits libraries already loaded; numpy is imported by then).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def build_pipeline(
    model: InferenceModel, settings: Settings, experts: Mapping[str, Expert]
) -> PreprocessingPipeline:
    """The preprocessing pipeline for ``model`` (:func:`pipeline_for` with its contract, tokenizer and
    active execution providers).

    Raises:
        ModelLoadError: as :func:`pipeline_for`.
    """
    providers = tuple(model.loaded.active_providers)
    return pipeline_for(
        model.contract, model.spec.tokenizer_file, providers, settings, experts, model.spec.name
    )


def pipeline_for(
    contract: ModelContract,
    tokenizer_file: Path,
    providers: Sequence[str],
    settings: Settings,
    experts: Mapping[str, Expert],
    model_name: str = "model",
) -> PreprocessingPipeline:
    """The preprocessing pipeline for a model's ``contract``: its experts, its tokenizer, the face detector
    (when the model has an expert that reads images), the voice activity detector
    (:class:`~app.preprocessing.vad.VoiceActivityDetector`), both built once here on ``providers`` (the
    main model's active execution providers: CUDA when the model runs on it, else the CPU), the language gate
    of its text expert (built once here, when ``settings.language_gate`` is on and a text expert declares
    languages; shared by every preprocessing thread), the request limits. The server builds one; each
    preprocessing worker process (``app.inference.process_pool``) builds its own.

    Raises:
        ModelLoadError: the tokenizer, the face detector, the voice activity model or the language detector
            cannot be loaded, or an expert of the model has no registry entry.
    """
    try:
        tokenizer = load_tokenizer(tokenizer_file)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception types
        raise ModelLoadError(f"could not load tokenizer {tokenizer_file}: {exc}") from exc
    try:
        vad = VoiceActivityDetector(tuple(providers))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
        raise ModelLoadError(f"could not load the voice activity detector: {exc}") from exc
    limits = Limits(
        settings.max_text_chars,
        settings.max_image_pixels,
        settings.max_audio_seconds,
        max_jpeg_pixels=settings.max_jpeg_pixels,
    )
    detector = face_detector(providers, settings) if "image" in contract.modalities else None
    text_experts = (e for e in contract.experts if e.modality == "text" and e.languages)
    languages = next((e.languages for e in text_experts), ())
    gate = None
    if settings.language_gate and languages:
        try:
            gate = LanguageGate(languages)
        except Exception as exc:  # noqa: BLE001 - a missing package or a corrupt model file
            raise ModelLoadError(f"could not load the language detector (py3langid): {exc}") from exc
    try:
        audio_inputs = {t.name for e in contract.experts if e.modality == "audio" for t in e.inputs}
        resources = Resources(tokenizer, vad, gate, detector, audio_waveform="waveform" in audio_inputs)
        return PreprocessingPipeline(contract, resources, limits, experts)
    except KeyError as exc:
        raise ModelLoadError(f"model {model_name}: {exc.args[0]}") from exc


def detector_file(settings: Settings) -> Path:
    """``<model_dir>/detectors/retinaface_mnet025.onnx`` when a mounted model repository brings one, else
    the file committed with the service (:data:`app.preprocessing.face.DETECTOR_FILE`)."""
    mounted = settings.model_dir / "detectors" / DETECTOR_FILE.name
    return mounted if mounted.is_file() else DETECTOR_FILE


def face_detector(providers: Sequence[str], settings: Settings) -> FaceDetector:
    """The face detector session, on ``providers``: the execution providers the fused model really got (so
    it runs on the GPU when the model does), one intra-op thread, spinning off (:meth:`FaceDetector.load`);
    cuDNN's convolution search as ``SENTIMENT_CUDA_CONV_ALGO_SEARCH``, but never ``EXHAUSTIVE`` (each image
    size is a new input shape); with ``SENTIMENT_SHAPE_BUCKETS`` on a CUDA provider, one fixed input size.

    Raises:
        ModelLoadError: the detector file is missing or ONNX Runtime cannot load it.
    """
    path = detector_file(settings)
    wanted = list(providers) or ["CPUExecutionProvider"]
    search = "HEURISTIC" if settings.cuda_conv_algo_search == "EXHAUSTIVE" else settings.cuda_conv_algo_search
    try:
        fixed = settings.shape_buckets and wanted[0] in CUDA_PROVIDERS
        return FaceDetector.load(path, providers=wanted, cuda_conv_algo_search=search, fixed_canvas=fixed)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise ModelLoadError(f"could not load face detector {path}: {type(exc).__name__}: {exc}") from exc


def probe_upload() -> RawInput:
    """A small real upload for the readiness probe and pool warm-up: a text, a 96×96 grayscale PNG and
    0.5 s of a 220 Hz tone as a 16 kHz WAV (bytes made here). The tone runs the audio decoder and the voice
    activity detector in every pool thread; it is not speech, so the audio expert reports ``no_speech``."""
    import soundfile as sf
    from PIL import Image

    yy, xx = np.mgrid[0:96, 0:96]
    png = io.BytesIO()
    Image.fromarray(((xx * 2 + yy) % 256).astype(np.uint8)).save(png, format="PNG")
    t = np.arange(8_000, dtype=np.float32) / 16_000
    wav = io.BytesIO()
    sf.write(wav, (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), 16_000, format="WAV")
    return RawInput(text="this is a good day", image=png.getvalue(), audio=wav.getvalue())


def readiness_problem(
    probabilities: npt.NDArray[np.float32], model: InferenceModel, settings: Settings
) -> str | None:
    """Why the service must not report ready after the probe (None: ready): the probe's fused
    probabilities are not a finite probability vector, or ``SENTIMENT_REQUIRE_GPU`` is set and the CUDA
    execution provider is not active."""
    if not (np.isfinite(probabilities).all() and abs(float(probabilities.sum()) - 1.0) < 1e-3):
        return f"readiness probe gave invalid probabilities {probabilities.tolist()}"
    active = model.loaded.active_providers
    if settings.require_gpu and "CUDAExecutionProvider" not in active:
        return (
            "SENTIMENT_REQUIRE_GPU is set but the CUDA execution provider is not active "
            f"(active: {list(active)}); check CUDA 13 / cuDNN 9 libraries"
        )
    return None
