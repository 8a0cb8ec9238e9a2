"""The control-plane client against a hostile HTTP server on loopback.

A raw-socket server (one thread per connection) answers with whatever a test
asks for: bodies that are not JSON or not the API's JSON, error pages that are
not problem documents, bytes trickled slowly, endless bodies, compressed bombs,
the client's own API key echoed back. Whatever it sends, the sync ``Voice`` and
the async ``AsyncVoice`` (on asyncio and trio) must raise only typed SDK errors,
within ``timeout`` and with bounded memory, and never quote the API key.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

from clutchcall import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncVoice,
    ClutchCallError,
    Voice,
)
from clutchcall._control._retry import RetryPolicy
from clutchcall.errors import ResponseTooLargeError, status_error_class

pytestmark = pytest.mark.timeout(60)

KEY = "cc_test_hostile_0123456789abcdef"
ORG = "org_hostile"
SID = "CA" + "1" * 32
REQUEST_ID = "req_hostile42"
MiB = 1024 * 1024

VALID_CALL: dict[str, Any] = {
    "sid": SID,
    "status": "in_progress",
    "to": "+15551234567",
    "from": "+15558675309",
    "startedAt": "2026-01-02T03:04:05Z",
    "answeredAt": "2026-01-02T03:04:06.5+00:00",
    "endedAt": None,
    "endReason": None,
    "trunkId": "trunk_main",
    "agent": None,
    "ringTimeoutSec": 30,
}
VALID_TOKEN: dict[str, Any] = {
    "token": "tok_abc",
    "role": "server",
    "callSid": SID,
    "expiresAt": "2026-01-02T03:14:05Z",
    "relayUrl": None,
}
#: Every operation of the facade; ``bridge_token`` is what audio bridges call too.
OPS = ("originate", "get", "transfer", "hangup", "attach", "bridge_token")


# -- the hostile server ------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the server read it."""

    line: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[socket.socket, Seen, threading.Event], None]


@dataclass
class HostileServer:
    """Raw HTTP/1.1 on 127.0.0.1: each connection gets one answer from ``handler``."""

    handler: Handler
    listener: socket.socket = field(init=False)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                seen = _read_request(conn)
                self.seen.append(seen)
                self.handler(conn, seen, self.stopping)
            except OSError:
                pass  # the client gave up on us: that is the point of most tests

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.acceptor.join(5)
        for thread in self.threads:
            thread.join(5)
        assert not any(t.is_alive() for t in self.threads)


def _read_request(conn: socket.socket) -> Seen:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("no request")
        data += chunk
        assert len(data) < 1 * MiB
    head, _, rest = data.partition(b"\r\n\r\n")
    line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Seen(line, headers, rest)


def head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} Hostile", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def documented_success(seen: Seen) -> int:
    """201 for originate and bridge tokens (they create something), else 200."""
    method, path, _ = seen.line.split(" ", 2)
    return 201 if method == "POST" and path.endswith(("/calls", "/bridge-tokens")) else 200


def respond(
    status: int | None,
    body: bytes | Callable[[Seen], bytes],
    *,
    content_type: str = "application/json",
    extra: tuple[tuple[str, str], ...] = (),
) -> Handler:
    """Answer with ``body`` (or what it computes from the request), then close.
    ``status=None``: the success status the API documents for the request."""

    def handler(conn: socket.socket, seen: Seen, stopping: threading.Event) -> None:
        content = body(seen) if callable(body) else body
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(content))),
            ("X-Request-Id", REQUEST_ID),
            ("Connection", "close"),
            *extra,
        ]
        answer = documented_success(seen) if status is None else status
        conn.sendall(head(answer, headers) + content)

    return handler


def trickle(status: int, *, in_head: bool, count: int = 40, every: float = 0.25) -> Handler:
    """Send one byte every ``every`` seconds, ``count`` in all: of the header block
    (``in_head``) or of a body whose length was announced in full."""

    def handler(conn: socket.socket, seen: Seen, stopping: threading.Event) -> None:
        if in_head:
            conn.sendall(f"HTTP/1.1 {status} Hostile\r\n".encode())
            slow = b"X-Slow: " + b"s" * count
        else:
            conn.sendall(head(status, [("Content-Length", str(count))]))
            slow = b"x" * count
        for i in range(count):
            if stopping.wait(every):
                return
            conn.sendall(slow[i : i + 1])

    return handler


