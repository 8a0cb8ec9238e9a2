"""Errors raised by :mod:`clutchcall.audio`.

All of them derive from :class:`AudioError`, itself a
:class:`~clutchcall.errors.ClutchCallError`::

    AudioError
    ├── UnsupportedFormatError   codec / sample rate / channels / frame length not supported
    ├── FrameSizeError           a PCM or encoded frame has the wrong size or shape
    ├── DecodeError              an encoded frame could not be decoded
    └── WavFormatError           a WAV file is unreadable or not 16-bit PCM

The first two are also :class:`ValueError`: they mean "you called me wrong",
and nothing was encoded or sent. They are defined with the rest of the SDK's
error tree, in :mod:`clutchcall.errors` (so that catching them needs no extra),
and exported from :mod:`clutchcall` too.
"""

from __future__ import annotations

from ..errors import (
    AudioError,
    DecodeError,
    FrameSizeError,
    UnsupportedFormatError,
    WavFormatError,
)

__all__ = [
    "AudioError",
    "DecodeError",
    "FrameSizeError",
    "UnsupportedFormatError",
    "WavFormatError",
]
