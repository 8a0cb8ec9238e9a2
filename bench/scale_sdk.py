"""The SDK alone: both ends of every call in this process, on one core.

This process, pinned to one core, holds both ends of N calls: N server-side
:class:`~clutchcall.AsyncAudioBridge` s (``voice.audio_bridge.attach``, sharing one
relay connection, the default) and the N caller sides, on one
:class:`~clutchcall.bridge.MoqtClient` (one connection, as the bridges share
theirs). The relay is moq-rs (Rust, from PyPI, in a subprocess) pinned to the
other core; the dev engine (another subprocess, on that core too) is only the
control plane: it mints the bridge tokens and is idle while frames flow. Nothing
else carries frames, so what runs out first is this process.

The caller side is the raw client rather than a second bridge
(``attach_caller``) because a bridge subscribes to its call's far track before it
publishes its own, and moq-rs refuses a SUBSCRIBE to a track nobody announced yet
("unroutable"); two bridges on one call would each wait for the other. The raw
client publishes the caller's uplink before the server bridge attaches and
subscribes to the downlink after it. Its per-frame path is the bridge's minus the
bridge's own dispatch (a callback call per frame).

Every 20 ms each end publishes one 80-byte frame (one ticking task, ends spread
over 20 phases of the interval; the caller ends half an interval after their
server ends). A frame carries the time it was due on that schedule
(``time.perf_counter_ns``), its end, its sequence number and the phase of the run
(warm-up or measured), so the receiving end times it one way on the same clock,
from when the audio was due rather than from when the SDK took it: a process
that cannot keep the 20 ms pace (the ticker falls behind, and a step of 6 s takes
longer) fails on latency instead of quietly offering less load. Every frame of the measured
phase is accounted for: ``sent == delivered + dropped`` (dropped: as counted by
the SDK's stats) must hold once the last frames are in, else the frames missing
are reported; duplicates are counted too. "Late" frames arrived, but 20 ms or
more after they were sent.

A step passes when both directions have one-way p99 < 20 ms and no frame is
missing, dropped or duplicated; steps grow until one fails or the last is
reached. CPU: this process's and the relay's, from ``/proc/<pid>/stat`` over the
measured phase. Each frame is sent once and received once by this process (one
end publishes it, the other receives it) and received once and sent once by the
relay, so CPU microseconds per frame compare the SDK with moq-rs doing the same
work. This process's figure includes the harness (the ticking task, the receive
callbacks, the loop-lag probe): about 2 % of it (``bench/results/profile-notes.md``).

Each step also notes the machine's 1-minute load and a calibration (CPU time of a
fixed pure-Python loop on this core), since on a shared machine other processes
run on the same core and slow it: latencies and pass/fail follow the load, CPU
per frame much less.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import os
import pstats
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio

from clutchcall import AsyncAudioBridge, AsyncVoice
from clutchcall.bridge import AudioFrame, AudioPublication, AudioSubscription, MoqtClient

from ._report import percentile, table
from ._system import CoreSplit, cpu_seconds, rss_bytes
from .audio_latency import (
    FROM,
    NO_ANSWER,
    DevEngineProcess,
    MoqRsProcess,
    dev_engine_process,
    moqrs_process,
)

#: Call ends per step (two per call: the server bridge and the caller side).
STEPS = (20, 40, 60, 80, 100, 120, 150, 200, 300, 400, 500, 600, 800)
STEP_SECONDS = 6.0
WARMUP_SECONDS = 1.0
#: How long the last frames of a step may make no progress (none delivered or
#: counted dropped) before the rest count as missing; DRAIN_LIMIT bounds the wait
#: (an overloaded step has frames queued and in flight for a while).
DRAIN_SECONDS = 1.0
DRAIN_LIMIT = 10.0
FRAME_INTERVAL = 0.020
SLOTS = 20
LIMIT_MS = 20.0
LAG_PROBE = 0.005
#: Bound on opening one step's calls and on measuring one step.
OPEN_TIMEOUT = 120.0
STEP_TIMEOUT = 60.0
#: Ringing lasts up to 120 s of simulated time; at this scale the calls (never
#: answered) stay up for the whole run.
TIME_SCALE = 20.0
#: The relay serves this long at most (seconds): longer than any run.
RELAY_LIFETIME = 3600.0

FRAME = struct.Struct(">QIII")  # send time (perf_counter_ns), end, sequence, phase
FRAME_BYTES = 80
PADDING = bytes(FRAME_BYTES - FRAME.size)


def calibration_us() -> float:
    """CPU microseconds this thread takes for ``sum(range(1000))`` (best of 5 runs of
    200): how fast the core is right now, to compare runs on a busy machine."""
    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for _ in range(200):
            sum(range(1000))
        best = min(best, (time.thread_time() - start) / 200 * 1e6)
    return best


class Direction:
    """The frames of one direction (downlink or uplink) in the phase being measured."""

    def __init__(self) -> None:
        self.phase = 0
        self.sent = 0
        self.delays_ms: list[float] = []
        self.seen: set[int] = set()
        self.duplicates = 0

    def start(self, phase: int) -> None:
        self.phase = phase
        self.sent = 0
        self.delays_ms = []
        self.seen = set()
        self.duplicates = 0

    def received(self, data: bytes) -> None:
        sent_ns, end, seq, phase = FRAME.unpack_from(data)
        if phase != self.phase:
            return  # a frame of an earlier phase (the warm-up)
        key = end << 24 | seq
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        self.delays_ms.append((time.perf_counter_ns() - sent_ns) / 1e6)

    @property
    def delivered(self) -> int:
        return len(self.delays_ms)


@dataclass
class Call:
    index: int
    sid: str
    server: AsyncAudioBridge
    #: The caller side: the uplink it publishes and the downlink it receives.
    uplink: AudioPublication
    downlink: AudioSubscription


class Pairs:
    """Both ends of many calls, and the frames between them."""

    def __init__(self, voice: AsyncVoice, caller: MoqtClient) -> None:
        self.voice = voice
        self.caller = caller
        self.calls: list[Call] = []
        self.down = Direction()
        self.up = Direction()
        self.phase = 0
        #: How late (ms) the ticker handed each tick's frames over, in the last
        #: phase: the part of the one-way latency spent before the SDK had them.
        self.pace_lag_ms: list[float] = []

    @property
    def ends(self) -> int:
        return 2 * len(self.calls)

    def dropped(self) -> int:
        """Frames the SDK counted as dropped, both ends, both directions."""
        return sum(c.server.stats.dropped for c in self.calls) + self.caller.stats.dropped

    async def open(self, count: int) -> None:
        """Open ``count`` more calls, 25 at a time."""
        while count > 0:
            batch = min(25, count)
            async with anyio.create_task_group() as tg:
                for _ in range(batch):
                    tg.start_soon(self._open_one)
            count -= batch

    async def _open_one(self) -> None:
        voice, caller = self.voice, self.caller
        call = await voice.calls.originate(
            to=NO_ANSWER, from_=FROM, trunk_id="trunk_scale", ring_timeout_sec=120
        )
        # moq-rs routes a SUBSCRIBE only to a track already announced: the caller's
        # uplink first, then the server bridge (subscribes to it, publishes the
        # downlink), then the caller's subscription to the downlink.
        uplink = await caller.publish_audio(call.sid, "uplink")
        server = await voice.audio_bridge.attach(
            call.sid, on_uplink=lambda frame, timestamp_us: self.up.received(frame)
        )
        downlink = await caller.subscribe_audio(call.sid, "downlink")
        down = self.down

        def on_downlink(frame: AudioFrame) -> None:
            down.received(frame.data)

        downlink.on_frame = on_downlink
        await uplink.wait_subscribed()
        self.calls.append(Call(len(self.calls), call.sid, server, uplink, downlink))

    async def talk(self, seconds: float) -> int:
        """Every end publishes a frame each 20 ms for ``seconds`` (a new phase);
        returns the phase. One ticking task: the harness should cost little."""
        self.phase += 1
        phase = self.phase
        self.down.start(phase)
        self.up.start(phase)
        servers = [self.calls[slot::SLOTS] for slot in range(SLOTS)]
        half = SLOTS // 2
        callers = [servers[(slot - half) % SLOTS] for slot in range(SLOTS)]
        down, up = self.down, self.up
        pack = FRAME.pack
        tick_ns = int(FRAME_INTERVAL * 1e9) // SLOTS
        start, start_ns = anyio.current_time(), time.perf_counter_ns()
        pace_lag = self.pace_lag_ms = []
        for tick in range(int(seconds / FRAME_INTERVAL) * SLOTS):
            # A tick already due runs at once: the ticker catches up in one pass
            # rather than waiting a loop iteration per tick (on asyncio each such
            # wait is a full iteration, and 1000 ticks a second fell behind).
            at = start + tick * FRAME_INTERVAL / SLOTS
            if at > anyio.current_time():
                await anyio.sleep_until(at)
            # Stamped with the time the frame was due, not the time it went: a
            # process that falls behind the 20 ms pace shows it as latency.
            due_ns = start_ns + tick * tick_ns
            pace_lag.append((time.perf_counter_ns() - due_ns) / 1e6)
            seq = tick // SLOTS
            slot = tick % SLOTS
            for call in servers[slot]:
                await call.server.publish_downlink(pack(due_ns, call.index, seq, phase) + PADDING)
                down.sent += 1
            for call in callers[slot]:
                call.uplink.write_nowait(pack(due_ns, call.index, seq, phase) + PADDING)
                up.sent += 1
        return phase

    async def settle(self, dropped_before: int) -> int:
        """Wait until every frame sent is delivered or counted dropped, or until
        none has been for DRAIN_SECONDS (at most DRAIN_LIMIT in all); the frames
        dropped meanwhile."""
        settled = -1
        quiet_since = anyio.current_time()
        with anyio.move_on_after(DRAIN_LIMIT):
            while True:
                dropped = self.dropped() - dropped_before
                now_settled = self.down.delivered + self.up.delivered + dropped
                if now_settled >= self.down.sent + self.up.sent:
                    break
                now = anyio.current_time()
                if now_settled != settled:
                    settled, quiet_since = now_settled, now
                elif now - quiet_since >= DRAIN_SECONDS:
                    break
                await anyio.sleep(0.02)
        return self.dropped() - dropped_before


async def _probe_lag(lags: list[float]) -> None:
    """How late the event loop wakes a sleeper (ms)."""
    while True:
        start = time.perf_counter()
        await anyio.sleep(LAG_PROBE)
        lags.append((time.perf_counter() - start - LAG_PROBE) * 1e3)


def _direction(d: Direction) -> dict[str, Any]:
    delays = d.delays_ms
    return {
        "sent": d.sent,
        "delivered": d.delivered,
        "duplicates": d.duplicates,
        "p50_ms": percentile(delays, 50) if delays else float("inf"),
        "p99_ms": percentile(delays, 99) if delays else float("inf"),
        "max_ms": max(delays) if delays else float("inf"),
        "late": sum(1 for delay in delays if delay >= LIMIT_MS),
    }


async def _step(pairs: Pairs, relay_pid: int, rss_before: int) -> dict[str, Any]:
    await pairs.talk(WARMUP_SECONDS)  # QUIC windows open, code paths hot
    await anyio.sleep(0.3)
    load = os.getloadavg()[0]
    calibration = calibration_us()
    dropped_before = pairs.dropped()
    lags: list[float] = []
    wall = time.perf_counter()
    cpu_sdk, cpu_relay = cpu_seconds(os.getpid()), cpu_seconds(relay_pid)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_probe_lag, lags)
        await pairs.talk(STEP_SECONDS)
        dropped = await pairs.settle(dropped_before)
        tg.cancel_scope.cancel()
    cpu_sdk = cpu_seconds(os.getpid()) - cpu_sdk
    cpu_relay = cpu_seconds(relay_pid) - cpu_relay
    elapsed = time.perf_counter() - wall
    down, up = _direction(pairs.down), _direction(pairs.up)
    sent = down["sent"] + up["sent"]
    delivered = down["delivered"] + up["delivered"]
    missing = sent - delivered - dropped
    duplicates = down["duplicates"] + up["duplicates"]
    result: dict[str, Any] = {
        "ends": pairs.ends,
        "calls": len(pairs.calls),
        "load_1min": load,
        "calibration_us": calibration,
        "downlink": down,
        "uplink": up,
        "frames_sent": sent,
        "frames_delivered": delivered,
        "dropped": dropped,
        "missing": missing,
        # sent == delivered + dropped: each frame arrived or the SDK counted it.
        "accounted": missing == 0 and duplicates == 0,
        "seconds": elapsed,
        "cpu_sdk": cpu_sdk / elapsed,
        "cpu_relay": cpu_relay / elapsed,
        "sdk_us_per_frame": cpu_sdk * 1e6 / max(1, sent),
        "relay_us_per_frame": cpu_relay * 1e6 / max(1, sent),
        "loop_lag_p99_ms": percentile(lags, 99) if lags else float("nan"),
        "pace_lag_p99_ms": percentile(pairs.pace_lag_ms, 99),
        "rss_per_end_kib": (rss_bytes() - rss_before) / max(1, pairs.ends) / 1024,
    }
    result["sdk_to_relay"] = result["sdk_us_per_frame"] / max(1e-9, result["relay_us_per_frame"])
    result["ok"] = (
        down["p99_ms"] < LIMIT_MS
        and up["p99_ms"] < LIMIT_MS
        and result["accounted"]
        and dropped == 0
    )
    return result


def _print_step(backend: str, r: dict[str, Any]) -> None:
    down, up = r["downlink"], r["uplink"]
    print(
        f"  [{backend}] {r['ends']:4d} ends (load {r['load_1min']:.2f}, calibration "
        f"{r['calibration_us']:.1f} us): one-way p50/p99 "
        f"down {down['p50_ms']:.2f}/{down['p99_ms']:.2f} ms, up {up['p50_ms']:.2f}/"
        f"{up['p99_ms']:.2f} ms; frames {r['frames_delivered']}/{r['frames_sent']} "
        f"delivered, {r['dropped']} dropped, {r['missing']} missing, late "
        f"{down['late'] + up['late']}; cpu sdk {r['cpu_sdk']:.0%} relay {r['cpu_relay']:.0%}; "
        f"us/frame sdk {r['sdk_us_per_frame']:.1f} relay {r['relay_us_per_frame']:.1f} "
        f"(x{r['sdk_to_relay']:.1f}); loop lag p99 {r['loop_lag_p99_ms']:.2f} ms, "
        f"ticker behind schedule p99 {r['pace_lag_p99_ms']:.2f} ms" + ("" if r["ok"] else "  FAIL"),
        flush=True,
    )


async def run_pairs(
    relay: MoqRsProcess,
    voice_options: dict[str, Any],
    steps: tuple[int, ...],
    backend: str,
    hold: float = 0.0,
    count_calls: bool = False,
) -> list[dict[str, Any]]:
    """Grow the calls step by step (``steps``: call ends) and measure each; stop
    at the first failing step. ``hold``: then keep the last step's frames flowing
    that many seconds more (for a profiler); ``count_calls``: under cProfile, then
    print how many times each function ran per frame."""
    results: list[dict[str, Any]] = []
    async with AsyncVoice(**voice_options) as voice, relay.client() as caller:
        pairs = Pairs(voice, caller)
        rss_before = rss_bytes()
        try:
            for ends in steps:
                with anyio.fail_after(OPEN_TIMEOUT):
                    await pairs.open(ends // 2 - len(pairs.calls))
                # Opening calls (HTTP requests, handshakes) leaves garbage behind; a
                # full collection of it inside the measured window paused the loop
                # for up to ~50 ms on the benchmark VM. The steady state keeps no new
                # objects alive, so once this is collected no full collection falls
                # inside a step (as in a service that collects after a burst of setup).
                gc.collect()
                with anyio.fail_after(STEP_TIMEOUT):
                    result = await _step(pairs, relay.proc.pid, rss_before)
                results.append(result)
                _print_step(backend, result)
                if not result["ok"]:
                    break
            if hold > 0:
                print(f"  [{backend}] holding {pairs.ends} ends for {hold:g} s", flush=True)
                profiler = cProfile.Profile() if count_calls else None
                if profiler is not None:
                    profiler.enable()
                await pairs.talk(hold)
                if profiler is not None:
                    profiler.disable()
                    _print_calls(profiler, pairs.down.sent + pairs.up.sent)
        finally:
            with anyio.CancelScope(shield=True):
                await caller.aclose()
    return results


#: Functions whose calls per frame tell packets, passes and wake-ups apart.
COUNTED = (
    "receive_datagram",
    "datagrams_to_send",
    "_transmit",
    "handle_timer",
    "_handle_ack_frame",
    "_write_application",
    "start_packet",
    "_get_or_create_stream",
    "_write_stream_limits",
    "sendto",
    "recvfrom",
    "_run_once",
    "select",
    "debug",
)


def _print_calls(profiler: cProfile.Profile, frames: int, top: int = 30) -> None:
    """Calls per frame of :data:`COUNTED` and of the functions with the most own
    time (cProfile's counts are exact; its overhead inflates the times, so only
    their shares are shown)."""
    stats: dict[tuple[str, int, str], tuple[Any, ...]]
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values()) or 1.0
    per_frame = max(1, frames)

    def show(key: tuple[str, int, str], entry: tuple[Any, ...]) -> None:
        path, line, name = key
        where = path.split("site-packages/")[-1].split("/wt/")[-1]
        print(f"    {entry[1] / per_frame:7.2f}  {entry[2] / total:6.1%}  {name}  ({where}:{line})")

    print(f"  calls per frame over {frames} frames (share of own time under cProfile):")
    for key, entry in sorted(stats.items(), key=lambda item: -item[1][1]):
        name = key[2]
        if any(name == c or name.endswith(f".{c}") or name.endswith(f" {c}>") for c in COUNTED):
            show(key, entry)
    print("  most own time:")
    for key, entry in sorted(stats.items(), key=lambda item: -item[1][2])[:top]:
        show(key, entry)


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest passing step and its per-frame figures."""
    passed = [r for r in results if r["ok"]]
    best = max(passed, key=lambda r: r["ends"], default=None)
    return {
        "largest_passing_ends": best["ends"] if best else 0,
        "sdk_us_per_frame": best["sdk_us_per_frame"] if best else float("nan"),
        "relay_us_per_frame": best["relay_us_per_frame"] if best else float("nan"),
        "sdk_to_relay": best["sdk_to_relay"] if best else float("nan"),
        "first_failure": next((r["ends"] for r in results if not r["ok"]), None),
        "steps": results,
    }


