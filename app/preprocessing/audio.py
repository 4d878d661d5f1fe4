"""Audio preprocessing: waveform → log-mel features, shared by training and serving.

Decoding of uploaded bytes (soundfile first, PyAV for the rest) lives in this module too; the feature
function :func:`log_mel` is the one the audio branch was trained with (``app/training``), so train and
serve never drift.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

# HOP_LENGTH, N_FFT, num_frames are re-exported: part of the log-mel front end, defined in the contract
# (which Settings also reads).
from app.contract import HOP_LENGTH as HOP_LENGTH
from app.contract import N_FFT as N_FFT
from app.contract import N_MELS, SAMPLE_RATE
from app.contract import num_frames as num_frames
from app.preprocessing.container_sizes import find_payload, payload_shortfall
from app.preprocessing.errors import (
    InputTooLargeError,
    PreprocessingError,
    UndecodableInputError,
    UnsupportedMediaError,
)

#: STFT window length: 400 samples = 25 ms at 16 kHz (the usual speech front end, e.g. Kaldi fbank).
WIN_LENGTH: Final[int] = 400
#: Lowest mel filter edge in Hz (below ~50 Hz speech carries mains hum, not voice).
F_MIN: Final[float] = 50.0
#: Highest mel filter edge in Hz (the Nyquist frequency at 16 kHz).
F_MAX: Final[float] = 8000.0
#: Offset added to the mel power before the natural log, so silence gives log(1e-6) ≈ -13.8, not -inf.
LOG_OFFSET: Final[float] = 1e-6
#: Largest accepted |sample| of decoded audio (nominal range [-1, 1]; float files may exceed it a little).
#: 1e6 is +120 dB over full scale; beyond ~1e17 the float32 power spectrum of :func:`log_mel` overflows to
#: inf/NaN, which would reach the model (a 500 before this bound; found by mutation fuzzing of float WAVs).
MAX_SAMPLE_MAGNITUDE: Final[float] = 1e6


def _hz_to_mel(freq: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney mel scale (Slaney 1998, Auditory Toolbox; librosa ``htk=False``): linear < 1 kHz, log above."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = freq / f_sp
    above = freq >= min_log_hz
    mels[above] = min_log_mel + np.log(freq[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Inverse of :func:`_hz_to_mel`."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    freqs = f_sp * mels
    above = mels >= min_log_mel
    freqs[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return freqs


@lru_cache(maxsize=4)
def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> npt.NDArray[np.float32]:
    """Triangular mel filterbank with Slaney area normalisation.

    Same construction as ``librosa.filters.mel(htk=False, norm="slaney")``: ``n_mels + 2`` points evenly
    spaced on the Slaney mel scale between ``f_min`` and ``f_max`` (Hz), triangles between neighbours,
    each scaled by ``2 / (f_{i+2} - f_i)`` so that every filter has unit area.

    Returns:
        float32 array [n_mels, n_fft // 2 + 1]; read-only (cached).
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    mel_points = np.linspace(_hz_to_mel(np.array([f_min]))[0], _hz_to_mel(np.array([f_max]))[0], n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    fdiff = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_points[2 : n_mels + 2] - hz_points[:n_mels]))[:, None]
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=1)
def _hann_window() -> npt.NDArray[np.float32]:
    # Periodic Hann window (scipy.signal.get_window("hann", N, fftbins=True)), as librosa uses.
    n = np.arange(WIN_LENGTH)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_LENGTH)).astype(np.float32)
    window.setflags(write=False)
    return window


