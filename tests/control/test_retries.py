"""Retries, timeouts and connection failures, against real servers on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from control_helpers import CALLER_ID, DEST, TRUNK, fast_policy

from clutchcall import (
    APIConnectionError,
    APITimeoutError,
    AsyncVoice,
    InternalServerError,
    RateLimitError,
    Voice,
)
from clutchcall._control._retry import RetryPolicy, parse_retry_after
from clutchcall.dev import Engine, Fault


def test_get_is_retried_after_503_and_succeeds(voice: Voice, engine: Engine) -> None:
    fast_policy(voice)
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    engine.inject_fault(Fault(status=503, times=2, method="GET", path=call.sid))
    assert voice.calls.get(sid=call.sid).sid == call.sid
    statuses = [r.status for r in engine.requests("GET", call.sid)]
    assert statuses == [503, 503, 200]


def test_retries_stop_after_max_retries(engine: Engine) -> None:
    with engine.voice(max_retries=1) as voice:
        fast_policy(voice)
        engine.inject_fault(Fault(status=503, times=5, method="GET", path="CA1{32}"))
        with pytest.raises(InternalServerError) as info:
            voice.calls.get(sid="CA" + "1" * 32)
        assert info.value.status_code == 503 and info.value.code == "unavailable"
    assert len(engine.requests("GET", "CA1{32}")) == 2


def test_max_retries_zero_sends_once(engine: Engine) -> None:
    with engine.voice(max_retries=0) as voice:
        engine.inject_fault(Fault(status=500, times=1, method="GET", path="CA6{32}"))
        with pytest.raises(InternalServerError):
            voice.calls.get(sid="CA" + "6" * 32)
    assert len(engine.requests("GET", "CA6{32}")) == 1


def test_server_error_on_a_non_idempotent_post_is_not_retried(voice: Voice, engine: Engine) -> None:
    fast_policy(voice)
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    engine.inject_fault(Fault(status=503, times=1, path="/hangup$"))
    with pytest.raises(InternalServerError):
        call.hangup()
    assert len(engine.requests("POST", "/hangup$")) == 1
    assert not voice.calls.get(sid=call.sid).ended


def test_429_is_retried_even_for_non_idempotent_posts(voice: Voice, engine: Engine) -> None:
    fast_policy(voice)
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    engine.inject_fault(Fault(status=429, times=1, path="/hangup$", retry_after=0))
    call.hangup()
    assert call.ended
    assert [r.status for r in engine.requests("POST", "/hangup$")] == [429, 200]


def test_retry_after_is_honoured(voice: Voice, engine: Engine) -> None:
    fast_policy(voice)
    engine.inject_fault(Fault(status=429, times=1, method="GET", retry_after=0.6, path="CA2{32}"))
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - the sid is unknown: 404 after the retry
        voice.calls.get(sid="CA" + "2" * 32)
    assert time.monotonic() - started >= 0.55
    assert [r.status for r in engine.requests("GET", "CA2{32}")] == [429, 404]


def test_rate_limit_error_after_retries_carries_status_and_code(engine: Engine) -> None:
    with engine.voice(max_retries=0) as voice:
        engine.inject_fault(Fault(status=429, times=1, method="GET", retry_after=1, path="CA2{32}"))
        with pytest.raises(RateLimitError) as info:
            voice.calls.get(sid="CA" + "2" * 32)
    assert info.value.status_code == 429 and info.value.code == "rate_limited"
    assert info.value.response.headers["retry-after"] == "1"


def test_lost_originate_response_is_retried_with_the_same_key_and_one_call(
    voice: Voice, engine: Engine
) -> None:
    fast_policy(voice)
    before = len(engine.store.calls)
    engine.inject_fault(Fault(status=503, times=2, path=r"/calls$", after_processing=True))
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    attempts = engine.requests("POST", r"/calls$")
    assert [r.status for r in attempts] == [503, 503, 201]
    assert len({r.idempotency_key for r in attempts}) == 1
    assert len(engine.store.calls) == before + 1
    assert call.sid in engine.store.calls


@pytest.fixture
def slamming_server() -> Iterator[tuple[int, list[int]]]:
    """A TCP server that accepts and immediately closes each connection, counting them."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_dropped_connections_raise_connection_error_after_retries(
    slamming_server: tuple[int, list[int]],
) -> None:
    port, accepted = slamming_server
    with Voice(base_url=f"http://127.0.0.1:{port}", api_key="k", org_id="org_x") as voice:
        fast_policy(voice)
        with pytest.raises(APIConnectionError) as info:
            voice.calls.get(sid="CA" + "3" * 32)
    assert not isinstance(info.value, APITimeoutError)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert len(accepted) == 3  # GET is idempotent: first try + 2 retries


def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Voice(base_url=f"http://127.0.0.1:{port}", api_key="k", org_id="org_x") as voice:
        fast_policy(voice)
        started = time.monotonic()
        with pytest.raises(APIConnectionError):
            voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
        assert time.monotonic() - started < 5


def test_slow_server_raises_timeout_error(engine: Engine) -> None:
    with engine.voice(timeout=0.3, max_retries=0) as voice:
        engine.inject_fault(Fault(status=None, delay=1.5, method="GET", path="CA4{32}"))
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            voice.calls.get(sid="CA" + "4" * 32)
        assert time.monotonic() - started < 1.4
    assert "timed out" in str(info.value)


class _HtmlBadGateway(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_non_json_error_pages_keep_their_status() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlBadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with (
            Voice(base_url=url, api_key="k", org_id="org_x", max_retries=0) as voice,
            pytest.raises(InternalServerError) as info,
        ):
            voice.calls.get(sid="CA" + "5" * 32)
        assert info.value.status_code == 502 and info.value.code == "http_502"
        assert "Bad Gateway" in info.value.message
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.anyio
async def test_async_client_retries_and_times_out(async_voice: AsyncVoice, engine: Engine) -> None:
    fast_policy(async_voice)
    call = await async_voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    engine.inject_fault(Fault(status=503, times=1, method="GET", path=call.sid))
    assert (await async_voice.calls.get(sid=call.sid)).sid == call.sid
    assert [r.status for r in engine.requests("GET", call.sid)] == [503, 200]
    quick = async_voice.with_options(timeout=0.2, max_retries=0)
    try:
        engine.inject_fault(Fault(status=None, delay=1.0, method="GET", path=call.sid))
        with pytest.raises(APITimeoutError):
            await quick.calls.get(sid=call.sid)
    finally:
        await quick.close()


def test_policy_backoff_grows_with_jitter_and_caps() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (8, 4.0)]:
        delays = {policy.backoff(attempt) for _ in range(50)}
        assert all(0.75 * ceiling <= d <= ceiling for d in delays)
        assert len(delays) > 1


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    parsed = parse_retry_after(later)
    assert parsed is not None and 25 < parsed <= 30
    policy = RetryPolicy(initial_delay=0.5, max_delay=0.5, max_retry_after=60)
    assert policy.delay(0, "7") == 7.0
    assert policy.delay(0, "3600") <= 0.5  # absurd values fall back to backoff