def endless(status: int, *, budget: int = 64 * MiB) -> Handler:
    """A chunked body sent as fast as the client takes it, ``budget`` bytes at most."""

    def handler(conn: socket.socket, seen: Seen, stopping: threading.Event) -> None:
        conn.sendall(head(status, [("Transfer-Encoding", "chunked"), ("X-Request-Id", REQUEST_ID)]))
        payload = b"7" * 65536
        chunk = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
        sent = 0
        while sent < budget and not stopping.is_set():
            conn.sendall(chunk)
            sent += len(payload)

    return handler


@pytest.fixture
def server() -> Iterator[HostileServer]:
    hostile = HostileServer(respond(200, json.dumps(VALID_CALL).encode()))
    yield hostile
    hostile.close()


# -- running every operation, sync and async ------------------------------------------------


def run_sync(voice: Voice, op: str) -> object:
    calls = voice.calls
    if op == "originate":
        return calls.originate(to="+15551234567", from_="+15558675309", trunk_id="trunk_main")
    if op == "get":
        return calls.get(SID)
    if op == "transfer":
        return calls.transfer(SID, "+15557654321")
    if op == "hangup":
        return calls.hangup(SID)
    if op == "attach":
        voice.agents.attach(SID, "echo")
        return None
    return calls.create_bridge_token(SID, "server")


async def run_async(voice: AsyncVoice, op: str) -> object:
    calls = voice.calls
    if op == "originate":
        return await calls.originate(to="+15551234567", from_="+15558675309", trunk_id="trunk_main")
    if op == "get":
        return await calls.get(SID)
    if op == "transfer":
        return await calls.transfer(SID, "+15557654321")
    if op == "hangup":
        return await calls.hangup(SID)
    if op == "attach":
        await voice.agents.attach(SID, "echo")
        return None
    return await calls.create_bridge_token(SID, "server")


def options(server: HostileServer, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "base_url": server.url,
        "api_key": KEY,
        "org_id": ORG,
        "max_retries": 0,
        "timeout": 5.0,
    }
    return settings | overrides


def valid_body(op: str) -> dict[str, Any]:
    return dict(VALID_TOKEN if op == "bridge_token" else VALID_CALL)


# -- success statuses with bodies the SDK cannot use ----------------------------------------

#: Bodies no operation can use, whatever model it expects.
NOT_A_MODEL: dict[str, bytes] = {
    "invalid_json": b'{"sid": ',
    "empty_object": b"{}",
    "array": b'[{"sid": "CA1"}]',
    "null": b"null",
    "empty_body": b"",
    "html": b"<html><body><h1>Welcome to nginx!</h1></body></html>",
    "json_string": b'"in_progress"',
    "nested_deeply": b"[" * 200_000,
    "not_utf8": b"\xff\xfe\xfa{garbage",
    "huge_integer": b"9" * 10_000,
}
#: Changes to a valid Call that break its schema.
BAD_CALL: dict[str, dict[str, Any]] = {
    "unknown_status": {"status": "exploded"},
    "bad_date": {"startedAt": "yesterday"},
    "date_without_offset": {"startedAt": "2026-01-02T03:04:05"},
    "date_as_number": {"startedAt": 1767322800},
    "sid_number": {"sid": 123},
    "ring_timeout_string": {"ringTimeoutSec": "x"},
    "ring_timeout_bool": {"ringTimeoutSec": True},
    "ring_timeout_fraction": {"ringTimeoutSec": 30.5},
    "ring_timeout_missing": {"ringTimeoutSec": ...},
    "answered_at_garbage": {"answeredAt": "garbage"},
    "unknown_end_reason": {"endReason": "meteor"},
    "agent_number": {"agent": 5},
    "trunk_list": {"trunkId": ["trunk_main"]},
    "to_null": {"to": None},
}
#: Changes to a valid BridgeToken that break its schema.
BAD_TOKEN: dict[str, dict[str, Any]] = {
    "token_fields_missing": {"role": ..., "callSid": ..., "expiresAt": ...},
    "token_number": {"token": 123},
    "unknown_role": {"role": "king"},
    "call_sid_null": {"callSid": None},
    "expires_garbage": {"expiresAt": "soon"},
    "expires_without_offset": {"expiresAt": "2026-01-02T03:14:05"},
    "relay_url_number": {"relayUrl": 5},
    "relay_url_missing": {"relayUrl": ...},
}