def log_mel(waveform: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Log-mel spectrogram of 16 kHz mono audio.

    Front end: frames of ``WIN_LENGTH`` = 400 samples (25 ms) every ``HOP_LENGTH`` = 160 samples (10 ms),
    no centring (the first frame starts at sample 0; input shorter than one window is zero-padded to one
    window), periodic Hann window, ``N_FFT`` = 400 point real FFT, power spectrum ``|X|²``, ``N_MELS`` = 64
    Slaney-normalised mel filters between ``F_MIN`` = 50 Hz and ``F_MAX`` = 8 kHz (:func:`mel_filterbank`),
    then ``ln(mel_power + LOG_OFFSET)`` with ``LOG_OFFSET`` = 1e-6. Equal, up to float32 rounding, to
    ``np.log(librosa.feature.melspectrogram(y=x, sr=16000, n_fft=400, hop_length=160, center=False,
    n_mels=64, fmin=50, fmax=8000) + 1e-6).T``.

    Args:
        waveform: float array [N], samples at ``SAMPLE_RATE`` = 16 kHz, nominally in [-1, 1].

    Returns:
        float32 array [T, M] with T = :func:`num_frames` (N) and M = ``N_MELS``.

    Raises:
        ValueError: if ``waveform`` is not one-dimensional or holds NaN/Inf.
    """
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"waveform must be 1-D [N], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or Inf")
    if x.shape[0] < N_FFT:
        x = np.pad(x, (0, N_FFT - x.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * _hann_window(), n=N_FFT, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = power @ mel_filterbank().T
    out: npt.NDArray[np.float32] = np.log(mel + LOG_OFFSET).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------------------
# Decoding of uploaded bytes (serving)
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """An uploaded clip decoded to 16 kHz mono.

    Attributes:
        waveform: float32 [N] at ``SAMPLE_RATE`` = 16 kHz, mono (mean of the channels).
        duration_s: duration in seconds (N / 16000).
        source_sample_rate: sample rate of the file, Hz.
        source_channels: channel count of the file.
        format: container detected from the bytes, upper case whichever decoder read it (``WAV``, ``FLAC``,
            ``OGG``, ``MP3``, ``MP4`` (also M4A and 3GP), ``WEBM`` (also Matroska), ``AMR``, ``AAC`` (ADTS),
            ``CAF``, ...: :func:`container_name`).
    """

    waveform: npt.NDArray[np.float32]
    duration_s: float
    source_sample_rate: int
    source_channels: int
    format: str


def _too_long(seconds: float, max_seconds: float) -> InputTooLargeError:
    return InputTooLargeError(f"audio is {seconds:.2f} s long, more than the limit of {max_seconds:g} s")


#: FFmpeg decoders preferred over FFmpeg's default one for a codec, because they decode frame types the
#: default lacks. FFmpeg's own AMR decoders refuse DTX comfort-noise (SID) frames ("dtx mode" / "SID mode"
#: not implemented, libavcodec/amrnbdec.c, amrwbdec.c), so a voice note with a pause decoded only up to the
#: pause; the OpenCORE decoders (3GPP TS 26.073 / 26.173 reference code, in PyAV's FFmpeg build) generate
#: the comfort noise. Used only when the FFmpeg build has them.
PREFERRED_DECODERS: Final[dict[str, str]] = {"amrnb": "libopencore_amrnb", "amrwb": "libopencore_amrwb"}

#: FFmpeg demuxers whose duration is stored in the file (MP4/3GP ``mdhd``/``stts``, Matroska ``Duration``,
#: CAF ``pakt``, WAV/AIFF/FLAC sample counts; MP3 only with a Xing/Info/VBRI header, see
#: :func:`_mp3_declares_frames`), so a decoded stream shorter than it was cut or damaged. Other demuxers
#: (raw AMR, ADTS AAC, MP3 without a Xing header) estimate a duration from the bit rate, which says nothing
#: about completeness; Ogg states none (FFmpeg reads the last page's granule position).
_MP4_FAMILY: Final[str] = "mov,mp4,m4a,3gp,3g2,mj2"
#: FFmpeg demuxer names (``AVInputFormat.name``) of the containers PyAV reads here → the upper-case names
#: libsndfile reports for the ones it reads (``WAV``, ``FLAC``, ``OGG``, ``MP3``), so ``format`` has one
#: vocabulary whichever decoder read the file.
CONTAINER_NAMES: Final[dict[str, str]] = {
    _MP4_FAMILY: "MP4",
    "matroska,webm": "WEBM",
    "amr": "AMR",
    "aac": "AAC",
    "caf": "CAF",
    "mp3": "MP3",
    "ogg": "OGG",
    "wav": "WAV",
    "flac": "FLAC",
    "aiff": "AIFF",
}


def container_name(ffmpeg_name: str) -> str:
    """The response's ``format`` for an FFmpeg demuxer name: :data:`CONTAINER_NAMES`, else the name's first
    alias in upper case (e.g. ``"w64"`` → ``"W64"``)."""
    return CONTAINER_NAMES.get(ffmpeg_name, ffmpeg_name.split(",")[0].upper())


DECLARED_DURATION_FORMATS: Final[frozenset[str]] = frozenset(
    {_MP4_FAMILY, "matroska,webm", "caf", "wav", "aiff", "flac", "w64"}
)
#: Decoded audio may fall short of the declared duration by this much (s) plus ``DURATION_SHORTFALL_RATIO``
#: of it: encoder priming/padding and Matroska's block-duration rounding (measured ≤ 15 ms on PyAV-made
#: M4A/WebM/CAF/3GP files: Opus pre-skip is 6.5 ms).
DURATION_SHORTFALL_S: Final[float] = 0.04
#: See ``DURATION_SHORTFALL_S``.
DURATION_SHORTFALL_RATIO: Final[float] = 0.02
#: Largest share of a clip's duration whose packets may fail to decode and be replaced by silence of the
#: length they declare (as media players conceal a damaged packet). More than that and the prediction would
#: rest on what is left of a damaged recording: 422 instead.
MAX_CONCEALED_FRACTION: Final[float] = 0.1


def _truncation_error(data: bytes) -> UndecodableInputError | None:
    """A 422 if the sample chunk of a WAV/AIFF/CAF upload announces more bytes than were sent, else None.

    Only the sample chunk's size counts (see :mod:`app.preprocessing.container_sizes`): the outer RIFF/FORM
    size is a hint that writers often get wrong, and libsndfile and FFmpeg ignore it too.
    """
    payload = find_payload(data)
    if payload is None:
        return None
    missing = payload_shortfall(payload)
    if missing == 0:
        return None
    return UndecodableInputError(
        f"{payload.container} data is truncated: its data chunk announces {payload.declared} bytes, "
        f"{payload.available} were sent"
    )


def _wav_payload_follows(data: bytes) -> bool:
    """True if a WAV's data chunk states size 0 ("unknown") but bytes follow its header."""
    payload = find_payload(data)
    return payload is not None and payload.declared is None and payload.available > 0


#: Ogg/Opus streams whose original sample rate (OpusHead "input sample rate", RFC 7845 §5.1) is above this
#: go to PyAV: libsndfile decodes Opus at that original rate, FFmpeg always at 48 kHz, and for 48 kHz voice
#: notes FFmpeg is the faster (6–14 s stereo: 30–37 ms vs 70–94 ms CPU), for 16 kHz ones libsndfile
#: (CREMA-D clips: 3 ms vs 4.5 ms); both give the same number of samples at 48 kHz.
OPUS_LIBSNDFILE_MAX_RATE: Final[int] = 16000


def _ogg_opus_input_rate(data: bytes) -> int | None:
    """The OpusHead input sample rate (Hz, 0 = unspecified) of an Ogg/Opus file; None for anything else.
    The head is the first packet of the first Ogg page (RFC 7845 §3): 27-byte page header, segment table,
    then "OpusHead", version, channels, pre-skip (2 bytes), input sample rate (4 bytes, little-endian)."""
    if len(data) < 28 or not data.startswith(b"OggS"):
        return None
    start = 27 + data[26]
    head = data[start : start + 16]
    if len(head) < 16 or not head.startswith(b"OpusHead"):
        return None
    return int.from_bytes(head[12:16], "little")


def _decode_soundfile(data: bytes, max_seconds: float) -> tuple[npt.NDArray[np.float32], int, str] | None:
    """libsndfile (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, AIFF, CAF, ...); None if FFmpeg should decode instead."""
    opus_rate = _ogg_opus_input_rate(data)
    if opus_rate is not None and (opus_rate == 0 or opus_rate > OPUS_LIBSNDFILE_MAX_RATE):
        return None
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - libsndfile raises several types for "not mine"; PyAV tries next
        return None
    if str(f.format) == "MP3" or (str(f.format) == "WAV" and f.frames == 0 and _wav_payload_follows(data)):
        # libsndfile (mpg123) stops at its frame-count estimate: for a VBR MP3 without a Xing/Info header it
        # returns only the first seconds (a 60 s file read as 8.6 s), so the length limit and the prediction
        # would silently see part of the clip. A WAV whose data size is 0 (a streaming writer) reads as 0
        # frames in libsndfile, to the end of the file in FFmpeg (wavdec.c). FFmpeg decodes the whole stream.
        f.close()
        return None
    with f:
        frames, rate = int(f.frames), int(f.samplerate)
        if rate <= 0:
            raise UndecodableInputError("audio header has an invalid sample rate")
        # Duration from the header, before decoding any sample.
        if frames > 0 and frames / rate > max_seconds:
            raise _too_long(frames / rate, max_seconds)
        try:
            samples = f.read(dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001
            raise UndecodableInputError("audio data is truncated or corrupt") from exc
        return np.ascontiguousarray(samples.T), rate, str(f.format)


def _open_decoder(stream: av.AudioStream) -> av.AudioCodecContext:
    """The stream's decoder: a :data:`PREFERRED_DECODERS` one when FFmpeg has it, else FFmpeg's default."""
    default = stream.codec_context
    name = PREFERRED_DECODERS.get(default.name)
    if name is None or name not in av.codecs_available:
        return default
    decoder = av.CodecContext.create(name, "r")
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate = default.sample_rate
    decoder.layout = default.layout
    if default.extradata:
        decoder.extradata = default.extradata
    return decoder


@dataclass(slots=True)
class _PacketDecode:
    """What :func:`_decode_packets` produced: sample chunks [C, n] and the packets replaced by silence."""

    chunks: list[npt.NDArray[np.float32]]
    channels: int
    samples: int = 0
    concealed_samples: int = 0
    bad_packets: int = 0
    packets: int = 0
    first_error: str = ""
    first_error_s: float = 0.0

    def add(self, arr: npt.NDArray[np.float32]) -> None:
        """Append a chunk [C, n]; a chunk with another channel count is averaged to the first one's."""
        if self.chunks and arr.shape[0] != self.chunks[0].shape[0]:
            arr = np.broadcast_to(arr.mean(axis=0, keepdims=True), (self.chunks[0].shape[0], arr.shape[1]))
        self.chunks.append(arr)
        self.samples += arr.shape[1]


def _packet_samples(packet: av.Packet[av.AudioStream], rate: int, fallback: int) -> int:
    """Samples a packet declares (its duration in the stream time base), or ``fallback`` if it states none;
    at most one second (``rate``): audio packets last 20-100 ms, a larger value is itself damage."""
    if packet.duration and packet.time_base:
        return min(rate, max(0, round(float(packet.duration * packet.time_base) * rate)))
    return min(rate, fallback)


def _conceal(
    out: _PacketDecode, packet: av.Packet[av.AudioStream], exc: Exception, rate: int, fallback: int
) -> None:
    """Replace a packet the decoder refused by silence of the duration it declares (``fallback`` samples if
    it declares none), and remember the first error for the message."""
    silence = _packet_samples(packet, rate, fallback)
    if out.bad_packets == 0:
        out.first_error, out.first_error_s = str(exc).split(":")[0], out.samples / rate
    out.bad_packets += 1
    out.concealed_samples += silence
    out.add(np.zeros((out.channels, silence), np.float32))


def _decode_packets(
    container: av.container.InputContainer, stream: av.AudioStream, rate: int, max_seconds: float
) -> _PacketDecode:
    """Decode packet by packet; a packet the decoder refuses becomes silence (:func:`_conceal`).

    Raises:
        InputTooLargeError: as soon as more than ``max_seconds`` (+ 0.5 s) are decoded.
        av.FFmpegError: the demuxer failed (not a packet the decoder refused).
    """
    decoder = _open_decoder(stream)
    resampler = av.AudioResampler(format="fltp", layout=None, rate=rate)
    out = _PacketDecode(chunks=[], channels=max(1, stream.codec_context.layout.nb_channels))
    max_samples = int(max_seconds * rate) + rate // 2
    last_samples = 0
    packets = (p for p in container.demux(stream) if p.size > 0)
    for packet in itertools.chain(packets, [None]):  # None: flush the decoder
        if packet is not None:
            out.packets += 1
        try:
            frames = decoder.decode(packet)
        except Exception as exc:  # noqa: BLE001 - a corrupt or unsupported packet: conceal, judged later
            if packet is not None:
                _conceal(out, packet, exc, rate, last_samples)
            continue
        for frame in frames:
            for resampled in resampler.resample(frame):
                arr = np.asarray(resampled.to_ndarray(), dtype=np.float32)
                last_samples = arr.shape[1]
                out.add(arr)
        if out.samples > max_samples:
            # No (or a false) duration in the container: stop decoding as soon as the limit is passed.
            raise _too_long(out.samples / rate, max_seconds)
    return out


def _mp3_declares_frames(data: bytes) -> bool:
    """True if an MP3's first frame carries a Xing/Info (LAME) or VBRI header, which states the frame count.

    FFmpeg's mp3 demuxer takes the duration from it (``mp3dec.c``); without it the duration is estimated
    from the bit rate. The first frame follows an ID3v2 tag when there is one (ID3v2.4 §3.1: 10-byte header,
    syncsafe size, +10 with a footer).
    """
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
        start += 10 if data[5] & 0x10 else 0
    first_frame = data[start : start + 2048]
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


def _declared_seconds(container: av.container.InputContainer, data: bytes) -> float | None:
    """Duration the file states (s), or None when FFmpeg only estimates it (see DECLARED_DURATION_FORMATS)."""
    fmt = str(container.format.name)
    if fmt not in DECLARED_DURATION_FORMATS and not (fmt == "mp3" and _mp3_declares_frames(data)):
        return None
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _check_complete(
    decoded: _PacketDecode, container: av.container.InputContainer, rate: int, data: bytes
) -> None:
    """Refuse (422) a stream with too many undecodable packets or shorter than its container declares."""
    seconds = decoded.samples / rate
    if decoded.bad_packets and decoded.concealed_samples > MAX_CONCEALED_FRACTION * decoded.samples:
        raise UndecodableInputError(
            f"audio is damaged: {decoded.bad_packets} of {decoded.packets} packets could not be decoded "
            f"({decoded.concealed_samples / rate:.2f} of {seconds:.2f} s; the first at "
            f"{decoded.first_error_s:.2f} s: {decoded.first_error})"
        )
    stream = container.streams.audio[0]
    listed = int(stream.frames or 0)
    if str(container.format.name) == _MP4_FAMILY and not stream.codec_context.name.startswith("pcm_"):
        # MP4/3GP list every packet (``stsz``); a damaged table or a cut ``mdat`` leaves some unread.
        # (PCM in MP4 lists single samples, which FFmpeg reads in chunks.)
        if decoded.packets < listed:
            raise UndecodableInputError(
                f"audio is truncated or corrupt: the file lists {listed} packets, {decoded.packets} were read"
            )
    declared = _declared_seconds(container, data)
    if declared is None:
        return
    if seconds < declared - DURATION_SHORTFALL_S - DURATION_SHORTFALL_RATIO * declared:
        raise UndecodableInputError(
            f"audio is truncated or corrupt: the stream ends at {seconds:.2f} s, "
            f"the file declares {declared:.2f} s"
        )


#: ISO base media brands (``ftyp`` major brand) of still images, which are not truncated audio: HEIF/HEIC,
#: AVIF, and the MIAF/image-sequence brands (ISO/IEC 23008-12, 23000-22).
_IMAGE_BRANDS: Final[frozenset[bytes]] = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)


def _iso_media_without_index(data: bytes) -> bool:
    """An ISO base media file (MP4, M4A, 3GP, MOV: ``ftyp`` box first, ISO/IEC 14496-12) of a non-image
    brand without a ``moov`` box: its index is missing, which is what cutting short a file written with
    the index at its end does (FFmpeg then cannot open it at all)."""
    return data[4:8] == b"ftyp" and data[8:12] not in _IMAGE_BRANDS and b"moov" not in data


def _decode_pyav(data: bytes, max_seconds: float) -> tuple[npt.NDArray[np.float32], int, str]:
    """FFmpeg through PyAV for what libsndfile lacks (M4A/AAC, WebM/Opus, AMR, 3GP, CAF/AAC, ...)."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:  # noqa: BLE001 - FFmpeg's "invalid data" and friends
        if _iso_media_without_index(data):
            raise UndecodableInputError(
                "MP4/M4A file is truncated or corrupt: its index (the 'moov' box) is missing; files written "
                "with the index at the end lose it when cut short"
            ) from exc
        raise UnsupportedMediaError(
            "audio is not in a supported format (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, MP3, M4A/AAC, WebM, AMR)"
        ) from exc
    with container:
        if not container.streams.audio:
            raise UnsupportedMediaError("the uploaded file has no audio stream")
        stream = container.streams.audio[0]
        if container.duration is not None and container.duration / 1_000_000 > max_seconds + 0.5:
            raise _too_long(container.duration / 1_000_000, max_seconds)
        if stream.codec_context is None:
            # A container FFmpeg reads, with a codec it has no decoder for (e.g. an unknown WAV format tag).
            raise UnsupportedMediaError("the audio codec of this file is not supported")
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        if rate <= 0:
            raise UndecodableInputError("audio stream has no sample rate")
        try:
            decoded = _decode_packets(container, stream, rate, max_seconds)
        except PreprocessingError:
            raise
        except Exception as exc:  # noqa: BLE001 - a demuxer error mid-stream: the rest is unreadable
            raise UndecodableInputError(f"audio data is corrupt ({str(exc).split(':')[0]})") from exc
        if decoded.samples == decoded.concealed_samples:
            raise UndecodableInputError(
                "audio has no samples"
                if not decoded.bad_packets
                else f"audio data could not be decoded ({decoded.first_error})"
            )
        _check_complete(decoded, container, rate, data)
        fmt = container_name(str(container.format.name))
    return np.concatenate(decoded.chunks, axis=1), rate, fmt


def decode_audio(data: bytes, *, max_seconds: float) -> DecodedAudio:
    """Decode uploaded audio bytes to 16 kHz mono float32.

    Decoders: ``soundfile`` (libsndfile) first, PyAV (FFmpeg) for the rest and for Ogg/Opus recorded above
    16 kHz (:data:`OPUS_LIBSNDFILE_MAX_RATE`); the format comes from the bytes. Channels are averaged to
    mono; the sample rate is converted to 16 kHz with soxr (``HQ`` quality, libsoxr's default). The
    duration limit is checked from the header before decoding when the format states a duration (WAV,
    FLAC, Ogg, most MP4/WebM), else while decoding.

    Args:
        data: the uploaded bytes.
        max_seconds: longest accepted duration in seconds.

    Returns:
        :class:`DecodedAudio`.

    Raises:
        UndecodableInputError: empty, corrupt, zero samples, NaN or Inf samples, samples beyond
            ``MAX_SAMPLE_MAGNITUDE`` (422).
        UnsupportedMediaError: not an audio format either decoder reads (415).
        InputTooLargeError: longer than ``max_seconds`` (413).
    """
    if not data:
        raise UndecodableInputError("audio is empty (0 bytes)")
    truncated = _truncation_error(data)
    if truncated is not None:
        raise truncated
    try:
        decoded = _decode_soundfile(data, max_seconds)
        if decoded is None:
            decoded = _decode_pyav(data, max_seconds)
    except PreprocessingError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any other decoder failure is not a 500
        raise UndecodableInputError("audio data could not be decoded") from exc
    samples, rate, fmt = decoded
    if samples.ndim != 2 or samples.shape[1] == 0:
        raise UndecodableInputError("audio has no samples")
    channels = int(samples.shape[0])
    if samples.shape[1] / rate > max_seconds:
        raise _too_long(samples.shape[1] / rate, max_seconds)
    if not np.isfinite(samples).all():
        raise UndecodableInputError("audio contains NaN or Inf samples")
    peak = float(np.abs(samples).max())
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise UndecodableInputError(
            f"audio sample values reach {peak:.3g}, far outside [-1, 1] (limit {MAX_SAMPLE_MAGNITUDE:g})"
        )
    mono = samples.mean(axis=0, dtype=np.float32) if channels > 1 else samples[0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE).astype(np.float32, copy=False)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if mono.shape[0] == 0:
        raise UndecodableInputError("audio has no samples after resampling")
    return DecodedAudio(
        waveform=mono,
        duration_s=float(mono.shape[0]) / SAMPLE_RATE,
        source_sample_rate=rate,
        source_channels=channels,
        format=fmt,
    )
