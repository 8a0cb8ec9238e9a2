"""Shared helpers for the hardening tests (plain functions and a round-trip meter)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from clutchcall import AsyncAudioBridge, AsyncVoice, CallStatus

ECHO = "+15005550004"
FROM = "+15558675309"


async def answered_call(voice: AsyncVoice, to: str = ECHO) -> str:
    call = await voice.calls.originate(to=to, from_=FROM, trunk_id="trunk_main")
    with anyio.fail_after(10):
        while (await voice.calls.get(call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return call.sid


async def until(condition: Callable[[], Any], within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def free_port(kind: int) -> int:
    """A loopback port that was free a moment ago (``socket.SOCK_STREAM`` / ``SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_sockets() -> int:
    """Sockets this process holds."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def thread_names() -> list[str]:
    """Threads alive, but the event loop's own pools: anyio's worker threads (the
    tests' ``to_thread`` calls) and asyncio's default executor (DNS lookups), which
    live as long as the loop."""
    return sorted(
        t.name
        for t in threading.enumerate()
        if t.name != "AnyIO worker thread" and not t.name.startswith("asyncio_")
    )


class Echoes:
    """Numbered downlink frames and the time each one took to come back on uplink."""

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.rtt: dict[int, float] = {}
        #: The number :meth:`talk_for` gives its next frame.
        self.next_seq = 0

    @staticmethod
    def frame(seq: int) -> bytes:
        return struct.pack(">4sI", b"CChd", seq) + bytes(72)

    def on_uplink(self, frame: bytes, timestamp_us: int) -> None:
        if frame[:4] != b"CChd":
            return
        seq = struct.unpack(">I", frame[4:8])[0]
        started = self.sent.get(seq)
        if started is not None and seq not in self.rtt:
            self.rtt[seq] = time.monotonic() - started

    def mark(self, seq: int) -> bytes:
        self.sent[seq] = time.monotonic()
        return self.frame(seq)

    def back_since(self, seq: int) -> int:
        return sum(1 for s in self.rtt if s >= seq)

    async def talk_for(
        self, bridge: AsyncAudioBridge, seconds: float, errors: list[BaseException] | None = None
    ) -> None:
        """Publish a numbered frame every 20 ms for ``seconds``. With ``errors``, what
        publishing raises (what user code would see) is collected there instead."""
        with anyio.move_on_after(seconds):
            while True:
                try:
                    await bridge.publish_downlink(self.mark(self.next_seq))
                except Exception as exc:
                    if errors is None:
                        raise
                    errors.append(exc)
                self.next_seq += 1
                await anyio.sleep(0.02)


@asynccontextmanager
async def echo_bridge(
    voice: AsyncVoice, echoes: Echoes, within: float = 40
) -> AsyncIterator[AsyncAudioBridge]:
    """A bridge on a new answered call to the echo callee, its uplink feeding
    ``echoes``; the block must end within ``within`` seconds."""
    sid = await answered_call(voice)
    with anyio.fail_after(within):
        async with await voice.audio_bridge.attach(sid, on_uplink=echoes.on_uplink) as bridge:
            yield bridge