def mutate(base: dict[str, Any], changes: dict[str, Any]) -> bytes:
    """``base`` with ``changes`` applied (``...`` removes the field)."""
    body = {k: v for k, v in (base | changes).items() if v is not ...}
    return json.dumps(body).encode()


def bad_bodies() -> list[tuple[str, tuple[str, ...], bytes]]:
    """(case, operations it applies to, body)."""
    cases: list[tuple[str, tuple[str, ...], bytes]] = [
        (name, OPS, body) for name, body in NOT_A_MODEL.items()
    ]
    call_ops = tuple(op for op in OPS if op != "bridge_token")
    cases += [(name, call_ops, mutate(VALID_CALL, c)) for name, c in BAD_CALL.items()]
    cases += [(name, ("bridge_token",), mutate(VALID_TOKEN, c)) for name, c in BAD_TOKEN.items()]
    # A Call where a BridgeToken is expected, and the other way round.
    cases += [("call_for_token", ("bridge_token",), json.dumps(VALID_CALL).encode())]
    cases += [("token_for_call", call_ops, json.dumps(VALID_TOKEN).encode())]
    return cases


BAD_BODIES = bad_bodies()


def check_validation_error(error: APIResponseValidationError, op: str, body: bytes) -> None:
    status = 201 if op in ("originate", "bridge_token") else 200
    assert type(error) is APIResponseValidationError
    assert error.status_code == status
    assert error.request_id == REQUEST_ID
    assert error.body == body
    text = str(error)
    assert str(status) in text and REQUEST_ID in text
    start = body[:20].decode("ascii", "ignore")
    if start.isprintable() and "'" not in start:
        assert start in text  # the excerpt
    assert len(text) < 1500
    assert KEY not in text


def test_valid_bodies_are_accepted_sync(server: HostileServer) -> None:
    with Voice(**options(server)) as voice:
        for op in OPS:
            server.handler = respond(None, json.dumps(valid_body(op)).encode())
            result = run_sync(voice, op)
            if op == "bridge_token":
                assert repr(result).startswith("BridgeToken(call_sid=")
            elif op != "attach":
                assert getattr(result, "sid", None) == SID
    assert len(server.seen) == len(OPS)


