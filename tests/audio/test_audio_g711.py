"""G.711 tables against a scalar transcription of the ITU-T reference algorithm.

The reference functions below follow the G.191 Software Tool Library's
``g711.c`` (``ulaw_compress`` / ``ulaw_expand`` / ``alaw_compress`` /
``alaw_expand``) statement by statement, one sample at a time, with no numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from clutchcall.audio import g711


def ref_ulaw_compress(lin: int) -> int:
    absno = ((~lin) >> 2) + 33 if lin < 0 else (lin >> 2) + 33
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    code = (high_nibble << 4) | low_nibble
    if lin >= 0:
        code |= 0x0080
    return code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(lin: int) -> int:
    ix = (~lin) >> 4 if lin < 0 else lin >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if lin >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def ref_alaw_expand(code: int) -> int:
    ix = code ^ 0x0055
    iexp = (ix & 0x70) >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if ix > 127 else -mant


ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


def test_ulaw_decode_table_matches_reference_for_all_256_codes() -> None:
    expected = [ref_ulaw_expand(code) for code in range(256)]
    assert g711.ulaw_decode(bytes(range(256))).tolist() == expected


def test_alaw_decode_table_matches_reference_for_all_256_codes() -> None:
    expected = [ref_alaw_expand(code) for code in range(256)]
    assert g711.alaw_decode(bytes(range(256))).tolist() == expected


def test_ulaw_encode_matches_reference_for_every_int16() -> None:
    expected = [ref_ulaw_compress(int(x)) for x in range(-32768, 32768)]
    assert g711.ulaw_encode(ALL_INT16).tolist() == expected


def test_alaw_encode_matches_reference_for_every_int16() -> None:
    expected = [ref_alaw_compress(int(x)) for x in range(-32768, 32768)]
    assert g711.alaw_encode(ALL_INT16).tolist() == expected


@pytest.mark.parametrize(
    ("code", "linear"),
    [(0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124), (0xF0, 120), (0x70, -120)],
)
def test_ulaw_known_values(code: int, linear: int) -> None:
    assert int(g711.ulaw_decode(bytes([code]))[0]) == linear
    # Every decoded value encodes back to a code that decodes to the same value.
    again = g711.ulaw_encode(np.array([linear], dtype=np.int16))
    assert int(g711.ulaw_decode(again)[0]) == linear


@pytest.mark.parametrize(
    ("code", "linear"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0x54, -24)],
)
def test_alaw_known_values(code: int, linear: int) -> None:
    assert int(g711.alaw_decode(bytes([code]))[0]) == linear
    assert int(g711.alaw_encode(np.array([linear], dtype=np.int16))[0]) == code


def test_known_encodings_of_zero_and_extremes() -> None:
    samples = np.array([0, -1, 32767, -32768], dtype=np.int16)
    assert g711.ulaw_encode(samples).tolist() == [0xFF, 0x7F, 0x80, 0x00]
    assert g711.alaw_encode(samples).tolist() == [0xD5, 0x55, 0xAA, 0x2A]


def test_decode_then_encode_is_identity_on_codes() -> None:
    # mu-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
    codes = np.arange(256, dtype=np.uint8)
    ulaw_back = g711.ulaw_encode(g711.ulaw_decode(codes))
    assert ulaw_back.tolist() == [0xFF if c == 0x7F else c for c in range(256)]
    assert g711.alaw_encode(g711.alaw_decode(codes)).tolist() == list(range(256))
