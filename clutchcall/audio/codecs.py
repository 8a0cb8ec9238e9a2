"""Frame codecs for the four :class:`~clutchcall.AudioCodec` values.

A codec turns one frame of 16-bit PCM into one encoded frame and back. PCM is
always ``int16``; decoded frames come back as arrays of shape
``(samples_per_frame, channels)`` (C order, so ``.tobytes()`` is interleaved
little-endian PCM on the usual little-endian hosts). :meth:`AudioCodecImpl.encode`
accepts the same shape, a flat interleaved ``int16`` array, or raw bytes.

Supported formats (anything else raises :class:`UnsupportedFormatError`):

============  ==========================================  ========  ================
codec         sample rates (Hz)                           channels  frame_ms
============  ==========================================  ========  ================
opus          48000                                       1, 2      10, 20, 40, 60
pcm16         8000, 12000, 16000, 24000, 32000, 44100,    1, 2      10, 20, 30, 40, 60
              48000
g711_ulaw     8000                                        1         10, 20, 30, 40, 60
g711_alaw     8000                                        1         10, 20, 30, 40, 60
============  ==========================================  ========  ================

Opus runs at 48 kHz only: libopus can encode at 8-24 kHz too, but FFmpeg's
libopus decoder always outputs 48 kHz, so other rates would need a resampler
inside the codec. G.711 is narrowband telephony audio: 8 kHz mono, as in
RTP's PCMU/PCMA.

Opus delay: the encoder looks ahead, so the decoded stream lags the encoded
input by :attr:`OpusCodec.delay_samples` (312 samples = 6.5 ms at 48 kHz, 120 =
2.5 ms with ``application="lowdelay"``). The decoder does not trim it: each
packet decodes to exactly one frame, as a real-time receiver needs, and the
first frame out starts with that much near-silence. The stream's last
``delay_samples`` stay in the encoder, since a live stream has no end to flush.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from fractions import Fraction
from typing import Any, Literal, TypeAlias, cast

import av
import av.error
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from clutchcall_api.models import AudioCodec
from numpy.typing import NDArray

from . import g711
from .errors import DecodeError, FrameSizeError, UnsupportedFormatError

__all__ = [
    "AudioCodecImpl",
    "G711Codec",
    "OpusApplication",
    "OpusCodec",
    "Pcm",
    "Pcm16Codec",
    "PcmLike",
    "as_pcm",
    "make_codec",
]

Pcm: TypeAlias = NDArray[np.int16]
"""16-bit PCM samples, shape ``(samples, channels)``."""

PcmLike: TypeAlias = bytes | bytearray | memoryview | NDArray[np.int16]
"""PCM as accepted on input: an ``int16`` array (``(samples, channels)`` or flat
interleaved) or interleaved little-endian bytes."""

OpusApplication: TypeAlias = Literal["audio", "voip", "lowdelay"]

# libopus' speed/quality knob (0..10). 5 encodes about three times faster than 10 for
# a small loss in quality: what a server running many calls per core wants.
DEFAULT_OPUS_COMPLEXITY = 5
OPUS_SAMPLE_RATE = 48000
OPUS_FRAME_MS = (10, 20, 40, 60)
PCM16_SAMPLE_RATES = (8000, 12000, 16000, 24000, 32000, 44100, 48000)
G711_SAMPLE_RATE = 8000
PCM_FRAME_MS = (10, 20, 30, 40, 60)


def as_pcm(data: PcmLike, channels: int) -> Pcm:
    """``data`` as a C-contiguous ``int16`` array of shape ``(samples, channels)``.

    Raises :class:`FrameSizeError` for a dtype other than int16, a second axis that
    is not ``channels`` wide, or bytes that do not hold whole multi-channel samples.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = memoryview(data).cast("B")
        if len(raw) % (2 * channels):
            raise FrameSizeError(
                f"{len(raw)} bytes is not a whole number of {channels}-channel 16-bit samples"
            )
        flat = np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)
        return flat.reshape(-1, channels)
    if not isinstance(data, np.ndarray):
        raise FrameSizeError(f"PCM must be bytes or an int16 array, not {type(data).__name__}")
    if data.dtype != np.int16:
        raise FrameSizeError(f"PCM arrays must have dtype int16, not {data.dtype}")
    if data.ndim == 1:
        if data.size % channels:
            raise FrameSizeError(
                f"{data.size} interleaved samples is not a multiple of {channels} channels"
            )
        return np.ascontiguousarray(data.reshape(-1, channels))
    if data.ndim == 2 and data.shape[1] == channels:
        return np.ascontiguousarray(data)
    raise FrameSizeError(
        f"PCM array of shape {data.shape} does not fit {channels} channel(s); "
        "expected (samples, channels) or a flat interleaved array"
    )