@pytest.mark.parametrize(("case", "ops", "body"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_unusable_success_bodies_raise_validation_errors_sync(
    server: HostileServer, case: str, ops: tuple[str, ...], body: bytes
) -> None:
    server.handler = respond(None, body)
    with Voice(**options(server)) as voice:
        for op in ops:
            with pytest.raises(APIResponseValidationError) as info:
                run_sync(voice, op)
            check_validation_error(info.value, op, body)


@pytest.mark.anyio
@pytest.mark.parametrize(("case", "ops", "body"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_unusable_success_bodies_raise_validation_errors_async(
    server: HostileServer, case: str, ops: tuple[str, ...], body: bytes
) -> None:
    server.handler = respond(None, body)
    async with AsyncVoice(**options(server)) as voice:
        for op in ops:
            with pytest.raises(APIResponseValidationError) as info:
                await run_async(voice, op)
            check_validation_error(info.value, op, body)


@pytest.mark.anyio
async def test_valid_bodies_are_accepted_async(server: HostileServer) -> None:
    async with AsyncVoice(**options(server)) as voice:
        for op in OPS:
            server.handler = respond(None, json.dumps(valid_body(op)).encode())
            result = await run_async(voice, op)
            if op not in ("attach", "bridge_token"):
                assert getattr(result, "sid", None) == SID


@pytest.mark.anyio
async def test_a_bad_bridge_token_fails_the_audio_bridge_with_a_validation_error(
    server: HostileServer,
) -> None:
    server.handler = respond(None, mutate(VALID_TOKEN, {"expiresAt": "soon"}))
    async with AsyncVoice(**options(server)) as voice:
        with pytest.raises(APIResponseValidationError):
            await voice.audio_bridge.attach(SID)


def test_redirects_are_not_followed_and_not_taken_for_success(server: HostileServer) -> None:
    server.handler = respond(302, b"", extra=(("Location", "http://127.0.0.1:9/elsewhere"),))
    with Voice(**options(server)) as voice, pytest.raises(APIResponseValidationError) as info:
        voice.calls.get(SID)
    assert info.value.status_code == 302 and "302" in str(info.value)


# -- error statuses with bodies that are not problem documents -----------------------------

NOT_A_PROBLEM: dict[str, bytes] = {
    "invalid_json": b'{"type": ',
    "missing_type": b'{"title": "Nope", "status": 404}',
    "array": b'[{"type": "about:blank"}]',
    "null": b"null",
    "empty_body": b"",
    "html": b"<html><body>Bad Gateway</body></html>",
    "wrong_types": b'{"type": 1, "code": 2, "detail": {"a": 1}, "errors": 7, "requestId": []}',
    "errors_not_objects": b'{"type": "x", "code": "c", "detail": "d", "errors": [1, "f", null]}',
    "nested_deeply": b"{" * 100_000,
}
ERROR_STATUSES = (400, 401, 403, 404, 409, 418, 422, 429, 500, 502, 503)


def check_status_error(error: APIStatusError, status: int, body: bytes) -> None:
    assert type(error) is status_error_class(status)
    assert error.status_code == status
    assert error.request_id == REQUEST_ID
    assert error.response.content == body
    assert isinstance(error.code, str) and error.code
    text = str(error)
    assert str(status) in text and REQUEST_ID in text
    assert len(text) < 1500


@pytest.mark.parametrize("case", NOT_A_PROBLEM)
def test_error_statuses_raise_their_class_whatever_the_body_sync(
    server: HostileServer, case: str
) -> None:
    body = NOT_A_PROBLEM[case]
    with Voice(**options(server)) as voice:
        for status, op in zip(ERROR_STATUSES, OPS * 2, strict=False):
            server.handler = respond(status, body, content_type="application/problem+json")
            with pytest.raises(APIStatusError) as info:
                run_sync(voice, op)
            check_status_error(info.value, status, body)


@pytest.mark.anyio
@pytest.mark.parametrize("case", NOT_A_PROBLEM)
async def test_error_statuses_raise_their_class_whatever_the_body_async(
    server: HostileServer, case: str
) -> None:
    body = NOT_A_PROBLEM[case]
    async with AsyncVoice(**options(server)) as voice:
        for status, op in zip(ERROR_STATUSES, OPS * 2, strict=False):
            server.handler = respond(status, body)
            with pytest.raises(APIStatusError) as info:
                await run_async(voice, op)
            check_status_error(info.value, status, body)


def test_a_problem_document_is_still_read(server: HostileServer) -> None:
    problem = {
        "type": "https://docs.clutchcall.dev/errors/call_ended",
        "title": "Conflict",
        "status": 409,
        "code": "call_ended",
        "detail": "the call has already ended",
        "requestId": "req_in_body",
        "errors": [{"field": "sid", "message": "is over"}],
    }
    server.handler = respond(409, json.dumps(problem).encode())
    with Voice(**options(server)) as voice, pytest.raises(APIStatusError) as info:
        voice.calls.hangup(SID)
    error = info.value
    assert (error.code, error.request_id) == ("call_ended", REQUEST_ID)
    assert error.message == "the call has already ended: sid: is over"
    assert [(e.field, e.message) for e in error.errors] == [("sid", "is over")]


# -- the API key never appears, even when the server echoes it -----------------------------


def _echo(seen: Seen) -> bytes:
    auth = seen.headers["authorization"]
    return json.dumps({"detail": f"you sent {auth}", "sid": auth, "status": auth}).encode()


@pytest.mark.parametrize("status", [200, 201, 400, 500])
def test_an_echoed_api_key_is_redacted_from_errors(server: HostileServer, status: int) -> None:
    server.handler = respond(status, _echo, extra=(("X-Request-Id", f"x{KEY}"),))
    with Voice(**options(server)) as voice, pytest.raises(ClutchCallError) as info:
        voice.calls.get(SID)
    texts = [str(info.value), repr(info.value), str(getattr(info.value, "request_id", ""))]
    assert "<redacted>" in str(info.value)
    for text in texts:
        assert KEY not in text and KEY[:12] not in text


# -- time: every attempt is bounded as a whole ---------------------------------------------


@pytest.mark.parametrize("in_head", [False, True], ids=["body", "head"])
def test_a_trickling_response_times_out_sync(server: HostileServer, in_head: bool) -> None:
    server.handler = trickle(200, in_head=in_head)
    with (
        Voice(**options(server, timeout=1.0)) as voice,
        pytest.raises(APITimeoutError) as info,
    ):
        voice.calls.get(SID)
    assert "timed out: no complete response within 1 s" in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("in_head", [False, True], ids=["body", "head"])
async def test_a_trickling_response_times_out_async(server: HostileServer, in_head: bool) -> None:
    server.handler = trickle(200, in_head=in_head)
    async with AsyncVoice(**options(server, timeout=1.0)) as voice:
        with pytest.raises(APITimeoutError) as info:
            await voice.calls.get(SID)
    assert "timed out: no complete response within 1 s" in str(info.value)


def test_a_trickling_response_times_out_through_a_user_http_client(
    server: HostileServer,
) -> None:
    import httpx

    server.handler = trickle(200, in_head=False)
    with (
        httpx.Client(timeout=1.0) as mine,
        Voice(**options(server, timeout=1.0), http_client=mine) as voice,
        pytest.raises(APITimeoutError),
    ):
        voice.calls.get(SID)


def test_each_retry_gets_its_own_deadline(server: HostileServer) -> None:
    server.handler = trickle(200, in_head=False)
    with Voice(**options(server, timeout=0.5, max_retries=1)) as voice:
        transport: Any = voice._http._transport
        transport._policy = RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.01)
        with pytest.raises(APITimeoutError):
            voice.calls.get(SID)
    assert len(server.seen) == 2  # GET is idempotent: the timed-out attempt was retried


def endless_informational(conn: socket.socket, seen: Seen, stopping: threading.Event) -> None:
    """``100 Continue`` every 10 ms, 1,500 times, and never a final response."""
    for _ in range(1500):
        if stopping.wait(0.01):
            return
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")


def test_endless_informational_responses_time_out_sync(server: HostileServer) -> None:
    server.handler = endless_informational
    with Voice(**options(server, timeout=1.0)) as voice, pytest.raises(APITimeoutError):
        voice.calls.hangup(SID)


@pytest.mark.anyio
async def test_endless_informational_responses_time_out_async(server: HostileServer) -> None:
    server.handler = endless_informational
    async with AsyncVoice(**options(server, timeout=1.0)) as voice:
        with pytest.raises(APITimeoutError):
            await voice.calls.hangup(SID)


#: Answers that are not HTTP, or break it.
NOT_HTTP: dict[str, bytes] = {
    "not_http": b"HELLO THERE\r\n\r\n",
    "bad_status_line": b"HTTP/1.1 2x0 OK\r\n\r\n",
    "negative_length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n{}",
    "header_without_colon": b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "short_body": b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}",
    "bad_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n",
    "nothing": b"",
}


def raw(answer: bytes) -> Handler:
    def handler(conn: socket.socket, seen: Seen, stopping: threading.Event) -> None:
        conn.sendall(answer)

    return handler


@pytest.mark.parametrize("case", NOT_HTTP)
def test_broken_http_is_a_connection_error_sync(server: HostileServer, case: str) -> None:
    server.handler = raw(NOT_HTTP[case])
    with Voice(**options(server)) as voice:
        for op in OPS:
            with pytest.raises(APIConnectionError):
                run_sync(voice, op)


@pytest.mark.anyio
@pytest.mark.parametrize("case", NOT_HTTP)
async def test_broken_http_is_a_connection_error_async(server: HostileServer, case: str) -> None:
    server.handler = raw(NOT_HTTP[case])
    async with AsyncVoice(**options(server)) as voice:
        for op in OPS:
            with pytest.raises(APIConnectionError):
                await run_async(voice, op)


# -- size: bodies are read up to max_response_bytes, memory stays flat ----------------------


def failed_get(server: HostileServer, **overrides: Any) -> tuple[ClutchCallError, int]:
    """GET a call on a blocking client (``options(server, **overrides)``), which must
    fail: the error, and the peak memory traced while the client ran."""
    errors: list[ClutchCallError] = []
    tracemalloc.start()
    try:
        with Voice(**options(server, **overrides)) as voice:
            try:
                voice.calls.get(SID)
            except ClutchCallError as exc:
                errors.append(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert len(errors) == 1, "the GET succeeded"
    return errors[0], peak


def check_too_large(error: ResponseTooLargeError, limit: int) -> None:
    assert error.status_code == 200 and error.limit == limit
    assert len(error.body) <= limit
    assert REQUEST_ID in str(error) and str(limit) in str(error)


def test_an_endless_body_is_cut_at_the_limit_with_flat_memory_sync(
    server: HostileServer,
) -> None:
    server.handler = endless(200)
    limit = 1 * MiB
    error, peak = failed_get(server, max_response_bytes=limit)
    assert isinstance(error, ResponseTooLargeError)
    check_too_large(error, limit)
    assert peak < 4 * limit, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.anyio
async def test_an_endless_body_is_cut_at_the_limit_with_flat_memory_async(
    server: HostileServer,
) -> None:
    server.handler = endless(200)
    limit = 1 * MiB
    async with AsyncVoice(**options(server, max_response_bytes=limit)) as voice:
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLargeError) as info:
                await voice.calls.get(SID)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    check_too_large(info.value, limit)
    assert peak < 4 * limit, f"peak {peak / MiB:.1f} MiB"


def test_an_endless_error_body_raises_the_status_error(server: HostileServer) -> None:
    server.handler = endless(503)
    with (
        Voice(**options(server, max_response_bytes=64 * 1024)) as voice,
        pytest.raises(APIStatusError) as info,
    ):
        voice.calls.get(SID)
    assert type(info.value) is status_error_class(503)
    assert "longer than 65536 bytes" in str(info.value)


def test_a_declared_oversized_length_is_refused_before_reading(server: HostileServer) -> None:
    def handler(conn: socket.socket, seen: Seen, stopping: threading.Event) -> None:
        conn.sendall(head(200, [("Content-Length", str(10 * 1024 * MiB))]) + b"{")
        stopping.wait(5)  # and never more: the client must not wait for it

    server.handler = handler
    with Voice(**options(server)) as voice, pytest.raises(ResponseTooLargeError) as info:
        voice.calls.get(SID)
    assert info.value.body == b""


def test_the_default_limit_is_a_few_mib_and_configurable(server: HostileServer) -> None:
    with Voice(**options(server)) as voice:
        assert 1 * MiB <= voice.max_response_bytes <= 16 * MiB
        small = voice.with_options(max_response_bytes=100)
        try:
            assert small.max_response_bytes == 100
            with pytest.raises(ResponseTooLargeError):
                small.calls.get(SID)  # the valid Call is longer than 100 bytes
            assert voice.calls.get(SID).sid == SID
        finally:
            small.close()


@pytest.mark.parametrize("status", [200, 500])
def test_a_compressed_bomb_is_refused_unread(server: HostileServer, status: int) -> None:
    bomb = gzip.compress(b" " * (64 * MiB), compresslevel=9)
    server.handler = respond(status, bomb, extra=(("Content-Encoding", "gzip"),))
    error, peak = failed_get(server)
    assert isinstance(error, APIResponseValidationError if status == 200 else APIStatusError)
    assert "gzip" in str(error)
    assert peak < 8 * MiB
    assert server.seen[0].headers["accept-encoding"] == "identity"


def test_a_client_stays_usable_after_many_hostile_answers(server: HostileServer) -> None:
    """A mix of the above, back to back on one client, then a valid answer."""
    handlers = [
        respond(200, b"<html>"),
        trickle(200, in_head=True, count=8, every=0.2),
        endless(200, budget=8 * MiB),
        respond(500, b"[]"),
    ]
    with Voice(**options(server, timeout=0.5, max_response_bytes=MiB)) as voice:
        for handler in handlers * 2:
            server.handler = handler
            with pytest.raises(ClutchCallError):
                voice.calls.get(SID)
        server.handler = respond(200, json.dumps(VALID_CALL).encode())
        assert voice.calls.get(SID).sid == SID


def test_cookies_a_server_sets_are_not_kept_sync(server: HostileServer) -> None:
    """A ``Set-Cookie`` is neither stored nor sent back (the key alone authenticates)."""
    cookie = ("Set-Cookie", "session=planted; Path=/")
    server.handler = respond(200, json.dumps(VALID_CALL).encode(), extra=(cookie,))
    with Voice(**options(server)) as voice:
        for _ in range(2):
            assert voice.calls.get(SID).sid == SID
    assert len(server.seen) == 2
    assert all("cookie" not in {k.lower() for k in seen.headers} for seen in server.seen)


@pytest.mark.anyio
async def test_cookies_a_server_sets_are_not_kept_async(server: HostileServer) -> None:
    cookie = ("Set-Cookie", "session=planted; Path=/")
    server.handler = respond(200, json.dumps(VALID_CALL).encode(), extra=(cookie,))
    async with AsyncVoice(**options(server)) as voice:
        for _ in range(2):
            assert (await voice.calls.get(SID)).sid == SID
    assert len(server.seen) == 2
    assert all("cookie" not in {k.lower() for k in seen.headers} for seen in server.seen)


@pytest.mark.anyio
async def test_a_body_longer_than_its_declared_length_is_still_cut_at_the_limit() -> None:
    """HTTP/1.1 framing stops a body at its Content-Length; a caller's own transport
    need not, and the limit holds all the same."""
    chunk = b"7" * 1024

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(256):  # 256 KiB behind a declared 10 bytes
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "10"}, content=stream())

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mine,
        AsyncVoice(
            base_url="http://127.0.0.1:9",
            api_key=KEY,
            org_id=ORG,
            max_retries=0,
            max_response_bytes=64 * 1024,
            http_client=mine,
        ) as voice,
    ):
        with pytest.raises(ResponseTooLargeError) as info:
            await voice.calls.get(SID)
    assert len(info.value.body) == 64 * 1024


@pytest.mark.anyio
async def test_a_timeout_on_one_request_leaves_concurrent_ones_alone(
    server: HostileServer,
) -> None:
    """The deadline is per request: a trickled GET times out while valid ones succeed."""

    def handler(conn: socket.socket, seen: Seen, stopping: threading.Event) -> None:
        if "/hangup" in seen.line:
            trickle(200, in_head=False)(conn, seen, stopping)
        else:
            respond(200, json.dumps(VALID_CALL).encode())(conn, seen, stopping)

    server.handler = handler
    results: list[object] = []
    async with AsyncVoice(**options(server, timeout=1.0)) as voice:

        async def slow() -> None:
            with pytest.raises(APITimeoutError):
                await voice.calls.hangup(SID)
            results.append("timed out")

        async def fast() -> None:
            for _ in range(5):
                results.append((await voice.calls.get(SID)).sid)
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            tg.start_soon(fast)
    assert sorted(map(str, results)) == sorted([SID] * 5 + ["timed out"])
