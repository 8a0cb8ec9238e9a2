"""Hostile QUIC peers and dying listeners: nothing one peer does reaches another.

- One genuine QUIC Initial (ALPN ``moq-00`` or ``h3``), then silence: the server
  drops that connection at its handshake timeout, logs it with the peer's
  address, and everyone else is served on (an echo call keeps flowing, new
  handshakes succeed). This used to stop the relay for everyone.
- Whatever fails inside one connection's task (the handler, the session wait,
  the wait for its end) is logged with its peer's address and closes only it.
- A server whose listener dies (socket closed under it, reader raising) says so:
  ``Server.failure`` and the ``async with`` raising; a dev engine whose relay dies
  raises ``EngineFailed`` from its methods and refuses bridge tokens with 503;
  ``clutchcall dev`` exits with status 1 and a message.
- 500 sessions that never send SETUP are all closed at the relay's setup timeout.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from child_processes import ready_line, reap
from hardening_helpers import Echoes, answered_call, until

from clutchcall import moqt, transport
from clutchcall.dev import Engine, EngineError
from clutchcall.transport import Connection, ConnectionLost, Stream
from clutchcall.transport import server as server_module
from clutchcall.transport._sockets import receive_datagrams

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SERVER_LOGGER = "clutchcall.transport.server"
HANDSHAKE_TIMEOUT = 0.5
"""The handshake timeout of the servers under test (seconds)."""


@functools.cache
def certificate() -> transport.SelfSignedCertificate:
    return transport.generate_self_signed()


def initial_datagrams(port: int, alpn: str) -> list[bytes]:
    """The first flight of a real QUIC client: an Initial packet with a ClientHello."""
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=[alpn], server_name="localhost"
    )
    quic = QuicConnection(configuration=configuration)
    quic.connect(("127.0.0.1", port), now=time.monotonic())
    return [data for data, _ in quic.datagrams_to_send(now=time.monotonic())]


async def send_initial_then_nothing(port: int, alpn: str) -> str:
    """Send one Initial from a fresh UDP socket; returns its ``host:port``."""
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as attacker:
        for datagram in initial_datagrams(port, alpn):
            await attacker.sendto(datagram, "127.0.0.1", port)
        return f"127.0.0.1:{attacker.extra(anyio.abc.SocketAttribute.local_port)}"


def logged(caplog: pytest.LogCaptureFixture, *words: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if all(w in r.getMessage() for w in words)]


def serve(handler: Callable[[Connection], Awaitable[None]]) -> transport.Server:
    cert = certificate()
    return transport.serve(
        "127.0.0.1",
        0,
        certificate=cert.cert_pem,
        private_key=cert.key_pem,
        handler=handler,
        handshake_timeout=HANDSHAKE_TIMEOUT,
    )


def connect(kind: str, port: int, path: str = "/") -> Any:
    url = f"moqt://127.0.0.1:{port}" if kind == "quic" else f"https://127.0.0.1:{port}{path}"
    return transport.connect(url, cert_sha256=certificate().fingerprint, timeout=5.0)


async def echo_handler(conn: Connection) -> None:
    async def echo(stream: Stream) -> None:
        chunks = []
        while True:
            try:
                chunks.append(await stream.receive())
            except anyio.EndOfStream:
                break
        await stream.send(b"".join(chunks))
        await stream.send_eof()

    try:
        async with anyio.create_task_group() as tg:
            while True:
                stream = await conn.accept_stream()
                if isinstance(stream, Stream):
                    tg.start_soon(echo, stream)
    except* (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def echo_once(conn: Connection, payload: bytes) -> bytes:
    stream = await conn.open_bidi_stream()
    await stream.send(payload)
    await stream.send_eof()
    chunks = []
    while True:
        try:
            chunks.append(await stream.receive())
        except anyio.EndOfStream:
            return b"".join(chunks)


# -- one Initial, then silence ----------------------------------------------------------


@pytest.mark.parametrize(("alpn", "kind"), [("moq-00", "webtransport"), ("h3", "quic")])
async def test_one_initial_then_silence_drops_only_that_connection(
    alpn: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOGGER)
    with anyio.fail_after(20):
        async with serve(echo_handler) as srv, connect(kind, srv.port) as before:
            assert await echo_once(before, b"before") == b"before"
            attacker = await send_initial_then_nothing(srv.port, alpn)
            await until(lambda: len(srv.connections) == 2)
            # The server gives up on the silent peer, says who it was ...
            await until(lambda: logged(caplog, attacker, "no session"), within=10)
            # ... forgets it, and serves the others on: the session in progress
            # and a new handshake.
            await until(lambda: len(srv.connections) == 1, within=10)
            assert await echo_once(before, b"still here") == b"still here"
            async with connect(kind, srv.port) as after:
                assert await echo_once(after, b"new") == b"new"
            assert srv.failure is None


# The dev engine's relay runs on asyncio in the engine's own thread, whatever the
# test's backend; the transport tests above run the server on both backends.
ENGINE_BACKEND = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@ENGINE_BACKEND
@pytest.mark.parametrize("alpn", ["moq-00", "h3"])
async def test_one_initial_then_silence_leaves_the_relay_serving_calls(
    alpn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOGGER)
    echoes, later = Echoes(), Echoes()
    with Engine(time_scale=0.05, relay_handshake_timeout=HANDSHAKE_TIMEOUT) as engine:
        assert engine.relay_port
        async with engine.async_voice() as voice:
            sid = await answered_call(voice)
            with anyio.fail_after(30):
                async with (
                    await voice.audio_bridge.attach(sid, on_uplink=echoes.on_uplink) as bridge,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(echoes.talk_for, bridge, 25.0)
                    await until(lambda: echoes.rtt)
                    attacker = await send_initial_then_nothing(engine.relay_port, alpn)
                    await until(lambda: logged(caplog, attacker, "no session"), within=10)
                    # The relay dropped the silent peer; the call's echoes keep coming.
                    dropped_at = echoes.next_seq
                    await until(lambda: echoes.back_since(dropped_at) >= 25, within=10)
                    tg.cancel_scope.cancel()
                # And a new session (a second call's bridge) gets its echoes.
                sid2 = await answered_call(voice)
                async with (
                    await voice.audio_bridge.attach(sid2, on_uplink=later.on_uplink) as bridge2,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(later.talk_for, bridge2, 10.0)
                    await until(lambda: later.back_since(0) >= 5, within=10)
                    tg.cancel_scope.cancel()
        assert engine.failure is None


# -- one connection's failure stays in that connection ------------------------------------


@pytest.mark.parametrize("step", ["handler", "wait_session", "wait_terminated"])
async def test_a_failure_inside_one_connection_closes_only_that_connection(
    step: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The task of the session on path ``/victim`` fails at ``step``: the handler
    raises, or the server's wait for the session or for the connection's end does;
    the sessions before and after it do not notice."""
    caplog.set_level(logging.INFO, logger=SERVER_LOGGER)
    victims: list[str] = []

    def strike(conn: Connection, what: str) -> None:
        if not conn.is_client and conn.path == "/victim":
            victims.append(f"{conn.remote_address[0]}:{conn.remote_address[1]}")
            raise RuntimeError(f"injected {what} failure")

    async def handler(conn: Connection) -> None:
        if step == "handler":
            strike(conn, "handler")
        await echo_handler(conn)

    real_wait_session = Connection.wait_session
    real_wait_terminated = Connection.wait_terminated

    async def wait_session(self: Connection) -> bool:
        ready = await real_wait_session(self)
        if step == "wait_session":
            strike(self, "wait_session")
        return ready

    async def wait_terminated(self: Connection) -> None:
        if step == "wait_terminated":
            strike(self, "wait_terminated")
        await real_wait_terminated(self)

    monkeypatch.setattr(Connection, "wait_session", wait_session)
    monkeypatch.setattr(Connection, "wait_terminated", wait_terminated)

    with anyio.fail_after(20):
        async with serve(handler) as srv, connect("webtransport", srv.port) as first:
            assert await echo_once(first, b"first") == b"first"
            victim = connect("webtransport", srv.port, path="/victim")
            if step == "wait_terminated":
                # Fails once the session is over: nothing for its peer to see.
                async with victim as conn:
                    assert await echo_once(conn, b"victim") == b"victim"
            else:
                with pytest.raises((anyio.BrokenResourceError, transport.ConnectError)):
                    async with victim as conn:
                        await echo_once(conn, b"victim")
                        await conn.accept_stream()
            await until(lambda: victims and logged(caplog, victims[0], "failed"))
            async with connect("webtransport", srv.port) as third:
                assert await echo_once(third, b"third") == b"third"
            assert await echo_once(first, b"first again") == b"first again"
            assert srv.failure is None
    assert f"injected {step} failure" in caplog.text