def _coerce_codec(codec: AudioCodec | str) -> AudioCodec:
    try:
        return AudioCodec(codec)
    except ValueError:
        names = ", ".join(c.value for c in AudioCodec)
        raise UnsupportedFormatError(f"unknown codec {codec!r}; expected one of {names}") from None


class AudioCodecImpl(ABC):
    """One codec configured for one format: encodes and decodes whole frames.

    Instances keep state between frames (Opus does), so use one instance per
    direction of one stream.
    """

    def __init__(
        self, codec: AudioCodec, *, sample_rate: int, channels: int, frame_ms: int
    ) -> None:
        self.codec = codec
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_ms = frame_ms
        self.samples_per_frame = sample_rate * frame_ms // 1000
        """Samples per channel in one frame."""
        self.frame_us = frame_ms * 1000
        """Duration of one frame in microseconds."""
        self.pcm_frame_bytes = self.samples_per_frame * channels * 2
        """Size of one frame of 16-bit PCM."""

    @property
    @abstractmethod
    def frame_bytes(self) -> int | None:
        """Size of one encoded frame, or None when it varies (Opus)."""

    @property
    def delay_samples(self) -> int:
        """How many samples (per channel) the decoded stream lags the encoded input."""
        return 0

    def encode(self, pcm: PcmLike) -> bytes:
        """Encode exactly one frame of PCM."""
        frame = as_pcm(pcm, self.channels)
        if frame.shape[0] != self.samples_per_frame:
            raise FrameSizeError(
                f"{self.codec.value} expects {self.samples_per_frame} samples per channel "
                f"({self.frame_ms} ms at {self.sample_rate} Hz), got {frame.shape[0]}"
            )
        return self._encode(frame)

    def decode(self, frame: bytes | bytearray | memoryview) -> Pcm:
        """Decode exactly one encoded frame into ``(samples_per_frame, channels)`` int16."""
        data = bytes(frame)
        expected = self.frame_bytes
        if expected is not None and len(data) != expected:
            raise FrameSizeError(
                f"{self.codec.value} frame of {self.frame_ms} ms must be {expected} bytes, "
                f"got {len(data)}"
            )
        if not data:
            raise FrameSizeError(f"empty {self.codec.value} frame")
        return self._decode(data)

    def silence(self) -> Pcm:
        """One frame of digital silence."""
        return np.zeros((self.samples_per_frame, self.channels), dtype=np.int16)

    def reset(self) -> None:  # noqa: B027 - stateless codecs have nothing to forget
        """Forget all inter-frame state (start of a new stream)."""

    def close(self) -> None:  # noqa: B027 - stateless codecs hold no resources
        """Release codec resources; the codec may not be used afterwards."""

    @abstractmethod
    def _encode(self, pcm: Pcm) -> bytes: ...

    @abstractmethod
    def _decode(self, data: bytes) -> Pcm: ...

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sample_rate={self.sample_rate}, channels={self.channels}, "
            f"frame_ms={self.frame_ms})"
        )


class Pcm16Codec(AudioCodecImpl):
    """Uncompressed little-endian 16-bit PCM, interleaved: exact in both directions."""

    def __init__(self, *, sample_rate: int, channels: int, frame_ms: int) -> None:
        super().__init__(
            AudioCodec.PCM16, sample_rate=sample_rate, channels=channels, frame_ms=frame_ms
        )

    @property
    def frame_bytes(self) -> int:
        return self.pcm_frame_bytes

    def _encode(self, pcm: Pcm) -> bytes:
        return pcm.astype("<i2", copy=False).tobytes()

    def _decode(self, data: bytes) -> Pcm:
        return as_pcm(data, self.channels).copy()


class G711Codec(AudioCodecImpl):
    """G.711 mu-law or A-law: one byte per sample, 8 kHz mono."""

    def __init__(self, law: AudioCodec, *, sample_rate: int, channels: int, frame_ms: int) -> None:
        super().__init__(law, sample_rate=sample_rate, channels=channels, frame_ms=frame_ms)
        if law is AudioCodec.G711_ULAW:
            self._encode_table, self._decode_table = g711.ULAW_ENCODE_TABLE, g711.ULAW_DECODE_TABLE
        elif law is AudioCodec.G711_ALAW:
            self._encode_table, self._decode_table = g711.ALAW_ENCODE_TABLE, g711.ALAW_DECODE_TABLE
        else:
            raise UnsupportedFormatError(f"{law.value} is not a G.711 law")

    @property
    def frame_bytes(self) -> int:
        return self.samples_per_frame * self.channels

    def _encode(self, pcm: Pcm) -> bytes:
        return bytes(self._encode_table[pcm.view(np.uint16)].tobytes())

    def _decode(self, data: bytes) -> Pcm:
        codes = np.frombuffer(data, dtype=np.uint8)
        return self._decode_table[codes].reshape(-1, self.channels)


