"""ITU-T G.711 mu-law and A-law companding, vectorised with lookup tables.

The tables follow the ITU-T reference software (the G.191 Software Tool
Library, ``g711.c``), including its one's-complement treatment of negative
inputs: for example mu-law encodes ``-1`` as ``0x7F`` (which decodes to 0) and
A-law encodes ``-1`` as ``0x55`` (which decodes to -8).

Encoding is one table lookup per sample: the 16-bit input, reinterpreted as an
unsigned index, selects the code from a 65536-entry table built once at import.
Decoding looks up a 256-entry table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ALAW_DECODE_TABLE",
    "ULAW_DECODE_TABLE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

# int16 value of every 16-bit pattern, in the order of the pattern read as uint16.
_ALL_INT16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
# Bit length of 0..2047 (enough for both laws' magnitudes after shifting).
_BIT_LENGTH = np.zeros(2048, dtype=np.int32)
for _bits in range(1, 12):
    _BIT_LENGTH[1 << (_bits - 1) : 1 << _bits] = _bits


def _magnitude(x: NDArray[np.int32]) -> NDArray[np.int32]:
    """One's-complement magnitude, as the reference code computes it (``~x`` for x < 0)."""
    return np.where(x < 0, np.invert(x), x)


def _build_ulaw_encode() -> NDArray[np.uint8]:
    x = _ALL_INT16
    biased = np.minimum((_magnitude(x) >> 2) + 33, 0x1FFF)
    exponent = _BIT_LENGTH[biased >> 6]
    mantissa = (biased >> (exponent + 1)) & 0x0F
    code = 0x7F ^ ((exponent << 4) | mantissa)
    code = np.where(x >= 0, code | 0x80, code)
    table: NDArray[np.uint8] = code.astype(np.uint8)
    return table


def _build_alaw_encode() -> NDArray[np.uint8]:
    x = _ALL_INT16
    magnitude = _magnitude(x) >> 4
    exponent = np.maximum(_BIT_LENGTH[magnitude] - 4, 0)
    mantissa = np.where(exponent == 0, magnitude, (magnitude >> np.maximum(exponent - 1, 0)) & 0x0F)
    code = (exponent << 4) | mantissa
    code = np.where(x >= 0, code | 0x80, code)
    table: NDArray[np.uint8] = (code ^ 0x55).astype(np.uint8)
    return table


def _build_ulaw_decode() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _build_alaw_decode() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    segment_base = np.where(exponent == 0, mantissa, mantissa + 16)
    magnitude = ((segment_base << 4) + 8) << np.maximum(exponent - 1, 0)
    table: NDArray[np.int16] = np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)
    return table


ULAW_ENCODE_TABLE: NDArray[np.uint8] = _build_ulaw_encode()
ALAW_ENCODE_TABLE: NDArray[np.uint8] = _build_alaw_encode()
ULAW_DECODE_TABLE: NDArray[np.int16] = _build_ulaw_decode()
"""Linear value of each of the 256 mu-law codes."""
ALAW_DECODE_TABLE: NDArray[np.int16] = _build_alaw_decode()
"""Linear value of each of the 256 A-law codes."""

for _table in (ULAW_ENCODE_TABLE, ALAW_ENCODE_TABLE, ULAW_DECODE_TABLE, ALAW_DECODE_TABLE):
    _table.flags.writeable = False


def _codes(data: bytes | bytearray | memoryview | NDArray[np.uint8]) -> NDArray[np.uint8]:
    if isinstance(data, np.ndarray):
        return data
    return np.frombuffer(data, dtype=np.uint8)


def _indices(pcm: NDArray[Any]) -> NDArray[np.uint16]:
    return np.ascontiguousarray(pcm, dtype=np.int16).view(np.uint16)


def ulaw_encode(pcm: NDArray[np.int16]) -> NDArray[np.uint8]:
    """Mu-law codes of 16-bit linear samples (any shape; the result has the same shape)."""
    return ULAW_ENCODE_TABLE[_indices(pcm)]


def alaw_encode(pcm: NDArray[np.int16]) -> NDArray[np.uint8]:
    """A-law codes of 16-bit linear samples (any shape; the result has the same shape)."""
    return ALAW_ENCODE_TABLE[_indices(pcm)]


def ulaw_decode(codes: bytes | bytearray | memoryview | NDArray[np.uint8]) -> NDArray[np.int16]:
    """16-bit linear samples of mu-law codes."""
    return ULAW_DECODE_TABLE[_codes(codes)]


def alaw_decode(codes: bytes | bytearray | memoryview | NDArray[np.uint8]) -> NDArray[np.int16]:
    """16-bit linear samples of A-law codes."""
    return ALAW_DECODE_TABLE[_codes(codes)]