def print_table(backend: str, results: list[dict[str, Any]]) -> None:
    info = summary(results)
    rows = [
        [
            r["ends"],
            f"{r['load_1min']:.2f}",
            f"{r['calibration_us']:.1f}",
            f"{r['downlink']['p50_ms']:.2f}/{r['downlink']['p99_ms']:.2f}",
            f"{r['uplink']['p50_ms']:.2f}/{r['uplink']['p99_ms']:.2f}",
            f"{r['frames_delivered']}/{r['frames_sent']}",
            r["missing"],
            r["downlink"]["late"] + r["uplink"]["late"],
            r["dropped"],
            f"{r['cpu_sdk']:.0%}",
            f"{r['cpu_relay']:.0%}",
            f"{r['sdk_us_per_frame']:.1f}",
            f"{r['relay_us_per_frame']:.1f}",
            f"{r['sdk_to_relay']:.1f}",
            f"{r['loop_lag_p99_ms']:.2f}",
            f"{r['rss_per_end_kib']:.0f}",
            "yes" if r["ok"] else "NO",
        ]
        for r in results
    ]
    print(
        table(
            f"scale, the SDK alone ({backend}): both ends of each call in this process on "
            f"one core, moq-rs relay on the other; one-way ms p50/p99 (pass: p99 < "
            f"{LIMIT_MS:g} ms both ways, none missing or dropped); largest passing step "
            f"{info['largest_passing_ends']} ends; SDK/relay CPU per frame there "
            f"x{info['sdk_to_relay']:.1f}",
            [
                "ends",
                "load",
                "calib us",
                "down",
                "up",
                "delivered",
                "missing",
                "late",
                "dropped",
                "cpu sdk",
                "cpu relay",
                "us/frame sdk",
                "us/frame relay",
                "ratio",
                "lag p99",
                "KiB/end",
                "ok",
            ],
            rows,
        )
    )


