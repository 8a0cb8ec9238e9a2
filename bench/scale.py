"""How many concurrent bidirectional 20 ms bridges one process sustains.

The dev engine runs in a subprocess (``python -m clutchcall dev``); this process
holds the bridges, all on one asyncio loop (one core). Each bridge is on its own
call to the echo number: every 20 ms it publishes an 80-byte frame on downlink,
the simulated callee sends it back on uplink, and ``on_uplink`` times it. The
figure is the round trip, so "one-way p99 < 20 ms" is checked conservatively as
round-trip p99 < 20 ms. A step passes with that and no drops (every frame back,
``stats.dropped == 0``). Steps grow until one fails or the cap is reached.

Memory per open bridge: this process's RSS growth while the bridges were opened,
divided by their number (the calls' control-plane objects included).
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import anyio

from clutchcall import AsyncAudioBridge, AsyncVoice, CallStatus

from ._report import percentile, table, write
from .audio_latency import ECHO, FROM, DevEngineProcess, dev_engine_process

STEPS = (25, 50, 100, 200, 300, 400)
STEP_SECONDS = 3.0
FRAME_INTERVAL = 0.020
LIMIT_MS = 20.0
GOAL_BRIDGES = 200
GOAL_MIB_PER_BRIDGE = 1.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Send times by (bridge, seq) and the round trips measured in a step."""

    def __init__(self) -> None:
        self.sent: dict[tuple[int, int], float] = {}
        self.rtts: list[float] = []
        self.measuring = False

    def callback(self, index: int) -> Any:
        def on_uplink(frame: bytes, timestamp_us: int) -> None:
            now = time.perf_counter()
            started = self.sent.pop(struct.unpack(">II", frame[:8]), None)
            if started is not None and self.measuring:
                self.rtts.append(now - started)

        return on_uplink


