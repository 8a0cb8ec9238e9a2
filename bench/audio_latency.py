"""Audio round trip: ``publish_downlink`` -> echo -> ``on_uplink``, dev relay vs moq-rs.

Each path sends paced frames on an :class:`~clutchcall.AsyncAudioBridge` and times
each frame's way back (``time.perf_counter`` at publish and in the callback):

- **dev relay, echo callee**: the simulated echo callee (+15005550004) of a dev
  engine reflects downlink onto uplink; once with the engine in this process (as
  ``make demo`` runs it: relay, callee and bridge share one interpreter) and once
  with ``python -m clutchcall dev`` in a subprocess.
- **echo peer**: a second :class:`~clutchcall.bridge.MoqtClient` in this process
  (the caller side) subscribes to downlink and republishes each frame on uplink.
  The same peer runs through the dev relay (subprocess) and through a moq-rs
  relay (subprocess, PyPI ``moq-rs``), so that the two relays are compared on the
  same path: the ratio of those two rows is the relay's own cost.

Goal (issue 7): p50 <= 2 ms and p99 <= 5 ms on loopback, <= 1.5x moq-rs.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio

from clutchcall import AsyncVoice, CallStatus
from clutchcall.dev import Engine
from clutchcall.moqnet import MoqtClient

from ._report import summarize, table, write

ECHO = "+15005550004"
NO_ANSWER = "+15005550002"  # rings for ring_timeout_sec: a call with no simulated callee
FROM = "+15558675309"
GOAL_P50_MS = 2.0
GOAL_P99_MS = 5.0
GOAL_RATIO = 1.5
FRAME_BYTES = 80  # a 20 ms Opus frame at 32 kbit/s
WARMUP = 100
DEV_CMD = (sys.executable, "-m", "clutchcall", "dev", "--port", "0")

MOQRS_SCRIPT = """
import asyncio, sys, moq
async def main():
    async with moq.Server("127.0.0.1:0", tls_generate=["localhost"]) as server:
        print(server.local_addr, ",".join(server.cert_fingerprints()), flush=True)
        try:
            await asyncio.wait_for(server.serve(), float(sys.argv[1]))
        except asyncio.TimeoutError:
            pass