@contextlib.contextmanager
def _pinned_processes() -> Iterator[tuple[DevEngineProcess, MoqRsProcess]]:
    """The dev engine and moq-rs on the other core(s), this process on its own."""
    split = CoreSplit()
    with contextlib.ExitStack() as stack:
        with split.others():
            dev = stack.enter_context(dev_engine_process(time_scale=TIME_SCALE))
            relay = stack.enter_context(moqrs_process(lifetime=RELAY_LIFETIME))
        stack.enter_context(split.mine())
        print(
            f"  (this process alone on core {split.core}; moq-rs relay and control plane "
            f"on {sorted(split.available - {split.core})})",
            flush=True,
        )
        yield dev, relay


def run(
    steps: tuple[int, ...] = STEPS,
    backends: tuple[str, ...] = ("asyncio", "trio"),
    hold: float = 0.0,
    count_calls: bool = False,
) -> dict[str, dict[str, Any]]:
    """Measure on each backend; returns each backend's :func:`summary`.

    Each backend gets a relay and a dev engine of its own: the step that ends one
    backend's ladder overloads them, and what it leaves behind (calls still up,
    sessions closing, tracks) must not weigh on the next backend's steps."""
    out: dict[str, dict[str, Any]] = {}
    for backend in backends:
        with _pinned_processes() as (dev, relay):
            options = {
                "base_url": dev.base_url,
                "api_key": dev.api_key,
                "org_id": dev.org_id,
                "relay_url": relay.url,
                "verify": False,
                "timeout": 30,
            }
            results = anyio.run(
                run_pairs, relay, options, steps, backend, hold, count_calls, backend=backend
            )
        print_table(backend, results)
        print()
        out[backend] = summary(results)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.scale_sdk [--backend B] [--steps 200,...] [--hold S]
    [--count-calls]``: this mode alone (e.g. under a profiler: ``--steps 200 --hold
    30``; ``--count-calls``: the hold under cProfile, calls per frame printed)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.scale_sdk")
    parser.add_argument("--backend", action="append", choices=("asyncio", "trio"))
    parser.add_argument("--steps", default=",".join(str(s) for s in STEPS))
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--count-calls", action="store_true")
    args = parser.parse_args(argv)
    steps = tuple(int(s) for s in args.steps.split(","))
    run(steps, tuple(args.backend or ("asyncio", "trio")), args.hold, args.count_calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
