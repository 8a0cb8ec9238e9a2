"""Hostile clients of the dev relay: each one costs the relay bounded memory and
affects nobody else.

The relay runs alone in a process of its own (``relay_process.py``), so that its
memory (VmRSS) is what is measured; the clients run here, over loopback QUIC:

- a subscriber that never grants flow-control credit, while a publisher sends
  16 KB objects 250 times a second: the relay's memory stays within a few MB of
  a run where that subscriber reads; it loses its oldest groups (counted), the
  publisher and a reading subscriber get everything;
- a bridge token with junk after its signature is refused; a SUBSCRIBE the relay
  refuses grants nothing, even when it carried a valid token;
- 20,000 refused SUBSCRIBEs and 2,000 streams left open leave nothing behind;
- an object over the size limit, garbage on the control stream, or requests sent
  without ever reading the answers close only the session that sent them.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from aioquic.quic.configuration import QuicConfiguration
from child_processes import ready_line, reap
from hardening_helpers import until

from clutchcall import moqt, transport
from clutchcall.bridge import AudioSubscription, BridgeAuthError, MoqtClient
from clutchcall.dev.relay import SUBSCRIBER_BACKLOG_AGE, SUBSCRIBER_BACKLOG_BYTES
from clutchcall.moqnet import GROUP_OVERHEAD
from clutchcall.moqt import messages as m
from clutchcall.moqt.data import DEFAULT_MAX_OBJECT_SIZE
from clutchcall.transport import _quic
from clutchcall.transport.client import _ClientSession

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

RELAY_PROCESS = Path(__file__).with_name("relay_process.py")
OBJECT_SIZE = 16 * 1024
OBJECTS_PER_SECOND = 250
STINGY_WINDOW = 64 * 1024
"""Receive credit the stuck subscriber announces (per stream and in total) and
never raises: the relay can hand it almost nothing."""
MB = 1 << 20
READER_LAG = 48
"""Objects (768 KB) the publisher may be ahead of the reading subscriber."""
ONE_BACKEND = pytest.mark.parametrize("anyio_backend", ["asyncio"])
"""For the tests that measure the relay's process: what they measure does not
depend on the clients' event loop, and they take a few seconds each."""


# -- the relay in a process of its own ---------------------------------------------------


@dataclass(frozen=True)
class Call:
    sid: str
    server: str
    caller: str


