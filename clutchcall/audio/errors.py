"""Errors raised by :mod:`clutchcall.audio`.

All of them derive from :class:`AudioError`, itself a
:class:`~clutchcall.errors.ClutchCallError`::

    AudioError
    ├── UnsupportedFormatError   codec / sample rate / channels / frame length not supported
    ├── FrameSizeError           a PCM or encoded frame has the wrong size or shape
    ├── DecodeError              an encoded frame could not be decoded
    └── WavFormatError           a WAV file is unreadable or not 16-bit PCM

The first two are also :class:`ValueError`: they mean "you called me wrong",
and nothing was encoded or sent.
"""

from __future__ import annotations

from ..errors import ClutchCallError

__all__ = [
    "AudioError",
    "DecodeError",
    "FrameSizeError",
    "UnsupportedFormatError",
    "WavFormatError",
]


class AudioError(ClutchCallError):
    """Base class of the errors raised by the audio layer."""


class UnsupportedFormatError(AudioError, ValueError):
    """The codec cannot run with this sample rate, channel count or frame length."""


class FrameSizeError(AudioError, ValueError):
    """A frame handed to a codec does not have the size (or shape, or dtype) it needs."""


class DecodeError(AudioError):
    """An encoded frame is corrupt or does not decode to exactly one frame of audio."""


class WavFormatError(AudioError):
    """A WAV file could not be read, or is not 16-bit integer PCM."""
