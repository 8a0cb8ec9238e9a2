"""16-bit PCM WAV files: read whole, read in chunks, write whole or as a stream.

Only 16-bit integer PCM is read or written (what the codecs consume); other
sample widths raise :class:`WavFormatError`. Any sample rate and channel count
is accepted here: :class:`~clutchcall.audio.AudioSource` resamples as needed.
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

import numpy as np

from .codecs import Pcm, PcmLike, as_pcm
from .errors import WavFormatError

__all__ = ["Wav", "WavWriter", "iter_wav", "read_wav", "wav_params", "write_wav"]

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class Wav:
    """A WAV file's audio: ``pcm`` is int16 of shape ``(samples, channels)``."""

    pcm: Pcm
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.pcm.shape[1])

    @property
    def samples(self) -> int:
        """Samples per channel."""
        return int(self.pcm.shape[0])

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.samples / self.sample_rate


def _open(path: StrPath) -> wave.Wave_read:
    try:
        reader = wave.open(os.fspath(path), "rb")  # noqa: SIM115 - the caller closes it
    except (wave.Error, EOFError) as exc:
        raise WavFormatError(f"{os.fspath(path)}: not a readable WAV file ({exc})") from exc
    if reader.getsampwidth() != 2:
        width = reader.getsampwidth()
        reader.close()
        raise WavFormatError(
            f"{os.fspath(path)}: {8 * width}-bit samples; only 16-bit PCM is supported"
        )
    return reader


def wav_params(path: StrPath) -> tuple[int, int, int]:
    """``(sample_rate, channels, samples per channel)`` of a 16-bit WAV file."""
    with _open(path) as reader:
        return reader.getframerate(), reader.getnchannels(), reader.getnframes()


def iter_wav(path: StrPath, chunk_samples: int = 4800) -> Iterator[Pcm]:
    """The file's PCM in chunks of ``chunk_samples`` per channel (the last may be shorter)."""
    if chunk_samples <= 0:
        raise ValueError("chunk_samples must be positive")
    with _open(path) as reader:
        channels = reader.getnchannels()
        while True:
            try:
                data = reader.readframes(chunk_samples)
            except (wave.Error, EOFError) as exc:  # pragma: no cover - truncated data chunk
                raise WavFormatError(f"{os.fspath(path)}: {exc}") from exc
            if not data:
                return
            usable = len(data) - len(data) % (2 * channels)
            if usable:
                yield as_pcm(data[:usable], channels).copy()
            if usable < len(data) or len(data) < chunk_samples * 2 * channels:
                return


def read_wav(path: StrPath) -> Wav:
    """The whole file at once."""
    rate, channels, _ = wav_params(path)
    chunks = list(iter_wav(path, chunk_samples=1 << 16))
    pcm = np.concatenate(chunks) if chunks else np.zeros((0, channels), dtype=np.int16)
    return Wav(pcm=pcm, sample_rate=rate)


class WavWriter:
    """Writes PCM to a WAV file as it arrives; also usable as a PCM callback.

    The header is finalised on :meth:`close` (or leaving the ``with`` block).
    """

    def __init__(self, path: StrPath, *, sample_rate: int, channels: int = 1) -> None:
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.samples_written = 0
        # Closed by close() / __exit__: the writer lives as long as this object.
        self._writer: wave.Wave_write | None = wave.open(self.path, "wb")  # noqa: SIM115
        self._writer.setnchannels(channels)
        self._writer.setsampwidth(2)
        self._writer.setframerate(sample_rate)

    def write(self, pcm: PcmLike) -> None:
        """Append PCM (int16 ``(samples, channels)``, flat interleaved, or bytes)."""
        if self._writer is None:
            raise ValueError(f"WAV writer for {self.path} is closed")
        frame = as_pcm(pcm, self.channels)
        self._writer.writeframesraw(frame.astype("<i2", copy=False).tobytes())
        self.samples_written += frame.shape[0]

    __call__ = write

    @property
    def duration(self) -> float:
        """Seconds written so far."""
        return self.samples_written / self.sample_rate

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_wav(path: StrPath, pcm: PcmLike, sample_rate: int, channels: int | None = None) -> None:
    """Write a whole 16-bit WAV file. ``channels`` defaults to the array's second axis (or 1)."""
    if channels is None:
        channels = pcm.shape[1] if isinstance(pcm, np.ndarray) and pcm.ndim == 2 else 1
    with WavWriter(path, sample_rate=sample_rate, channels=channels) as writer:
        writer.write(pcm)