asyncio.run(main())
"""


# -- subprocesses ----------------------------------------------------------------------


def _first_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=timeout)
    line = proc.stdout.readline().decode() if ready else ""
    if not line:
        raise RuntimeError(f"{proc.args!r} printed no ready line")
    return line


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this module started (by its pid)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@dataclass(frozen=True)
class DevEngineProcess:
    """``python -m clutchcall dev`` in a subprocess."""

    proc: subprocess.Popen[bytes]
    base_url: str
    relay_url: str
    api_key: str
    org_id: str
    relay_ca_file: str

    def voice(self, **options: Any) -> AsyncVoice:
        settings: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "org_id": self.org_id,
            "relay_url": self.relay_url,
            "verify": self.relay_ca_file,
        }
        return AsyncVoice(**{**settings, **options})


@contextlib.contextmanager
def dev_engine_process(time_scale: float = 0.25) -> Iterator[DevEngineProcess]:
    with tempfile.TemporaryDirectory(prefix="clutchcall-bench-") as cert_dir:
        proc = subprocess.Popen(
            [*DEV_CMD, "--time-scale", str(time_scale), "--cert-dir", cert_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            info = json.loads(_first_line(proc, 30))
            # The ready line may carry more than this needs (e.g. the softphone's URL).
            fields = ("base_url", "relay_url", "api_key", "org_id", "relay_ca_file")
            yield DevEngineProcess(proc, **{name: info[name] for name in fields})
        finally:
            _stop(proc)


@dataclass(frozen=True)
class MoqRsProcess:
    proc: subprocess.Popen[bytes]
    port: int
    fingerprints: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"moqt://127.0.0.1:{self.port}"

    def client(self) -> MoqtClient:
        return MoqtClient(self.url, cert_sha256=self.fingerprints, server_name="localhost")


@contextlib.contextmanager
def moqrs_process(lifetime: float = 600) -> Iterator[MoqRsProcess]:
    proc = subprocess.Popen(
        [sys.executable, "-c", MOQRS_SCRIPT, str(lifetime)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "error"},
    )
    try:
        address, fingerprints = _first_line(proc, 30).split()
        yield MoqRsProcess(proc, int(address.rsplit(":", 1)[1]), tuple(fingerprints.split(",")))
    finally:
        _stop(proc)


# -- the measurement -------------------------------------------------------------------


class RoundTrips:
    """Send paced numbered frames, time each one's return."""

    def __init__(self, frames: int, interval: float) -> None:
        self.frames = frames
        self.interval = interval
        self.sent: dict[int, float] = {}
        self.rtts: list[float] = []
        self.done = anyio.Event()

    def frame(self, seq: int) -> bytes:
        return struct.pack(">4sI", b"CCbn", seq) + bytes(FRAME_BYTES - 8)

    def on_uplink(self, frame: bytes, timestamp_us: int) -> None:
        now = time.perf_counter()
        if frame[:4] != b"CCbn":
            return
        started = self.sent.pop(struct.unpack(">I", frame[4:8])[0], None)
        if started is None:
            return
        self.rtts.append(now - started)
        if len(self.rtts) >= self.frames + WARMUP:
            self.done.set()

    async def run(self, publish: Any) -> list[float]:
        deadline = anyio.current_time()
        for seq in range(self.frames + WARMUP):
            self.sent[seq] = time.perf_counter()
            await publish(self.frame(seq))
            deadline += self.interval
            await anyio.sleep_until(deadline)
        with anyio.move_on_after(2):
            await self.done.wait()
        return self.rtts[WARMUP:]


