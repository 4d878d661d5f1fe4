"""Voice activity detection with Silero VAD (ONNX, run by ONNX Runtime): speech segments of a 16 kHz clip and
the speech-only waveform the audio expert sees, in serving and in training alike.

The model is ``silero_vad_16k_sequence.onnx`` from the ``silero-vad`` 6.2.3 wheel (MIT; committed under
``models/detectors/`` with its sha256, re-extracted by ``tools/fetch_detectors.py``). It is the
"sequence" export of the stock streaming ``silero_vad.onnx`` (silero-vad PR 784, ``sequence_vad.py``): the
same network (a 64-sample context + 512-sample frame → STFT → conv encoder → LSTM → speech probability),
but one ONNX call runs a whole block of frames with the LSTM state carried inside the graph. The stock model
takes ``input`` float32 [B, 576], ``state`` float32 [2, B, 128] and ``sr`` int64 and returns one
probability per row; its batch axis holds independent streams, not successive frames, so a clip needs one
call per 32 ms frame. On these 2 shared cores the sequence model gave bit-identical probabilities (max
|Δp| = 0.0 over 313 frames of CREMA-D speech) at 10 ms per second of audio against 23 ms for the per-frame
loop (``tools/fetch_detectors.py`` re-checks the equality; ``benchmarks/vad_speed.py`` measures the time).

Segments follow silero-vad's ``get_speech_timestamps_from_probs`` (``src/silero_vad/utils_vad.py`` of
silero-vad 6.2.3) with its defaults and ``max_speech_duration_s`` = inf: speech starts at a frame with
probability ≥ 0.5, ends after ≥ 100 ms below ``neg_threshold`` = 0.5 − 0.15, segments of ≤ 250 ms are
dropped, and each kept segment is padded by 30 ms (split evenly when two are closer than 60 ms).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.contract import SAMPLE_RATE

#: The committed Silero VAD graph (see ``models/detectors/README.md``).
VAD_MODEL_FILE: Final[Path] = (
    Path(__file__).resolve().parents[2] / "models" / "detectors" / "silero_vad_16k_sequence.onnx"
)
#: sha256 of :data:`VAD_MODEL_FILE` as extracted from ``silero_vad-6.2.3-py3-none-any.whl``.
VAD_MODEL_SHA256: Final[str] = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"

#: Samples per VAD frame at 16 kHz (32 ms) and the samples of the previous frame prefixed to each one
#: (silero-vad ``OnnxWrapper``: ``num_samples`` 512, ``context_size`` 64 at 16 kHz).
FRAME_SAMPLES: Final[int] = 512
CONTEXT_SAMPLES: Final[int] = 64
#: LSTM state size of the sequence model (inputs ``h`` and ``c``, float32 [1, 1, 128]).
STATE_SIZE: Final[int] = 128
#: Most frames per ONNX call (silero-vad ``sequence_vad.DEFAULT_MAX_FRAMES``: 512 frames ≈ 16.4 s).
MAX_FRAMES_PER_CALL: Final[int] = 512

# get_speech_timestamps defaults (silero-vad 6.2.3, utils_vad.py).
#: Speech probability at or above which a frame starts speech.
THRESHOLD: Final[float] = 0.5
#: Probability below which a frame counts as silence inside speech (``threshold - 0.15``).
NEG_THRESHOLD: Final[float] = THRESHOLD - 0.15
#: Segments of at most this many ms are dropped.
MIN_SPEECH_MS: Final[int] = 250
#: Silence (ms) needed to end a segment.
MIN_SILENCE_MS: Final[int] = 100
#: Padding (ms) added on each side of a segment.
SPEECH_PAD_MS: Final[int] = 30

#: Longest part (s) of a pause kept between two speech segments by :func:`speech_only`, beyond the 30 ms of
#: padding each segment already carries. Measured with the audio network trained on whole clips (before the
#: bundled one, which is trained on clips trimmed by this function) and :data:`EDGE_S` = 0.5 on 120
#: CREMA-D test clips with a 1.5 s pause inserted (``python -m benchmarks.vad_robustness --clips 120
#: --max-pause X``): the audio label stayed the same in 81 % of clips with 0 s and 67 % with 0.3 s; but
#: with 0–0.2 s the turn2 case ``pause_speech.wav`` (a near-tie, 0.58 / 0.40) flips its label against
#: ``speech_16k.wav`` and with 0.3 s it does not (|Δp| 0.07). 0.3 s is about a phrase break; revisit after
#: the audio network is retrained on pauses.
MAX_PAUSE_S: Final[float] = 0.3

#: Non-speech (s) kept before the first and after the last segment by :func:`speech_only`, beyond the
#: segments' 30 ms padding. CREMA-D clips hold about 0.3–0.5 s of room tone around the sentence. Chosen
#: with the audio network trained on whole clips (the bundled one is trained on clips trimmed with this
#: value): on 500 CREMA-D test clips that network's 6-class accuracy was
#: 0.516 with 0 s kept, 0.560 with 0.25 s, 0.580 with 0.5 s and 0.566 without the VAD
#: (``python -m benchmarks.vad_robustness --clips 500 --only NONE --edge X``).
EDGE_S: Final[float] = 0.5

Segment = tuple[int, int]


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """The speech-only part of a clip.

    Attributes:
        waveform: float32 [M] at 16 kHz: the segments with the pauses between them cut to at most
            :data:`MAX_PAUSE_S`, and at most :data:`EDGE_S` of the input before the first and after the last
            segment; empty when no speech was found.
        speech_s: seconds of speech found (the segments' total length, before pauses are added back).
        segments: (start, end) sample indices of the speech segments in the input, end exclusive.
    """

    waveform: npt.NDArray[np.float32]
    speech_s: float
    segments: tuple[Segment, ...]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class VoiceActivityDetector:
    """Silero VAD (sequence ONNX graph) in its own ONNX Runtime session; thread-safe (``session.run``).

    The session uses one intra-op and one inter-op thread and no spin-waiting
    (``session.intra_op.allow_spinning`` = 0): requests run it from the preprocessing thread pool in
    parallel, so each call stays on its caller's core.

    Args:
        providers: execution providers in order of preference (e.g. the main model's active providers).
        model_file: the ONNX graph; default :data:`VAD_MODEL_FILE`.

    Raises:
        FileNotFoundError: ``model_file`` does not exist.
        ValueError: the graph's inputs are not ``input``/``h``/``c``.
    """

    def __init__(self, providers: Sequence[str] = ("CPUExecutionProvider",), model_file: Path | None = None):
        path = model_file or VAD_MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"voice activity model {path} not found (tools/fetch_detectors.py)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        wanted = [p for p in providers if p in ("CUDAExecutionProvider", "CPUExecutionProvider")]
        self.session: Any = ort.InferenceSession(
            str(path), sess_options=options, providers=wanted or ["CPUExecutionProvider"]
        )
        names = sorted(i.name for i in self.session.get_inputs())
        if names != ["c", "h", "input"]:
            raise ValueError(f"{path} has inputs {names}; the Silero VAD sequence graph has c, h, input")
        self.model_file = path

    @property
    def providers(self) -> tuple[str, ...]:
        """Execution providers active in the session (``session.get_providers()``)."""
        return tuple(self.session.get_providers())

    def speech_probabilities(self, waveform: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Speech probability of each 32 ms frame: float32 [ceil(N / 512)] for a 16 kHz waveform float32 [N]
        (the last frame zero-padded; each frame prefixed by the previous frame's last 64 samples, zeros
        before the first, as silero-vad's ``OnnxWrapper``/``sequence_vad.frame_blocks`` do)."""
        x = np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1)
        n = -(-x.size // FRAME_SAMPLES)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        frames = np.zeros((n, FRAME_SAMPLES), dtype=np.float32)
        frames.reshape(-1)[: x.size] = x
        blocks = np.empty((n, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        blocks[0, :CONTEXT_SAMPLES] = 0.0
        blocks[1:, :CONTEXT_SAMPLES] = frames[:-1, -CONTEXT_SAMPLES:]
        blocks[:, CONTEXT_SAMPLES:] = frames
        h = np.zeros((1, 1, STATE_SIZE), dtype=np.float32)
        c = np.zeros((1, 1, STATE_SIZE), dtype=np.float32)
        out = []
        for first in range(0, n, MAX_FRAMES_PER_CALL):
            probs, h, c = self.session.run(
                ["speech_probs", "hn", "cn"],
                {"input": blocks[first : first + MAX_FRAMES_PER_CALL], "h": h, "c": c},
            )
            out.append(np.asarray(probs, dtype=np.float32).reshape(-1))
        return np.concatenate(out)

    def speech_segments(self, waveform: npt.NDArray[np.float32]) -> list[Segment]:
        """Speech segments of a 16 kHz mono waveform float32 [N] as (start, end) samples, end exclusive,
        in order and not overlapping (:func:`segments_from_probabilities` of
        :meth:`speech_probabilities`)."""
        return segments_from_probabilities(self.speech_probabilities(waveform), int(np.size(waveform)))


def segments_from_probabilities(probs: npt.NDArray[np.float32], num_samples: int) -> list[Segment]:
    """Speech segments (start, end) in samples from per-frame probabilities of a clip of ``num_samples``.

    silero-vad 6.2.3 ``get_speech_timestamps_from_probs`` (``utils_vad.py``) with ``threshold`` 0.5,
    ``neg_threshold`` 0.35, ``min_speech_duration_ms`` 250, ``min_silence_duration_ms`` 100,
    ``speech_pad_ms`` 30 and ``max_speech_duration_s`` = inf (so its max-length cutting never applies).
    """
    min_speech = SAMPLE_RATE * MIN_SPEECH_MS / 1000
    min_silence = SAMPLE_RATE * MIN_SILENCE_MS / 1000
    pad = SAMPLE_RATE * SPEECH_PAD_MS / 1000
    raw: list[list[int]] = []
    start: int | None = None
    temp_end = 0
    for i, p in enumerate(probs.tolist()):
        sample = FRAME_SAMPLES * i
        if p >= THRESHOLD and temp_end:
            temp_end = 0
        if p >= THRESHOLD and start is None:
            start = sample
            continue
        if p < NEG_THRESHOLD and start is not None:
            if not temp_end:
                temp_end = sample
            if sample - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                raw.append([start, temp_end])
            start, temp_end = None, 0
    if start is not None and num_samples - start > min_speech:
        raw.append([start, num_samples])
    for i, seg in enumerate(raw):
        if i == 0:
            seg[0] = int(max(0, seg[0] - pad))
        if i != len(raw) - 1:
            gap = raw[i + 1][0] - seg[1]
            if gap < 2 * pad:
                seg[1] += int(gap // 2)
                raw[i + 1][0] = int(max(0, raw[i + 1][0] - gap // 2))
            else:
                seg[1] = int(min(num_samples, seg[1] + pad))
                raw[i + 1][0] = int(max(0, raw[i + 1][0] - pad))
        else:
            seg[1] = int(min(num_samples, seg[1] + pad))
    return [(s, e) for s, e in raw]


def speech_only(
    waveform: npt.NDArray[np.float32],
    segments: Sequence[Segment],
    max_pause_s: float = MAX_PAUSE_S,
    edge_s: float = EDGE_S,
) -> SpeechAudio:
    """Cut a 16 kHz waveform float32 [N] to its speech: keep at most ``edge_s`` seconds before the first and
    after the last segment (drop the rest of the edges), and at most ``max_pause_s`` of each pause between
    segments (its first and last halves, so the fade-out and onset around the cut stay; 0 joins the
    segments, which carry their 30 ms padding).

    Returns:
        :class:`SpeechAudio`; an empty waveform and 0 s when ``segments`` is empty.
    """
    x = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if not segments:
        return SpeechAudio(np.zeros(0, dtype=np.float32), 0.0, ())
    keep = int(round(max_pause_s * SAMPLE_RATE))
    edge = int(round(edge_s * SAMPLE_RATE))
    parts = [x[max(0, segments[0][0] - edge) : segments[0][1]]]
    for (_, prev_end), (start, end) in zip(segments[:-1], segments[1:], strict=True):
        if start - prev_end > keep:
            parts += [x[prev_end : prev_end + keep // 2], x[start - (keep - keep // 2) : start]]
        else:
            parts.append(x[prev_end:start])
        parts.append(x[start:end])
    parts.append(x[segments[-1][1] : segments[-1][1] + edge])
    speech = sum(e - s for s, e in segments) / SAMPLE_RATE
    return SpeechAudio(np.concatenate(parts), float(speech), tuple(segments))


def trim_to_speech(
    detector: VoiceActivityDetector,
    waveform: npt.NDArray[np.float32],
    max_pause_s: float = MAX_PAUSE_S,
    edge_s: float = EDGE_S,
) -> SpeechAudio:
    """The speech-only waveform of a 16 kHz clip float32 [N] (:meth:`VoiceActivityDetector.speech_segments`
    then :func:`speech_only`): what the audio expert sees in serving (``prepare_audio``) and in training
    (the CREMA-D log-mel cache)."""
    return speech_only(waveform, detector.speech_segments(waveform), max_pause_s, edge_s)