class RelayProcess:
    """``relay_process.py`` running; ``stats()`` asks it for ``Relay.stats()``."""

    def __init__(self, stderr: IO[bytes]) -> None:
        self._stderr = stderr
        self.proc = subprocess.Popen(
            [sys.executable, str(RELAY_PROCESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        info = json.loads(self._readline(30))
        self.url: str = info["url"]
        self.ca_file: str = info["ca_file"]
        self.calls = [Call(c["sid"], c["server"], c["caller"]) for c in info["calls"]]

    def _readline(self, timeout: float) -> str:
        line = ready_line(self.proc, timeout)
        if line is None:
            raise RuntimeError("the relay process did not answer")
        return line

    def _stats_now(self) -> dict[str, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        stats: dict[str, int] = json.loads(self._readline(10))
        return stats

    async def stats(self) -> dict[str, int]:
        return await anyio.to_thread.run_sync(self._stats_now)

    def log(self) -> str:
        """What the relay logged so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def rss(self) -> int:
        """The relay process's resident memory, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def client(self, token: str, **options: Any) -> MoqtClient:
        return MoqtClient(self.url, token=token, verify=self.ca_file, **options)

    def stop(self) -> None:
        """Stop this relay process (ours, by its pid)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # it exits at the end of its input
        reap(self.proc)


@contextmanager
def relay_process() -> Iterator[RelayProcess]:
    with tempfile.TemporaryFile() as log:
        relay = RelayProcess(log)
        try:
            yield relay
        finally:
            relay.stop()


@pytest.fixture
def relay() -> Iterator[RelayProcess]:
    with relay_process() as running:
        yield running


# -- hand-driven clients -------------------------------------------------------------------


class _StingyClientSession(_ClientSession):
    """A client connection that announces ``window`` bytes of receive credit."""

    window = STINGY_WINDOW

    def _configuration(self) -> QuicConfiguration:
        configuration = super()._configuration()
        configuration.max_data = self.window
        configuration.max_stream_data = self.window
        return configuration


def stingy_connect(url: str, ca_file: str, window: int = STINGY_WINDOW) -> _StingyClientSession:
    session = _StingyClientSession(
        url,
        verify=ca_file,
        cert_sha256=None,
        alpn=None,
        timeout=5,
        idle_timeout=30,
        server_name=None,
        headers=(),
        keepalive=True,
    )
    session.window = window
    return session


class RawSession:
    """A MoQT client session driven by hand over ``conn``: the control stream is
    read only when the test asks, and the relay's data streams are never read."""

    def __init__(self, conn: transport.Connection, token: str) -> None:
        self.conn = conn
        self.session = moqt.Session(
            moqt.Role.CLIENT,
            path="/",
            setup_parameters=(moqt.authorization_token(token.encode()),),
        )
        self.control: transport.Stream | None = None

    async def setup(self) -> None:
        self.control = await self.conn.open_bidi_stream()
        await self.flush()
        await self.next_event(lambda e: isinstance(e, moqt.SetupCompleted))

    async def flush(self) -> None:
        assert self.control is not None
        data = self.session.control_data_to_send()
        if data:
            await self.control.send(data)

    async def read(self) -> list[moqt.Event]:
        """Events from the next piece of the control stream."""
        assert self.control is not None
        events = self.session.receive_control(await self.control.receive())
        await self.flush()  # e.g. a raised request limit
        return events

    async def next_event(self, wanted: Callable[[moqt.Event], bool]) -> moqt.Event:
        with anyio.fail_after(10):
            while True:
                for event in await self.read():
                    if wanted(event):
                        return event

    async def subscribe(self, sid: str, track: str, token: str | None = None) -> moqt.Event:
        """SUBSCRIBE and wait for the answer (SubscribeAccepted or SubscribeRejected)."""
        params = (moqt.authorization_token(token.encode()),) if token else ()
        request_id = self.session.subscribe(moqt.voice_namespace(sid), track, parameters=params)
        await self.flush()
        return await self.next_event(
            lambda e: (
                isinstance(e, moqt.SubscribeAccepted | moqt.SubscribeRejected)
                and e.request_id == request_id
            )
        )


@asynccontextmanager
async def stuck_subscriber(
    relay: RelayProcess, call: Call, window: int = STINGY_WINDOW
) -> AsyncIterator[list[Any]]:
    """A ``caller`` session subscribed to ``downlink`` that never reads the data
    streams it is sent, so never grants them more than its first ``window`` of
    credit; it still acknowledges packets, so the connection stays up. Yields the
    streams it holds."""
    async with stingy_connect(relay.url, relay.ca_file, window) as conn:
        raw = RawSession(conn, call.caller)
        await raw.setup()
        answer = await raw.subscribe(call.sid, "downlink")
        assert isinstance(answer, moqt.SubscribeAccepted)
        held: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def hold() -> None:
                while True:
                    held.append(await conn.accept_stream())  # and never read

            tg.start_soon(hold)
            yield held
            tg.cancel_scope.cancel()


def frame(seq: int, size: int = OBJECT_SIZE) -> bytes:
    return struct.pack(">I", seq) + bytes(size - 4)


class Collector:
    """Every frame a subscription delivers, by sequence number."""

    def __init__(self) -> None:
        self.seqs: set[int] = set()

    async def run(self, subscription: AudioSubscription) -> None:
        async for item in subscription:
            self.seqs.add(struct.unpack(">I", item.data[:4])[0])

    async def more(self, count: int) -> None:
        """Wait until ``count`` more frames than now have been heard."""
        await self.at_least(len(self.seqs) + count)

    async def at_least(self, count: int, within: float = 20) -> None:
        """Wait until ``count`` frames have been heard."""
        await until(lambda: len(self.seqs) >= count, within=within)


# -- a subscriber that never grants credit ---------------------------------------------------


@dataclass
class Run:
    growth: int
    stats: dict[str, int]
    publisher_dropped: int
    heard: int
    #: Warnings that a session is not taking its data.
    warnings: int


async def publish(stuck: bool, objects: int) -> Run:
    """Publish ``objects`` 16 KB frames at 250 a second to a reading subscriber, and
    with ``stuck`` to a second one that never grants credit (the control run has
    only the reading one)."""
    with relay_process() as relay:
        call = relay.calls[0]
        heard = Collector()
        async with (
            relay.client(call.server, queue_frames=objects) as publisher,
            relay.client(call.caller, receive_buffer_frames=objects) as reader,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(heard.run, await reader.subscribe_audio(call.sid, "downlink"))
            async with stuck_subscriber(relay, call) if stuck else nothing():
                publication = await publisher.publish_audio(call.sid, "downlink")
                await publication.wait_subscribed()
                assert (await relay.stats())["subscriptions"] == 1 + stuck
                before = relay.rss()
                for seq in range(objects):
                    # At most 250 a second, and never more than READER_LAG ahead of
                    # the reading subscriber: on a busy machine this process may
                    # not keep up, and then the relay would rightly drop its oldest
                    # groups too.
                    await publication.write(frame(seq))
                    await anyio.sleep(1 / OBJECTS_PER_SECOND)
                    await heard.at_least(seq + 1 - READER_LAG)
                await heard.at_least(objects)
                await anyio.sleep(0.3)
                after = relay.rss()
                stats = await relay.stats()
            tg.cancel_scope.cancel()
        warnings = relay.log().count("is not taking its data")
        return Run(after - before, stats, publisher.stats.dropped, len(heard.seqs), warnings)


@asynccontextmanager
async def nothing() -> AsyncIterator[list[Any]]:
    yield []


@pytest.mark.timeout(90)
@ONE_BACKEND
async def test_a_subscriber_that_never_grants_credit_costs_the_relay_a_bounded_backlog() -> None:
    objects = 500  # two seconds of 16 KB at 250 a second: 8 MB
    control = await publish(stuck=False, objects=objects)
    stuck = await publish(stuck=True, objects=objects)

    # The relay's memory grew no more than a few MB over the control run's (it grew
    # by what the stuck subscriber was sent, about 8 MB here, before the bound).
    assert stuck.growth - control.growth < 5 * MB, (control, stuck)
    assert stuck.stats["backlog_bytes"] <= SUBSCRIBER_BACKLOG_BYTES + OBJECT_SIZE, stuck.stats
    # The publisher and the reading subscriber got everything in both runs.
    assert control.publisher_dropped == stuck.publisher_dropped == 0
    assert control.heard == stuck.heard == objects
    assert control.stats["groups_dropped"] == 0
    # The stuck subscriber was sent a few groups, then lost its oldest ones as they
    # piled up, counted; it is still connected (it just does not read).
    assert stuck.stats["groups_dropped"] >= objects // 2, stuck.stats
    assert stuck.stats["sessions_dropping"] == 1
    assert (control.warnings, stuck.warnings) == (0, 1)  # logged once
    assert stuck.stats["sessions"] == 3


@ONE_BACKEND
async def test_a_stuck_subscriber_loses_the_groups_older_than_the_age_limit(
    relay: RelayProcess,
) -> None:
    call = relay.calls[0]
    frames = 150  # 3 s of 20 ms audio frames: far below the byte limit
    async with (
        relay.client(call.server) as publisher,
        stuck_subscriber(relay, call, window=2048),
    ):
        publication = await publisher.publish_audio(call.sid, "downlink")
        await publication.wait_subscribed()
        for seq in range(frames):
            await publication.write(frame(seq, 80))
            await anyio.sleep(0.02)
        stats = await relay.stats()
    # What it was sent more than SUBSCRIBER_BACKLOG_AGE ago (but the first few,
    # which fitted its window) was dropped; at most that age of frames is kept.
    assert stats["groups_dropped"] >= frames // 10, stats
    assert stats["sessions_dropping"] == 1
    per_group = 80 + 64 + GROUP_OVERHEAD  # frame, headers, stream
    kept = SUBSCRIBER_BACKLOG_AGE / 0.02 + 1
    assert stats["backlog_bytes"] <= kept * per_group, stats


# -- tokens and grants -----------------------------------------------------------------------


def tampered(token: str) -> list[str]:
    """``token`` with junk after its signature, and with the signature's last
    character changed only in the bits base64 leaves unused."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    variant = token[:-1] + alphabet[last ^ 0b11]
    return [token + junk for junk in ("!!", "=", "==", "\n", " ", "$x")] + [variant]


async def test_a_bridge_token_with_junk_after_its_signature_is_refused(
    relay: RelayProcess,
) -> None:
    call = relay.calls[0]
    for token in tampered(call.server):
        with anyio.fail_after(10), pytest.raises(BridgeAuthError) as refused:
            async with relay.client(token, reconnect=False):
                pass
        assert refused.value.code == moqt.SessionErrorCode.UNAUTHORIZED, (token, refused.value)
    # The genuine token still works.
    async with relay.client(call.server, reconnect=False) as client:
        await client.subscribe_audio(call.sid, "uplink")


async def test_a_refused_subscribe_grants_nothing(relay: RelayProcess) -> None:
    mine, other = relay.calls
    async with relay.client(mine.server, reconnect=False) as client:
        # A valid token of another call, on a track its role may not subscribe.
        with pytest.raises(BridgeAuthError):
            await client.subscribe_audio(other.sid, "downlink", token=other.server)
        # So the session holds no grant for that call: this is refused too.
        with pytest.raises(BridgeAuthError):
            await client.subscribe_audio(other.sid, "uplink")
        assert (await relay.stats())["grants"] == 1
        # While its own call, and the other one with the token on a SUBSCRIBE that
        # is accepted, are served.
        await client.subscribe_audio(mine.sid, "uplink")
        await client.subscribe_audio(other.sid, "uplink", token=other.server)
        assert (await relay.stats())["grants"] == 2


# -- floods that must leave nothing behind ----------------------------------------------------


async def refused_subscribes(raw: RawSession, count: int, other: Call) -> int:
    """Send ``count`` SUBSCRIBEs the relay refuses, as fast as its request limit
    allows; returns how many were refused."""
    session = raw.session
    other_token = (moqt.authorization_token(other.server.encode()),)
    sent = refused = 0
    wrong_role: int | None = None
    with anyio.fail_after(60):
        while refused < count:
            while sent < count:
                n = sent
                try:
                    if wrong_role is None:  # a valid token of another call, wrong role
                        wrong_role = session.subscribe(
                            moqt.voice_namespace(other.sid), "downlink", parameters=other_token
                        )
                    elif n % 2:  # a valid token, on a namespace it does not cover
                        namespace = moqt.voice_namespace(f"CA{n:032x}")
                        session.subscribe(namespace, "uplink", parameters=other_token)
                    elif n % 3:  # a call this session holds no grant for
                        session.subscribe(moqt.voice_namespace(f"CA{n:032x}"), "uplink")
                    else:  # no such track
                        session.subscribe(moqt.voice_namespace(other.sid), f"x{n}")
                except moqt.RequestsBlockedError:
                    break
                sent += 1
            await raw.flush()
            for event in await raw.read():
                assert not isinstance(event, moqt.SubscribeAccepted), event
                if isinstance(event, moqt.SubscribeRejected):
                    refused += 1
                    if event.request_id == wrong_role:
                        wrong_role = None
    return refused


async def stats_until(
    relay: RelayProcess, condition: Callable[[dict[str, int]], bool], within: float = 10
) -> None:
    with anyio.fail_after(within):
        while not condition(await relay.stats()):  # noqa: ASYNC110
            await anyio.sleep(0.05)


@ONE_BACKEND
async def test_20000_refused_subscribes_leave_nothing_behind(relay: RelayProcess) -> None:
    mine, other = relay.calls
    async with transport.connect(relay.url, verify=relay.ca_file, timeout=5) as conn:
        raw = RawSession(conn, mine.server)
        await raw.setup()
        assert await refused_subscribes(raw, 2_000, other) == 2_000  # warm up
        stats, rss = await relay.stats(), relay.rss()
        assert await refused_subscribes(raw, 20_000, other) == 20_000
        assert await relay.stats() == stats
        assert relay.rss() - rss < 2 * MB
        assert stats["grants"] == 1 and stats["tracks"] == 0


async def streams_round(conn: transport.Connection, relay: RelayProcess, count: int) -> None:
    """Open ``count`` streams at once: half carry one byte of a group header and are
    then reset, half a whole group of a track nobody subscribed to."""
    group = moqt.SubgroupHeader(track_alias=777, group_id=1, publisher_priority=128).encode()
    group += bytes([0, 5]) + b"hello"  # object 0, 5 bytes
    held = []
    for n in range(count):
        stream = conn.open_uni_stream_nowait()
        if n % 2:
            stream.send_nowait(group, eof=True)
        else:
            stream.send_nowait(group[:1])
            held.append(stream)
    await stats_until(relay, lambda stats: stats["peer_streams"] >= len(held))
    for stream in held:
        stream.reset(0)
    await stats_until(relay, lambda stats: stats["peer_streams"] == 0)


@ONE_BACKEND
async def test_2000_streams_leave_nothing_behind(
    relay: RelayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This client plays a peer that opens 2000 streams at once, while the resets of
    # the round before may still await their ACKs; the client's own bound on
    # tracked streams is not under test (the relay, in its own process, keeps it).
    monkeypatch.setattr(_quic, "MAX_LIVE_STREAMS", 4 * _quic.UNI_STREAM_WINDOW)
    call = relay.calls[0]
    async with transport.connect(relay.url, verify=relay.ca_file, timeout=5) as conn:
        raw = RawSession(conn, call.server)
        await raw.setup()
        await streams_round(conn, relay, 2_000)  # warm up
        stats, rss = await relay.stats(), relay.rss()
        for _ in range(2):
            await streams_round(conn, relay, 2_000)
        assert await relay.stats() == stats
        assert relay.rss() - rss < 2 * MB
        # The session is still up and served.
        answer = await raw.subscribe(call.sid, "uplink")
        assert isinstance(answer, moqt.SubscribeAccepted)


# -- what closes one session and nothing else ------------------------------------------------


@asynccontextmanager
async def flowing(relay: RelayProcess, call: Call) -> AsyncIterator[Collector]:
    """A publisher sending a small frame every 20 ms on ``call``'s downlink, and a
    subscriber collecting them."""
    heard = Collector()
    async with (
        relay.client(call.server) as publisher,
        relay.client(call.caller) as subscriber,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(heard.run, await subscriber.subscribe_audio(call.sid, "downlink"))
        publication = await publisher.publish_audio(call.sid, "downlink")

        async def talk() -> None:
            seq = 0
            while True:
                await publication.write(frame(seq, 80))
                seq += 1
                await anyio.sleep(0.02)

        tg.start_soon(talk)
        await until(lambda: len(heard.seqs) >= 5)
        yield heard
        assert publisher.stats.reconnects == subscriber.stats.reconnects == 0
        tg.cancel_scope.cancel()


async def test_an_object_over_the_size_limit_closes_only_its_sender(relay: RelayProcess) -> None:
    first, second = relay.calls
    async with flowing(relay, second) as heard:
        heard_first = Collector()
        async with (
            relay.client(first.caller) as subscriber,
            relay.client(first.server, reconnect=False) as publisher,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(heard_first.run, await subscriber.subscribe_audio(first.sid, "downlink"))
            publication = await publisher.publish_audio(first.sid, "downlink")
            await publication.write(frame(0, 80))
            await until(lambda: 0 in heard_first.seqs)
            sessions = (await relay.stats())["sessions"]
            await publication.write(frame(1, DEFAULT_MAX_OBJECT_SIZE + 1))
            await until(lambda: publisher.ended, within=10)
            await stats_until(relay, lambda stats: stats["sessions"] == sessions - 1)
            # The other sessions did not notice: the second call flows on, and the
            # first call's subscriber hears a new publisher.
            await heard.more(10)
            async with relay.client(first.server) as again:
                replacement = await again.publish_audio(first.sid, "downlink")
                await replacement.write(frame(2, 80))
                await until(lambda: 2 in heard_first.seqs)
            assert 1 not in heard_first.seqs
            assert subscriber.stats.reconnects == 0
            tg.cancel_scope.cancel()


GARBAGE = [
    bytes([0x3F, 0, 0]),  # an unknown message type
    bytes([0x03, 0, 2, 0xFF, 0xFF]),  # a SUBSCRIBE whose body is cut short
    bytes([0x20, 0, 1, 0]),  # a second CLIENT_SETUP
    bytes([0x0A, 0, 3, 1, 2, 3]),  # UNSUBSCRIBE with junk after its request ID
]


async def test_garbage_control_messages_close_only_that_session(relay: RelayProcess) -> None:
    call = relay.calls[0]
    async with flowing(relay, call) as heard:
        sessions = (await relay.stats())["sessions"]
        for garbage in GARBAGE:
            async with transport.connect(relay.url, verify=relay.ca_file, timeout=5) as conn:
                raw = RawSession(conn, call.caller)
                await raw.setup()
                assert raw.control is not None
                await raw.control.send(garbage)
                with anyio.fail_after(10):
                    with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
                        while True:
                            await raw.control.receive()
                assert conn.close_reason is not None
                assert conn.close_reason.code == moqt.SessionErrorCode.PROTOCOL_VIOLATION
            await heard.more(5)
        await stats_until(relay, lambda stats: stats["sessions"] == sessions)


@ONE_BACKEND
async def test_a_session_that_never_reads_its_control_stream_is_closed(
    relay: RelayProcess,
) -> None:
    first, second = relay.calls
    async with flowing(relay, second) as heard:
        rss = relay.rss()
        async with stingy_connect(relay.url, relay.ca_file) as conn:
            raw = RawSession(conn, first.caller)
            await raw.setup()
            assert raw.control is not None
            # SUBSCRIBEs the relay refuses, sent as fast as it takes them, without
            # ever reading an answer (nor the raised request limits: the IDs just
            # follow the ones before, which the relay allows as it answers).
            sent = 0
            with anyio.fail_after(30):
                while conn.close_reason is None and sent < 100_000:
                    batch = b"".join(
                        m.encode_message(
                            m.Subscribe(2 * n, moqt.voice_namespace(f"CA{n:032x}"), b"uplink")
                        )
                        for n in range(sent, sent + 500)
                    )
                    try:
                        await raw.control.send(batch)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        break
                    sent += 500
            await until(lambda: conn.close_reason is not None, within=10)
            assert conn.close_reason is not None
            assert conn.close_reason.code == moqt.SessionErrorCode.TOO_MANY_REQUESTS, sent
        await heard.more(5)
        # What it cost the relay: the requests in flight, the answers waiting.
        assert relay.rss() - rss < 8 * MB