def _frame_to_pcm(frame: AudioFrame, channels: int) -> Pcm:
    """An av audio frame (s16/s16p/flt/fltp) as ``(samples, channels)`` int16."""
    array = cast("NDArray[Any]", frame.to_ndarray())
    fmt = frame.format
    if fmt.is_planar:
        array = array.T
    array = array.reshape(-1, channels)
    if fmt.name in ("s16", "s16p"):
        return np.ascontiguousarray(array, dtype=np.int16)
    if fmt.name in ("flt", "fltp", "dbl", "dblp"):
        scaled = np.clip(np.rint(array * 32768.0), -32768, 32767)
        return np.ascontiguousarray(scaled, dtype=np.int16)
    raise DecodeError(f"unexpected sample format {fmt.name!r} from the decoder")


class OpusCodec(AudioCodecImpl):
    """Opus through libopus (PyAV): one packet per frame, 48 kHz.

    The encoder and the decoder are each created on first use and kept for the
    life of the codec, so inter-frame prediction works as in any Opus stream.
    ``bitrate`` is in bits per second for all channels together (default 32 kbit/s
    per channel); ``application`` is libopus's tuning ("audio" keeps the waveform,
    "voip" favours speech intelligibility, "lowdelay" cuts the lookahead to 2.5 ms).
    """

    def __init__(
        self,
        *,
        sample_rate: int = OPUS_SAMPLE_RATE,
        channels: int = 1,
        frame_ms: int = 20,
        bitrate: int | None = None,
        application: OpusApplication = "audio",
        complexity: int | None = DEFAULT_OPUS_COMPLEXITY,
    ) -> None:
        super().__init__(
            AudioCodec.OPUS, sample_rate=sample_rate, channels=channels, frame_ms=frame_ms
        )
        if bitrate is None:
            bitrate = 32000 * channels
        if not 6000 <= bitrate <= 510000:
            raise UnsupportedFormatError(f"Opus bitrate must be 6000..510000 bit/s, got {bitrate}")
        if application not in ("audio", "voip", "lowdelay"):
            raise UnsupportedFormatError(f"unknown Opus application {application!r}")
        if complexity is not None and not 0 <= complexity <= 10:
            raise UnsupportedFormatError(f"Opus complexity must be 0..10, got {complexity}")
        self.bitrate = bitrate
        self.application: OpusApplication = application
        self.complexity = complexity
        self._layout = "mono" if channels == 1 else "stereo"
        self._time_base = Fraction(1, sample_rate)
        self._encoder: AudioCodecContext | None = None
        self._decoder: AudioCodecContext | None = None
        self._next_pts = 0
        # libopus's lookahead: 2.5 ms, plus 4 ms of delay compensation unless "lowdelay".
        lookahead_ms = Fraction(5, 2) if application == "lowdelay" else Fraction(13, 2)
        self._delay = int(lookahead_ms * sample_rate / 1000)

    @property
    def frame_bytes(self) -> None:
        return None

    @property
    def delay_samples(self) -> int:
        """Encoder lookahead in samples per channel (confirmed by the first packet's pts)."""
        return self._delay

    def _open_encoder(self) -> AudioCodecContext:
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = self.sample_rate
        ctx.layout = self._layout
        ctx.format = "s16"
        ctx.bit_rate = self.bitrate
        ctx.time_base = self._time_base
        options = {"frame_duration": str(self.frame_ms), "application": self.application}
        if self.complexity is not None:
            options["compression_level"] = str(self.complexity)
        ctx.options = options
        ctx.open()
        if ctx.frame_size != self.samples_per_frame:  # pragma: no cover - libopus contract
            raise UnsupportedFormatError(
                f"libopus chose {ctx.frame_size} samples per frame, expected "
                f"{self.samples_per_frame}"
            )
        return ctx

    def _open_decoder(self) -> AudioCodecContext:
        ctx = av.CodecContext.create("libopus", "r")
        ctx.sample_rate = self.sample_rate
        ctx.layout = self._layout
        ctx.open()
        return ctx

    def _encode(self, pcm: Pcm) -> bytes:
        if self._encoder is None:
            self._encoder = self._open_encoder()
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=self._layout)
        frame.sample_rate = self.sample_rate
        # Monotonic pts in samples: the encoder (and PyAV's frame-size adapter in
        # front of it) needs them to line packets up; they never leave this object.
        frame.pts = self._next_pts
        frame.time_base = self._time_base
        self._next_pts += self.samples_per_frame
        packets = self._encoder.encode(frame)
        if len(packets) != 1:  # pragma: no cover - libopus emits one packet per frame
            raise DecodeError(f"libopus returned {len(packets)} packets for one frame")
        packet = packets[0]
        if packet.pts is not None and packet.pts < 0:
            # The first packet is stamped -lookahead (FFmpeg's initial padding).
            self._delay = -packet.pts
        return bytes(packet)

    def _decode(self, data: bytes) -> Pcm:
        if self._decoder is None:
            self._decoder = self._open_decoder()
        try:
            frames = self._decoder.decode(av.Packet(data))
        except av.error.FFmpegError as exc:
            raise DecodeError(f"invalid Opus packet ({len(data)} bytes): {exc}") from exc
        parts = [_frame_to_pcm(f, self.channels) for f in frames]
        pcm = np.concatenate(parts) if len(parts) != 1 else parts[0]
        if pcm.shape[0] != self.samples_per_frame:
            raise DecodeError(
                f"Opus packet decoded to {pcm.shape[0]} samples, expected "
                f"{self.samples_per_frame} ({self.frame_ms} ms)"
            )
        return pcm

    def reset(self) -> None:
        self.close()
        self._next_pts = 0

    def close(self) -> None:
        self._encoder = None
        self._decoder = None


