"""How many concurrent bidirectional 20 ms bridges one process (one core) sustains.

**The SDK alone** (:mod:`bench.scale_sdk`, first): this process holds both ends
of every call, pinned to one core, with the moq-rs relay alone on the other; it
reports per step the one-way delays both ways, every frame accounted for, the
CPU of this process and of the relay per frame, and the machine's load.

**SDK capacity with a far end**. This process, pinned to one core, holds N
server-side :class:`~clutchcall.AsyncAudioBridge` s (sharing one relay connection,
the default). The relay is moq-rs (Rust, a subprocess); the calls' far ends are
one moq-rs client (Rust, from PyPI) in another subprocess (``bench/_far_end.py``).
On a two-core machine the relay and the far end share the other core, and the far
end alone costs about half of it, so they can run out before this process does.
Every 20 ms each bridge publishes a downlink frame and
its far end an uplink frame; every frame carries its send time on the machine's
monotonic clock, so each side times the other's frames one way. A step passes
when both directions have one-way p99 < 20 ms, every frame arrived and nothing
was dropped; steps grow until one fails or the last is reached. The dev engine
(a subprocess) is only the control plane there: it mints the bridge tokens.

**Dev engine capacity** (for reference). The whole call runs in the dev engine
(a subprocess): each bridge here is on its own call to the echo number, whose
simulated callee sends every downlink frame back; the figure is the round trip.
That engine is one Python process carrying the relay and every callee (four
QUIC hops per echoed frame), so it saturates long before the SDK does.

Memory per open bridge: this process's RSS growth while the bridges were opened,
divided by their number (the calls' control-plane objects included).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio

from clutchcall import AsyncAudioBridge, AsyncVoice, CallStatus

from . import _far_end, scale_sdk
from ._report import percentile, table, write
from ._system import CoreSplit, core_busy, core_load, cpu_seconds, rss_bytes
from .audio_latency import (
    ECHO,
    FROM,
    NO_ANSWER,
    DevEngineProcess,
    _stop,
    dev_engine_process,
    moqrs_process,
)

STEPS = (25, 50, 75, 100, 125, 150, 200, 300, 400)
DEV_ENGINE_STEPS = (10, 20, 30, 40, 60, 80)
STEP_SECONDS = 3.0
FRAME_INTERVAL = 0.020
LIMIT_MS = 20.0
GOAL_BRIDGES = 200
GOAL_MIB_PER_BRIDGE = 1.0
LAG_PROBE = 0.005


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

    def frame(self, index: int, seq: int, due: float) -> bytes:
        """Frame ``seq`` of bridge ``index``, the time it was due noted (the round
        trip counts from then, so a process that falls behind the 20 ms pace
        shows it as latency)."""
        self.sent[(index, seq)] = due
        return struct.pack(">II", index, seq) + bytes(72)


async def _open(voice: AsyncVoice, meter: Meter, index: int) -> AsyncAudioBridge:
    call = await voice.calls.originate(to=ECHO, from_=FROM, trunk_id="trunk_scale")
    with anyio.fail_after(20):
        while (await voice.calls.get(call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return await voice.audio_bridge.attach(call.sid, on_uplink=meter.callback(index))


async def _talk(
    bridges: list[AsyncAudioBridge],
    seconds: float,
    frame: Callable[[int, int, float], bytes],
) -> int:
    """Publish ``frame(index, seq, due)`` on every bridge each 20 ms for ``seconds``,
    phases spread over the interval by index (``due``: when the frame was due, on
    ``time.perf_counter``'s clock); the frames sent, in all."""
    sent = 0
    loop_start, clock_start = anyio.current_time(), time.perf_counter()

    async def one(index: int, bridge: AsyncAudioBridge) -> None:
        nonlocal sent
        offset = FRAME_INTERVAL * (index % 20) / 20
        for seq in range(int(seconds / FRAME_INTERVAL)):
            await anyio.sleep_until(loop_start + offset + seq * FRAME_INTERVAL)
            due = clock_start + offset + seq * FRAME_INTERVAL
            await bridge.publish_downlink(frame(index, seq, due))
            sent += 1

    async with anyio.create_task_group() as tg:
        for index, bridge in enumerate(bridges):
            tg.start_soon(one, index, bridge)
    return sent


async def _step(bridges: list[AsyncAudioBridge], meter: Meter, engine_pid: int) -> dict[str, Any]:
    # Warm up (the callees join, QUIC windows open), then measure.
    await _talk(bridges, 0.5, meter.frame)
    await anyio.sleep(0.3)
    meter.sent.clear()
    meter.rtts.clear()
    dropped_before = sum(b.stats.dropped for b in bridges)
    meter.measuring = True
    cpu_self, cpu_engine, wall = cpu_seconds(os.getpid()), cpu_seconds(engine_pid), time.time()
    sent = await _talk(bridges, STEP_SECONDS, meter.frame)
    with anyio.move_on_after(1.0):
        while len(meter.rtts) < sent:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    elapsed = time.time() - wall
    meter.measuring = False
    back = len(meter.rtts)
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


async def _dev_engine_scale(dev: DevEngineProcess, steps: tuple[int, ...]) -> dict[str, Any]:
    meter = Meter()
    bridges: list[AsyncAudioBridge] = []
    results: list[dict[str, Any]] = []
    async with dev.voice(timeout=30) as voice, _closing_all(bridges):
        rss_before = rss_bytes()
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
    return {"steps": results}


@contextlib.asynccontextmanager
async def _closing_all(bridges: list[AsyncAudioBridge]) -> AsyncIterator[None]:
    """Close every bridge in ``bridges`` (which the block fills) when the block ends,
    even when it is cancelled."""
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):
            for bridge in bridges:
                await bridge.aclose()


