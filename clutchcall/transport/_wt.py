"""WebTransport-over-HTTP/3 constants and small codecs (draft-ietf-webtrans-http3)."""

from __future__ import annotations

from aioquic._buffer import Buffer, BufferReadError
from aioquic.buffer import encode_uint_var

UNI_STREAM_TYPE = 0x54
"""First varint of a WebTransport unidirectional stream."""

BIDI_SIGNAL = 0x41
"""First varint (WEBTRANSPORT_STREAM signal) of a WebTransport bidirectional stream."""

CLOSE_SESSION_CAPSULE = 0x2843
DRAIN_SESSION_CAPSULE = 0x78AE

BUFFERED_STREAM_REJECTED = 0x3994BD84
"""HTTP/3 error code for streams of a session that does not exist."""

SESSION_GONE = 0x170D7B68
"""HTTP/3 error code for streams whose session went away."""

_FIRST = 0x52E4A40FA8DB
_LAST = 0x52E5AC983162


def app_code_to_h3(code: int) -> int:
    """Map a 32-bit WebTransport application error code into the HTTP/3 space."""
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError("WebTransport error codes are 32-bit unsigned integers")
    return _FIRST + code + code // 0x1E


def h3_code_to_app(code: int) -> int:
    """Inverse of :func:`app_code_to_h3`; codes outside its range map to 0."""
    if code < _FIRST or code > _LAST or (code - 0x21) % 0x1F == 0:
        return 0
    shifted = code - _FIRST
    return shifted - shifted // 0x1F


def encode_close_capsule(code: int, reason: str) -> bytes:
    payload = code.to_bytes(4, "big") + reason.encode("utf-8")[:1024]
    return encode_uint_var(CLOSE_SESSION_CAPSULE) + encode_uint_var(len(payload)) + payload


def parse_capsules(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Pop every complete capsule (type, payload) from the front of ``buffer``."""
    capsules: list[tuple[int, bytes]] = []
    while buffer:
        buf = Buffer(data=bytes(buffer))
        try:
            capsule_type = buf.pull_uint_var()
            length = buf.pull_uint_var()
            payload = buf.pull_bytes(length)
        except BufferReadError:
            break
        capsules.append((capsule_type, payload))
        del buffer[: buf.tell()]
    return capsules


def parse_stream_header(data: bytes, *, unidirectional: bool) -> tuple[int | None, int] | None:
    """Classify a peer stream's first bytes.

    Returns ``None`` while more bytes are needed, ``(None, 0)`` for a stream that
    belongs to HTTP/3 itself, or ``(session_id, header_length)`` for a
    WebTransport stream.
    """
    buf = Buffer(data=data)
    try:
        first = buf.pull_uint_var()
    except BufferReadError:
        return None
    expected = UNI_STREAM_TYPE if unidirectional else BIDI_SIGNAL
    if first != expected:
        return (None, 0)
    try:
        session_id = buf.pull_uint_var()
    except BufferReadError:
        return None
    return (session_id, buf.tell())