def make_codec(
    codec: AudioCodec | str = AudioCodec.OPUS,
    *,
    sample_rate: int = 48000,
    channels: int = 1,
    frame_ms: int = 20,
    bitrate: int | None = None,
    application: OpusApplication = "audio",
    complexity: int | None = None,
) -> AudioCodecImpl:
    """The codec for an audio bridge's ``codec`` / ``sample_rate`` / ``channels`` / ``frame_ms``.

    ``bitrate``, ``application`` and ``complexity`` (0..10, libopus' speed/quality
    trade-off) apply to Opus only. Raises
    :class:`UnsupportedFormatError` for a combination the table in this module's
    docstring does not list.
    """
    kind = _coerce_codec(codec)
    if kind is not AudioCodec.OPUS and bitrate is not None:
        raise UnsupportedFormatError(f"{kind.value} has a fixed bitrate; bitrate applies to opus")
    if kind is not AudioCodec.OPUS and complexity is not None:
        raise UnsupportedFormatError(f"complexity applies to opus, not {kind.value}")
    for name, value in (
        ("sample_rate", sample_rate),
        ("channels", channels),
        ("frame_ms", frame_ms),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnsupportedFormatError(f"{name} must be an int, got {value!r}")
    if kind is AudioCodec.OPUS:
        _require(kind, "sample rate", sample_rate, (OPUS_SAMPLE_RATE,), " Hz")
        _require(kind, "channel count", channels, (1, 2), "")
        _require(kind, "frame duration", frame_ms, OPUS_FRAME_MS, " ms")
        return OpusCodec(
            sample_rate=sample_rate,
            channels=channels,
            frame_ms=frame_ms,
            bitrate=bitrate,
            application=application,
            complexity=DEFAULT_OPUS_COMPLEXITY if complexity is None else complexity,
        )
    _require(kind, "frame duration", frame_ms, PCM_FRAME_MS, " ms")
    if kind is AudioCodec.PCM16:
        _require(kind, "sample rate", sample_rate, PCM16_SAMPLE_RATES, " Hz")
        _require(kind, "channel count", channels, (1, 2), "")
        return Pcm16Codec(sample_rate=sample_rate, channels=channels, frame_ms=frame_ms)
    _require(kind, "sample rate", sample_rate, (G711_SAMPLE_RATE,), " Hz")
    _require(kind, "channel count", channels, (1,), "")
    return G711Codec(kind, sample_rate=sample_rate, channels=channels, frame_ms=frame_ms)


def _require(codec: AudioCodec, what: str, value: int, allowed: tuple[int, ...], unit: str) -> None:
    if value not in allowed:
        choices = ", ".join(str(a) for a in allowed)
        raise UnsupportedFormatError(
            f"{codec.value} does not support a {what} of {value}{unit} (supported: {choices})"
        )