# -- SDK capacity: bridges here, moq-rs relay, far ends in another process -------------


class FarEnd:
    """``python -m bench._far_end`` in a subprocess, driven line by line."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    async def ask(self, command: dict[str, Any], wait: float = 60) -> dict[str, Any]:
        """Send one command; the answer, which must come within ``wait`` seconds."""
        return await anyio.to_thread.run_sync(self._ask, command, wait)

    def _ask(self, command: dict[str, Any], wait: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=wait):
                raise RuntimeError(f"the far end did not answer {list(command)} in time")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the far end exited")
        answer: dict[str, Any] = json.loads(line)
        return answer


@contextlib.contextmanager
def far_end_process(url: str) -> Iterator[FarEnd]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._far_end", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield FarEnd(proc)
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        _stop(proc)


async def _ringing_calls(voice: AsyncVoice, count: int) -> list[str]:
    sids: list[str] = []

    async def one() -> None:
        call = await voice.calls.originate(
            to=NO_ANSWER, from_=FROM, trunk_id="trunk_scale", ring_timeout_sec=120
        )
        sids.append(call.sid)

    for start in range(0, count, 25):
        async with anyio.create_task_group() as tg:
            for _ in range(min(25, count - start)):
                tg.start_soon(one)
    return sids


async def _sdk_step(
    bridges: list[AsyncAudioBridge], far: FarEnd, uplink: list[float], others: dict[str, int]
) -> dict[str, Any]:
    interval = {"interval": FRAME_INTERVAL}
    # Warm up (QUIC windows open, code paths hot), then measure.
    async with anyio.create_task_group() as tg:
        tg.start_soon(far.ask, {"talk": 0.5, **interval})
        tg.start_soon(_talk, bridges, 0.5, _far_end.frame)
    uplink.clear()
    dropped_before = sum(b.stats.dropped for b in bridges)
    cpu_before, wall = cpu_seconds(os.getpid()), time.time()
    others_before = {name: cpu_seconds(pid) for name, pid in others.items()}
    cores_before = core_busy()
    answers: dict[str, Any] = {}
    sent_here: list[int] = []

    async def far_talk() -> None:
        answers.update(await far.ask({"talk": STEP_SECONDS, **interval}))

    lags: list[float] = []

    async def talk_here() -> None:
        sent_here.append(await _talk(bridges, STEP_SECONDS, _far_end.frame))

    async def probe_lag() -> None:
        # How late this process's event loop wakes a sleeper: if frames are late
        # while this stays small, the delay is not in this process.
        while True:
            start = time.perf_counter()
            await anyio.sleep(LAG_PROBE)
            lags.append((time.perf_counter() - start - LAG_PROBE) * 1e3)

    async with anyio.create_task_group() as tg:
        tg.start_soon(probe_lag)
        async with anyio.create_task_group() as talkers:
            talkers.start_soon(far_talk)
            talkers.start_soon(talk_here)
        tg.cancel_scope.cancel()
    elapsed = time.time() - wall
    cores = core_load(cores_before)
    load = os.getloadavg()[0]
    cpu = (cpu_seconds(os.getpid()) - cpu_before) / elapsed
    cpu_others = {
        name: (cpu_seconds(pid) - others_before[name]) / elapsed for name, pid in others.items()
    }
    down: list[float] = answers["delays_ms"]
    up = list(uplink)
    dropped = sum(b.stats.dropped for b in bridges) - dropped_before + answers["dropped"]
    down_p99 = percentile(down, 99) if down else float("inf")
    up_p99 = percentile(up, 99) if up else float("inf")
    result = {
        "bridges": len(bridges),
        "load_1min": load,
        "downlink": {"sent": sent_here[0], "received": len(down), "p99_ms": down_p99},
        "uplink": {"sent": answers["sent"], "received": len(up), "p99_ms": up_p99},
        "one_way_p50_ms": percentile(down + up, 50) if down + up else float("inf"),
        "one_way_p99_ms": max(down_p99, up_p99),
        "dropped": dropped,
        "cpu_self": cpu,
        "cpu_others": cpu_others,
        "core_load": cores,
        "loop_lag_p99_ms": percentile(lags, 99) if lags else float("nan"),
    }
    result["ok"] = (
        result["one_way_p99_ms"] < LIMIT_MS
        and len(down) == sent_here[0]
        and len(up) == answers["sent"]
        and dropped == 0
    )
    return result


async def _sdk_scale(steps: tuple[int, ...]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    uplink: list[float] = []

    def on_uplink(frame: bytes, timestamp_us: int) -> None:
        uplink.append(_far_end.delay_ms(frame))

    split = CoreSplit()
    with contextlib.ExitStack() as stack:
        with split.others():
            dev = stack.enter_context(dev_engine_process(time_scale=1.0))
            moqrs = stack.enter_context(moqrs_process())
            far = stack.enter_context(far_end_process(moqrs.url))
        stack.enter_context(split.mine())
        print(
            f"  (this process alone on core {split.core}; relay, far end and control "
            f"plane on {sorted(split.available - {split.core})})",
            flush=True,
        )
        bridges: list[AsyncAudioBridge] = []
        try:
            async with (
                dev.voice(relay_url=moqrs.url, verify=False, timeout=30) as voice,
                _closing_all(bridges),
            ):
                rss_before = rss_bytes()
                for target in steps:
                    sids = await _ringing_calls(voice, target - len(bridges))
                    with anyio.fail_after(120):
                        await far.ask({"publish": sids})
                        for sid in sids:
                            bridges.append(
                                await voice.audio_bridge.attach(sid, on_uplink=on_uplink)
                            )
                        await far.ask({"subscribe": sids})
                    others = {"relay": moqrs.proc.pid, "far end": far.proc.pid}
                    result = await _sdk_step(bridges, far, uplink, others)
                    result["rss_per_bridge_mib"] = (rss_bytes() - rss_before) / len(bridges) / 2**20
                    results.append(result)
                    down, up = result["downlink"], result["uplink"]
                    print(
                        f"  {result['bridges']:4d} bridges (load {result['load_1min']:.2f}): "
                        "one-way p50 "
                        f"{result['one_way_p50_ms']:.2f} ms, p99 down {down['p99_ms']:.2f} / up "
                        f"{up['p99_ms']:.2f} ms, frames down {down['received']}/{down['sent']} "
                        f"up {up['received']}/{up['sent']}, dropped {result['dropped']}, "
                        f"cpu {result['cpu_self']:.0%} (relay {result['cpu_others']['relay']:.0%}, "
                        f"far end {result['cpu_others']['far end']:.0%}), loop lag p99 "
                        f"{result['loop_lag_p99_ms']:.2f} ms; cores busy "
                        + ", ".join(
                            f"{core}: {load:.0%}" for core, load in result["core_load"].items()
                        ),
                        flush=True,
                    )
                    if not result["ok"]:
                        break
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await far.ask({"quit": True}, wait=5)
    return {"steps": results}


def run(
    steps: tuple[int, ...] = STEPS,
    dev_engine_steps: tuple[int, ...] = DEV_ENGINE_STEPS,
    alone_steps: tuple[int, ...] = scale_sdk.STEPS,
) -> dict[str, Any]:
    print("scale, the SDK alone: both ends of every call in this process", flush=True)
    alone = scale_sdk.run(alone_steps)
    print("scale with a Rust far end: server bridges here, caller sides in another process")
    sdk = anyio.run(_sdk_scale, steps)
    passed = [s for s in sdk["steps"] if s["ok"]]
    best = max((s["bridges"] for s in passed), default=0)
    largest = sdk["steps"][-1] if sdk["steps"] else None
    mib = largest["rss_per_bridge_mib"] if largest else float("nan")
    rows = [
        [
            s["bridges"],
            f"{s['load_1min']:.2f}",
            s["one_way_p50_ms"],
            s["downlink"]["p99_ms"],
            s["uplink"]["p99_ms"],
            f"{s['downlink']['received']}/{s['downlink']['sent']}",
            f"{s['uplink']['received']}/{s['uplink']['sent']}",
            s["dropped"],
            f"{s['cpu_self']:.0%}",
            f"{s['cpu_others']['relay']:.0%}",
            f"{s['cpu_others']['far end']:.0%}",
            s["rss_per_bridge_mib"],
            "yes" if s["ok"] else "NO",
        ]
        for s in sdk["steps"]
    ]
    # Average CPU per bridge at the largest passing step: conservative, since the
    # cost per bridge falls as more frames share packets and wake-ups.
    biggest = max(passed, key=lambda s: s["bridges"], default=None)
    per_bridge = biggest["cpu_self"] / biggest["bridges"] if biggest else float("nan")
    projected = 1 / per_bridge if per_bridge == per_bridge and per_bridge > 0 else 0
    print(
        table(
            f"scale with a far end: bidirectional 20 ms bridges in one process on one core, "
            f"moq-rs relay and a Rust far end on the other (one-way ms; pass: p99 < "
            f"{LIMIT_MS:g} ms both ways, none lost or dropped); "
            f"sustained {best} (goal >= {GOAL_BRIDGES}), {mib:.3f} MiB per bridge "
            f"(goal <= {GOAL_MIB_PER_BRIDGE})",
            [
                "bridges",
                "load",
                "p50",
                "p99 down",
                "p99 up",
                "down",
                "up",
                "dropped",
                "cpu",
                "cpu relay",
                "cpu far end",
                "MiB/bridge",
                "ok",
            ],
            rows,
        )
    )
    print(
        f"  CPU of this process per bridge at the largest passing step: {per_bridge:.2%} of "
        f"a core, i.e. about {projected:.0f} bridges if it had the whole core; relay and far end "
        "run on the machine's other core(s), which they can saturate first\n"
    )
    with dev_engine_process(time_scale=0.05) as dev:
        engine = anyio.run(_dev_engine_scale, dev, dev_engine_steps)
    engine_passed = [s for s in engine["steps"] if s["ok"]]
    engine_best = max((s["bridges"] for s in engine_passed), default=0)
    engine_rows = [
        [
            s["bridges"],
            s["rtt_p50_ms"],
            s["rtt_p99_ms"],
            f"{s['back']}/{s['sent']}",
            s["dropped"],
            f"{s['cpu_self']:.0%}",
            f"{s['cpu_engine']:.0%}",
            "yes" if s["ok"] else "NO",
        ]
        for s in engine["steps"]
    ]
    print(
        table(
            f"dev engine capacity: bridges on echo calls, relay and callees in one engine "
            f"process (round trip ms; pass: p99 < {LIMIT_MS:g} ms); sustained {engine_best}",
            ["bridges", "p50", "p99", "back", "dropped", "cpu here", "cpu engine", "ok"],
            engine_rows,
        )
    )
    path = write(
        "scale",
        {
            "goal": {"bridges": GOAL_BRIDGES, "mib_per_bridge": GOAL_MIB_PER_BRIDGE},
            # The SDK alone (bench/scale_sdk.py): the largest passing step in call
            # ends and the SDK's CPU per frame over the relay's there, per backend.
            "sdk_alone": {
                "largest_passing_ends": {b: a["largest_passing_ends"] for b, a in alone.items()},
                "sdk_to_relay_cpu_per_frame": {b: a["sdk_to_relay"] for b, a in alone.items()},
                **alone,
            },
            "far_end": {
                "sustained_bridges": best,
                "mib_per_bridge": mib,
                "cpu_per_bridge": per_bridge,
                "projected_bridges_per_core": projected,
                "steps": sdk["steps"],
            },
            "dev_engine": {"sustained_bridges": engine_best, "steps": engine["steps"]},
        },
    )
    print(f"  -> {path}\n")
    return {"sdk_alone": alone, "sustained_bridges": best, "mib_per_bridge": mib, **sdk}
