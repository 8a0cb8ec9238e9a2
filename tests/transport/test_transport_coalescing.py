"""Transmit passes: data written in quick succession shares them (and so shares
packets), while a lone write after a quiet spell goes out at once.

The pass counts are read from the connection's driver (its private counter): the
policy under test is how many passes run, which no public figure shows.
"""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest
from transport_helpers import KINDS, client, server

from clutchcall.transport import Connection
from clutchcall.transport._driver import TRANSMIT_BURST, TRANSMIT_COALESCE

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

FRAMES = 200


def _passes(conn: Connection) -> int:
    return conn._driver._transmit_count


@pytest.mark.parametrize("kind", KINDS)
async def test_frames_written_in_quick_succession_share_transmit_passes(kind: str) -> None:
    received: list[bytes] = []
    all_in = anyio.Event()

    def on_whole(stream_id: int, data: bytes) -> None:
        received.append(data)
        if len(received) == FRAMES:
            all_in.set()

    async def handler(conn: Connection) -> None:
        conn.set_stream_callbacks(whole=on_whole)
        await all_in.wait()

    async with server(handler) as srv, client(kind, srv.port) as conn:
        await anyio.sleep(0.05)  # past the handshake's own traffic
        before = _passes(conn)
        started = time.monotonic()
        for index in range(FRAMES):
            conn.send_uni_stream_nowait(b"frame %d" % index)
            # The driver could run between any two writes.
            await anyio.lowlevel.checkpoint()
        elapsed = time.monotonic() - started
        passes = _passes(conn) - before
        with anyio.fail_after(10):
            await all_in.wait()
    # At most TRANSMIT_BURST passes for written data per window, plus one for the
    # acknowledgements received and one for a timer, per window; one pass per
    # write (FRAMES) without coalescing.
    windows = elapsed / TRANSMIT_COALESCE + 1
    assert passes <= (TRANSMIT_BURST + 2) * windows + 5, (passes, elapsed)
    assert sorted(received) == sorted(b"frame %d" % index for index in range(FRAMES))


@pytest.mark.parametrize("kind", KINDS)
async def test_a_lone_write_after_a_quiet_spell_is_not_held_back(kind: str) -> None:
    arrived = anyio.Event()

    async def handler(conn: Connection) -> None:
        conn.set_stream_callbacks(whole=lambda stream_id, data: arrived.set())
        await arrived.wait()

    async with server(handler) as srv, client(kind, srv.port) as conn:
        await anyio.sleep(0.05)
        before = _passes(conn)
        conn.send_uni_stream_nowait(b"hello")
        # The pass runs at the next turn of the event loop, not a window later.
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        assert _passes(conn) > before
        with anyio.fail_after(10):
            await arrived.wait()
