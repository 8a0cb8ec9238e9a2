"""The far end of the scale benchmark's calls, in a process of its own.

``python -m bench._far_end URL``: one moq-rs client (``moq``, Rust, from PyPI) on
the relay at ``URL`` plays the caller side of many calls, so that the far end
costs little next to the bridges being measured. Commands arrive on stdin, one
JSON object per line; each is answered with one JSON line on stdout:

- ``{"publish": [sid, ...]}``: announce ``voice/<sid>`` with an ``uplink`` track
  (before the bridges subscribe to it: moq-rs only routes a SUBSCRIBE to an
  announced track).
- ``{"subscribe": [sid, ...]}``: subscribe to each call's ``downlink``.
- ``{"talk": seconds, "interval": s}``: write a frame on every uplink each
  interval for ``seconds`` (phases spread over the interval) while timing the
  downlink frames; answers with the one-way delays of the downlink frames in ms.
- ``{"quit": true}``.

Frames carry their send time (``time.perf_counter_ns``: CLOCK_MONOTONIC, one clock
for every process of the machine), so the receiving process can time them.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from typing import Any

import moq

FRAME = struct.Struct(">QII")
FRAME_BYTES = 80


def frame(index: int, seq: int, due: float | None = None) -> bytes:
    """Frame ``seq`` of bridge ``index``, stamped with the time it was due (seconds
    on ``time.perf_counter``'s clock), or with now."""
    stamp = time.perf_counter_ns() if due is None else int(due * 1e9)
    return FRAME.pack(stamp, index, seq) + bytes(FRAME_BYTES - FRAME.size)


def delay_ms(data: bytes) -> float:
    """How long ago (ms) the frame was made, by the clock all local processes share."""
    sent: int = FRAME.unpack_from(data)[0]
    return (time.perf_counter_ns() - sent) / 1e6


async def talk(tracks: list[Any], seconds: float, interval: float) -> int:
    """Write a frame on every track each interval, phases spread over 20 slots of the
    interval (one ticking task: the far end should cost little); returns the count."""
    loop = asyncio.get_running_loop()
    slots = [tracks[slot::20] for slot in range(20)]
    start = loop.time()
    sent = 0
    for tick in range(int(seconds / interval) * 20):
        await asyncio.sleep(max(0.0, start + tick * interval / 20 - loop.time()))
        seq = tick // 20
        for offset, track in enumerate(slots[tick % 20]):
            track.write_frame(frame(tick % 20 + 20 * offset, seq))
            sent += 1
    return sent


async def read(track: Any, delays: list[float]) -> None:
    # In arrival order: read_frame() follows group order and skips a group that
    # arrives after a later one (each frame is a group on its own QUIC stream).
    while (group := await track.recv_group()) is not None:
        received = await group.read_frame()
        if received is not None:
            delays.append(delay_ms(bytes(received.payload)))


async def main(url: str) -> None:
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    uplinks: dict[str, Any] = {}
    keep: list[Any] = []
    readers: list[asyncio.Task[None]] = []
    publish, consume = moq.OriginProducer(), moq.OriginProducer()
    async with moq.Client(url, tls_verify=False, publish=publish, subscribe=consume) as client:

        def answer(data: dict[str, Any]) -> None:
            print(json.dumps(data), flush=True)

        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = json.loads(line)
            if "publish" in command:
                for sid in command["publish"]:
                    broadcast = client.create_broadcast(f"voice/{sid}")
                    uplinks[sid] = broadcast.publish_track("uplink")
                    broadcast.announce()
                    keep.append(broadcast)
                answer({"published": len(uplinks)})
            elif "subscribe" in command:
                for sid in command["subscribe"]:
                    source = await client.request_broadcast(f"voice/{sid}")
                    track = await source.subscribe_track("downlink")
                    keep.append(source)
                    readers.append(asyncio.create_task(read(track, delays)))
                answer({"subscribed": len(readers)})
            elif "talk" in command:
                delays.clear()
                sent = await talk(list(uplinks.values()), command["talk"], command["interval"])
                await asyncio.sleep(0.5)  # the other side's last frames
                answer({"sent": sent, "received": len(delays), "delays_ms": delays, "dropped": 0})
            elif "quit" in command:
                break
        for task in readers:
            task.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