async def _answered(voice: AsyncVoice, to: str, **options: Any) -> str:
    call = await voice.calls.originate(to=to, from_=FROM, trunk_id="trunk_bench", **options)
    with anyio.fail_after(10):
        while (await voice.calls.get(call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return call.sid


async def echo_callee(voice: AsyncVoice, frames: int, interval: float) -> list[float]:
    sid = await _answered(voice, ECHO)
    trips = RoundTrips(frames, interval)
    async with await voice.audio_bridge.attach(sid, on_uplink=trips.on_uplink) as bridge:
        with anyio.fail_after(10):  # the callee joins once the bridge is on the relay
            while not trips.rtts:
                bridge_frame = trips.frame(10**6)
                trips.sent[10**6] = time.perf_counter()
                await bridge.publish_downlink(bridge_frame)
                await anyio.sleep(0.05)
        trips.rtts.clear()
        rtts = await trips.run(bridge.publish_downlink)
        dropped = bridge.stats.dropped
    await (await voice.calls.get(sid)).hangup()
    if dropped:
        print(f"  warning: {dropped} frames dropped")
    return rtts


async def echo_peer(
    voice: AsyncVoice,
    make_peer: Callable[[str], Awaitable[MoqtClient]],
    frames: int,
    interval: float,
) -> list[float]:
    """The bridge on a ringing call (no simulated callee joins it); the peer echoes."""
    call = await voice.calls.originate(
        to=NO_ANSWER, from_=FROM, trunk_id="trunk_bench", ring_timeout_sec=120
    )
    trips = RoundTrips(frames, interval)
    async with await make_peer(call.sid) as peer:
        # Publish first: moq-rs only routes a SUBSCRIBE to a track already announced.
        uplink = await peer.publish_audio(call.sid, "uplink")
        async with await voice.audio_bridge.attach(call.sid, on_uplink=trips.on_uplink) as bridge:
            downlink = await peer.subscribe_audio(call.sid, "downlink")
            downlink.on_frame = lambda frame: uplink.write_nowait(frame.data, frame.timestamp_us)
            with anyio.fail_after(10):
                await uplink.wait_subscribed()
            rtts = await trips.run(bridge.publish_downlink)
            dropped = bridge.stats.dropped + peer.stats.dropped
    await call.hangup()
    if dropped:
        print(f"  warning: {dropped} frames dropped")
    return rtts


def run(frames: int = 2000, interval: float = 0.005) -> dict[str, Any]:
    runs: dict[str, list[float]] = {}
    with Engine(time_scale=0.05) as engine:

        async def in_process() -> list[float]:
            async with engine.async_voice() as voice:
                return await echo_callee(voice, frames, interval)

        runs["dev relay, echo callee (in-process engine)"] = anyio.run(in_process)
    with dev_engine_process() as dev, moqrs_process() as moqrs:

        async def dev_callee() -> list[float]:
            async with dev.voice() as voice:
                return await echo_callee(voice, frames, interval)

        async def dev_peer() -> list[float]:
            async with dev.voice() as voice:

                async def peer(sid: str) -> MoqtClient:
                    token = await voice.calls.create_bridge_token(sid, "caller")
                    return MoqtClient(dev.relay_url, token=token.token, verify=dev.relay_ca_file)

                return await echo_peer(voice, peer, frames, interval)

        runs["dev relay, echo callee (engine subprocess)"] = anyio.run(dev_callee)
        runs["dev relay, echo peer (engine subprocess)"] = anyio.run(dev_peer)

        async def moqrs_peer() -> list[float]:
            async with dev.voice(relay_url=moqrs.url, verify=False) as voice:

                async def peer(sid: str) -> MoqtClient:
                    return moqrs.client()

                return await echo_peer(voice, peer, frames, interval)

        runs["moq-rs relay, echo peer (subprocess)"] = anyio.run(moqrs_peer)
    return report(runs, frames, interval)


def report(runs: dict[str, list[float]], frames: int, interval: float) -> dict[str, Any]:
    baseline_name = "moq-rs relay, echo peer (subprocess)"
    baseline = summarize([s * 1e3 for s in runs[baseline_name]])
    results: dict[str, Any] = {}
    rows = []
    for name, samples in runs.items():
        stats = summarize([s * 1e3 for s in samples])
        ratio50, ratio99 = stats["p50"] / baseline["p50"], stats["p99"] / baseline["p99"]
        dev = name.startswith("dev")
        goal = ""
        if dev:
            ok = stats["p50"] <= GOAL_P50_MS and stats["p99"] <= GOAL_P99_MS
            ok = ok and ratio50 <= GOAL_RATIO
            goal = "yes" if ok else "NO"
        results[name] = {**stats, "p50_ratio": ratio50, "p99_ratio": ratio99, "lost": 0}
        results[name]["lost"] = frames - len(samples)
        rows.append(
            [name, len(samples), stats["p50"], stats["p99"], ratio50, ratio99, goal or "baseline"]
        )
    print(
        table(
            f"audio round trip (ms), {frames} frames of {FRAME_BYTES} B every "
            f"{interval * 1e3:g} ms; ratios vs moq-rs (goal p50 <= {GOAL_P50_MS} ms, "
            f"p99 <= {GOAL_P99_MS} ms, <= {GOAL_RATIO}x moq-rs)",
            ["path", "frames", "p50", "p99", "p50 ratio", "p99 ratio", "goal"],
            rows,
        )
    )
    path = write(
        "audio_latency",
        {
            "frames": frames,
            "interval_ms": interval * 1e3,
            "frame_bytes": FRAME_BYTES,
            "goal": {"p50_ms": GOAL_P50_MS, "p99_ms": GOAL_P99_MS, "ratio": GOAL_RATIO},
            "baseline": baseline_name,
            "results": results,
        },
    )
    print(f"  -> {path}\n")
    return results