# -- a dying listener is not a silent zombie ------------------------------------------------

FAIL_THE_READER = b"please fail the socket reader"


@pytest.mark.parametrize("cause", ["socket closed", "reader raises"])
async def test_a_server_whose_listener_dies_raises_instead_of_idling(
    cause: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_reader = receive_datagrams

    async def fragile_reader(
        sock: anyio.abc.UDPSocket,
        handle: Callable[[bytes, Any], Awaitable[None]],
        handle_nowait: Callable[[bytes, Any], None],
    ) -> None:
        # Both ways of reading fail the same way: the task's loop (trio) and the
        # socket's read callback (asyncio).
        def check(data: bytes) -> None:
            if data == FAIL_THE_READER:
                raise RuntimeError("injected socket reader failure")

        async def checked(data: bytes, addr: Any) -> None:
            check(data)
            await handle(data, addr)

        def checked_nowait(data: bytes, addr: Any) -> None:
            check(data)
            handle_nowait(data, addr)

        await real_reader(sock, checked, checked_nowait)

    monkeypatch.setattr(server_module, "receive_datagrams", fragile_reader)
    body_finished = False
    with anyio.fail_after(20), pytest.raises(transport.TransportError) as info:
        async with serve(echo_handler) as srv, connect("quic", srv.port) as client:
            assert await echo_once(client, b"ping") == b"ping"
            if cause == "socket closed":
                await srv._close_socket_under_reader()
            else:
                async with await anyio.create_udp_socket(local_host="127.0.0.1") as sender:
                    await sender.sendto(FAIL_THE_READER, "127.0.0.1", srv.port)
            await anyio.sleep(15)  # the server's failure cancels this
            body_finished = True
    assert not body_finished
    assert info.value is srv.failure
    assert f"127.0.0.1:{srv.port} stopped" in str(info.value)
    expected = "UDP socket was closed" if cause == "socket closed" else "injected"
    assert expected in str(info.value)
    assert logged(caplog, f"127.0.0.1:{srv.port} stopped")
    assert not srv.connections


async def test_a_server_closed_normally_has_no_failure() -> None:
    with anyio.fail_after(10):
        async with serve(echo_handler) as srv, connect("quic", srv.port) as client:
            assert await echo_once(client, b"ping") == b"ping"
    assert srv.failure is None


async def test_an_exception_of_the_body_propagates_unwrapped() -> None:
    with anyio.fail_after(10), pytest.raises(KeyError):
        async with serve(echo_handler):
            raise KeyError("the body's own error")


def fail_relay(engine: Engine) -> None:
    response = httpx.post(
        f"{engine.base_url}/_dev/relay/fail",
        headers={"Authorization": f"Bearer {engine.api_key}"},
        timeout=10,
    )
    assert response.status_code == 204, response.text


def wait_for_failure(engine: Engine, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while engine.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.failure is not None
    return engine.failure


def test_an_engine_whose_relay_dies_refuses_to_be_used() -> None:
    with Engine(time_scale=0.05) as engine:
        voice = engine.voice()
        with voice:
            call = voice.calls.originate(to="+15005550004", from_="+15558675309", trunk_id="t1")
            fail_relay(engine)
            failure = wait_for_failure(engine)
            assert "the relay stopped serving" in failure
            assert "UDP socket was closed" in failure
            for use in (
                engine.voice,
                engine.async_voice,
                engine.ready_info,
                engine.relay_sessions,
                engine.relay_client_sessions,
                engine.start_relay,
                lambda: engine.media_counters(call.sid),
                lambda: engine.add_api_key(),
            ):
                with pytest.raises(EngineError, match="the relay stopped serving"):
                    use()
            # No bridge token for a relay that no longer serves.
            response = httpx.post(
                f"{engine.base_url}/v1/orgs/{engine.org_id}/calls/{call.sid}/bridge-tokens",
                headers={"Authorization": f"Bearer {engine.api_key}"},
                json={"role": "server"},
                timeout=10,
            )
            assert response.status_code == 503
            assert "the relay stopped serving" in response.json()["detail"]
            # The rest of the control plane still answers (to say what happened).
            assert voice.calls.get(call.sid).sid == call.sid
    # Stopping clears the failure; the engine starts afresh.
    assert engine.failure is None
    with engine:
        assert engine.ready_info()["relay_url"]


def test_the_relay_fault_needs_the_api_key() -> None:
    with Engine(time_scale=0.05) as engine:
        response = httpx.post(f"{engine.base_url}/_dev/relay/fail", timeout=10)
        assert response.status_code == 401
        response = httpx.post(
            f"{engine.base_url}/_dev/relay/fail",
            headers={"Authorization": "Bearer not-the-key"},
            timeout=10,
        )
        assert response.status_code == 401
        assert engine.failure is None
        assert engine.ready_info()["relay_url"]


@pytest.fixture
def dev_process() -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clutchcall", "dev", "--port", "0", "--time-scale", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ready_line(proc, 30)
        assert line, "clutchcall dev printed no ready line"
        yield proc, json.loads(line)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        reap(proc)


def test_clutchcall_dev_exits_when_its_relay_dies(
    dev_process: tuple[subprocess.Popen[str], dict[str, Any]],
) -> None:
    proc, info = dev_process
    response = httpx.post(
        f"{info['base_url']}/_dev/relay/fail",
        headers={"Authorization": f"Bearer {info['api_key']}"},
        timeout=10,
    )
    assert response.status_code == 204, response.text
    assert proc.wait(timeout=20) == 1
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert "clutchcall dev: the dev engine failed: the relay stopped serving" in stderr, stderr
    assert "UDP socket was closed" in stderr, stderr


# -- sessions that never send SETUP ------------------------------------------------------

SILENT_SESSIONS = 500
SETUP_TIMEOUT = 1.0


@ENGINE_BACKEND
async def test_500_sessions_that_never_send_setup_are_closed_at_the_setup_timeout() -> None:
    closed: list[ConnectionLost] = []
    limiter = anyio.Semaphore(20)  # handshakes in flight at once

    with Engine(time_scale=0.05, relay_setup_timeout=SETUP_TIMEOUT) as engine:
        url = engine.relay_url
        assert url is not None

        async def silent_session() -> None:
            async with limiter:
                session = transport.connect(
                    url, cert_sha256=engine.relay_cert_sha256, timeout=20.0, idle_timeout=60.0
                )
                conn = await session.__aenter__()
            try:
                # Never a byte of MoQT: wait for the relay to give up on us.
                with pytest.raises(anyio.BrokenResourceError) as info:
                    await conn.accept_stream()
                assert isinstance(info.value.__cause__, ConnectionLost)
                closed.append(info.value.__cause__)
            finally:
                await session.__aexit__(None, None, None)

        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                for _ in range(SILENT_SESSIONS):
                    tg.start_soon(silent_session)
        assert len(closed) == SILENT_SESSIONS
        assert {(lost.code, lost.reason, lost.by_peer) for lost in closed} == {
            (moqt.SessionErrorCode.CONTROL_MESSAGE_TIMEOUT, "no SETUP in time", True)
        }
        relay_server = engine._relay.server if engine._relay is not None else None
        assert relay_server is not None
        await until(lambda: not relay_server.connections, within=10)
        assert engine.failure is None