async def _open(voice: AsyncVoice, meter: Meter, index: int) -> AsyncAudioBridge:
    call = await voice.calls.originate(to=ECHO, from_=FROM, trunk_id="trunk_scale")
    with anyio.fail_after(20):
        while (await voice.calls.get(call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return await voice.audio_bridge.attach(call.sid, on_uplink=meter.callback(index))


async def _talk(bridge: AsyncAudioBridge, index: int, meter: Meter, seconds: float) -> int:
    """Publish every 20 ms (phase spread by index) for ``seconds``; frames sent."""
    start = anyio.current_time() + (index % 20) / 1000
    sent = 0
    for seq in range(int(seconds / FRAME_INTERVAL)):
        await anyio.sleep_until(start + seq * FRAME_INTERVAL)
        meter.sent[(index, seq)] = time.perf_counter()
        await bridge.publish_downlink(struct.pack(">II", index, seq) + bytes(72))
        sent += 1
    return sent


async def _step(bridges: list[AsyncAudioBridge], meter: Meter, engine_pid: int) -> dict[str, Any]:
    # Warm up (the callees join, QUIC windows open), then measure.
    async with anyio.create_task_group() as tg:
        for index, bridge in enumerate(bridges):
            tg.start_soon(_talk, bridge, index, meter, 0.5)
    await anyio.sleep(0.3)
    meter.sent.clear()
    meter.rtts.clear()
    dropped_before = sum(b.stats.dropped for b in bridges)
    meter.measuring = True
    cpu_self, cpu_engine, wall = cpu_seconds(os.getpid()), cpu_seconds(engine_pid), time.time()
    counts: list[int] = []

    async def talk(bridge: AsyncAudioBridge, index: int) -> None:
        counts.append(await _talk(bridge, index, meter, STEP_SECONDS))

    async with anyio.create_task_group() as tg:
        for index, bridge in enumerate(bridges):
            tg.start_soon(talk, bridge, index)
    with anyio.move_on_after(1.0):
        while len(meter.rtts) < sum(counts):  # noqa: ASYNC110
            await anyio.sleep(0.01)
    elapsed = time.time() - wall
    meter.measuring = False
    sent, back = sum(counts), len(meter.rtts)
    dropped = sum(b.stats.dropped for b in bridges) - dropped_before
    p50 = percentile(meter.rtts, 50) * 1e3 if meter.rtts else float("inf")
    p99 = percentile(meter.rtts, 99) * 1e3 if meter.rtts else float("inf")
    return {
        "bridges": len(bridges),
        "sent": sent,
        "back": back,
        "dropped": dropped,
        "rtt_p50_ms": p50,
        "rtt_p99_ms": p99,
        "cpu_self": (cpu_seconds(os.getpid()) - cpu_self) / elapsed,
        "cpu_engine": (cpu_seconds(engine_pid) - cpu_engine) / elapsed,
        "ok": p99 < LIMIT_MS and back == sent and dropped == 0,
    }


async def _scale(dev: DevEngineProcess, steps: tuple[int, ...]) -> dict[str, Any]:
    meter = Meter()
    bridges: list[AsyncAudioBridge] = []
    results: list[dict[str, Any]] = []
    async with dev.voice(timeout=30) as voice:
        rss_before = rss_bytes()
        try:
            for target in steps:
                with anyio.fail_after(120):
                    while len(bridges) < target:
                        batch = range(len(bridges), min(target, len(bridges) + 25))
                        opened: list[AsyncAudioBridge] = []

                        async def open_one(index: int, opened: list[AsyncAudioBridge]) -> None:
                            opened.append(await _open(voice, meter, index))

                        async with anyio.create_task_group() as tg:
                            for index in batch:
                                tg.start_soon(open_one, index, opened)
                        bridges.extend(opened)
                rss_per_bridge = (rss_bytes() - rss_before) / len(bridges)
                result = await _step(bridges, meter, dev.proc.pid)
                result["rss_per_bridge_mib"] = rss_per_bridge / 2**20
                results.append(result)
                print(
                    f"  {result['bridges']:4d} bridges: rtt p50 {result['rtt_p50_ms']:.2f} ms, "
                    f"p99 {result['rtt_p99_ms']:.2f} ms, back {result['back']}/{result['sent']}, "
                    f"dropped {result['dropped']}, cpu {result['cpu_self']:.0%} here / "
                    f"{result['cpu_engine']:.0%} engine",
                    flush=True,
                )
                if not result["ok"]:
                    break
        finally:
            with anyio.CancelScope(shield=True):
                for bridge in bridges:
                    await bridge.aclose()
    return {"steps": results}


def run(steps: tuple[int, ...] = STEPS) -> dict[str, Any]:
    with dev_engine_process(time_scale=0.05) as dev:
        data = anyio.run(_scale, dev, steps)
    passed = [s for s in data["steps"] if s["ok"]]
    best = max((s["bridges"] for s in passed), default=0)
    largest = data["steps"][-1] if data["steps"] else None
    mib = largest["rss_per_bridge_mib"] if largest else float("nan")
    rows = [
        [
            s["bridges"],
            s["rtt_p50_ms"],
            s["rtt_p99_ms"],
            f"{s['back']}/{s['sent']}",
            s["dropped"],
            f"{s['cpu_self']:.0%}",
            f"{s['cpu_engine']:.0%}",
            s["rss_per_bridge_mib"],
            "yes" if s["ok"] else "NO",
        ]
        for s in data["steps"]
    ]
    print(
        table(
            f"scale: bidirectional 20 ms bridges in one process (round trip ms; pass: p99 < "
            f"{LIMIT_MS:g} ms, none lost or dropped); sustained {best} (goal >= {GOAL_BRIDGES}), "
            f"{mib:.3f} MiB per bridge (goal <= {GOAL_MIB_PER_BRIDGE})",
            [
                "bridges",
                "p50",
                "p99",
                "back",
                "dropped",
                "cpu here",
                "cpu engine",
                "MiB/bridge",
                "ok",
            ],
            rows,
        )
    )
    path = write(
        "scale",
        {
            "goal": {"bridges": GOAL_BRIDGES, "mib_per_bridge": GOAL_MIB_PER_BRIDGE},
            "sustained_bridges": best,
            "mib_per_bridge": mib,
            **data,
        },
    )
    print(f"  -> {path}\n")
    return {"sustained_bridges": best, "mib_per_bridge": mib, **data}
