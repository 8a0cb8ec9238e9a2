"""Garbage on the relay's port (raw QUIC and WebTransport listeners) never takes it down.

While a call's audio flows, the relay is fed random UDP datagrams, fake QUIC
Initials, and real QUIC / WebTransport sessions that send junk on the control
stream, on data streams and in datagrams. The relay closes the offending
sessions; the call keeps flowing and a new call still gets its audio.
"""

from __future__ import annotations

import contextlib
import random
import struct

import anyio
import pytest
from bridge_fixtures import own_engine_fixture  # noqa: F401
from bridge_helpers import answered_call, seq_of, until

from clutchcall import transport
from clutchcall.dev import Engine

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def junk(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def fake_initial(rng: random.Random) -> bytes:
    """A long-header QUIC v1 Initial with random connection ids and a random body."""
    dcid, scid = junk(rng, 8), junk(rng, 8)
    header = bytes([0xC0 | rng.getrandbits(2)]) + struct.pack(">I", 1)
    header += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    return header + junk(rng, 1200 - len(header))


async def spray_datagrams(port: int, rng: random.Random, count: int) -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        for n in range(count):
            if n % 3 == 0:
                payload = fake_initial(rng)
            else:
                payload = junk(rng, rng.choice([0, 1, 5, 40, 300, 1350]))
            await sock.sendto(payload, "127.0.0.1", port)
            if n % 50 == 0:
                await anyio.sleep(0.01)


async def junk_session(url: str, engine: Engine, rng: random.Random) -> bool:
    """Open a real session and misbehave; True if the relay closed it on us."""
    try:
        async with transport.connect(url, verify=engine.relay_ca_file or False, timeout=5) as conn:
            control = await conn.open_bidi_stream()
            await control.send(junk(rng, rng.choice([3, 64, 2000])))
            for _ in range(3):
                uni = await conn.open_uni_stream()
                await uni.send(junk(rng, rng.choice([1, 30, 500])))
                await uni.send_eof()
            for _ in range(3):
                with contextlib.suppress(ValueError, transport.TransportError):
                    conn.send_datagram(junk(rng, rng.choice([1, 20, 200])))
            with anyio.move_on_after(3):
                while True:
                    await control.receive()
    except (anyio.BrokenResourceError, anyio.EndOfStream, transport.TransportError):
        return True
    return False


async def test_garbage_never_takes_the_relay_down(own_engine: Engine) -> None:
    engine = own_engine
    port = engine.relay_port
    heard: list[int] = []
    rng = random.Random(20240605)
    async with engine.async_voice() as voice:
        sid = await answered_call(voice)
        with anyio.fail_after(45):
            async with await voice.audio_bridge.attach(
                sid, on_uplink=lambda f, ts: heard.append(seq_of(f))
            ) as bridge:
                await until(lambda: len(heard) >= 5)
                closed = []
                async with anyio.create_task_group() as tg:
                    tg.start_soon(spray_datagrams, port, rng, 600)
                    for n in range(6):
                        url = engine.relay_url if n % 2 else engine.relay_webtransport_url
                        assert url is not None
                        closed.append(await junk_session(url, engine, rng))
                # Sessions speaking garbage were closed by the relay (not left hanging).
                assert sum(closed) >= 4, closed
                count = len(heard)
                await until(lambda: len(heard) >= count + 10)
                assert bridge.stats.reconnects == 0

        # The relay still serves new calls after all that.
        sid2 = await answered_call(voice)
        heard2: list[int] = []
        with anyio.fail_after(15):
            async with await voice.audio_bridge.attach(
                sid2, on_uplink=lambda f, ts: heard2.append(seq_of(f))
            ):
                await until(lambda: len(heard2) >= 5)
    assert heard == sorted(heard)
