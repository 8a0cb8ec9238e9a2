"""The relay goes away mid-call and comes back.

- In-process (``engine.stop_relay()`` / ``start_relay()``, the call state kept):
  echoed frames flow again within 2 s of the relay's return.
- ``python -m clutchcall dev`` killed with SIGKILL and started again on the same
  ports and certificate: the new engine knows nothing of the old call (its state
  and its bridge-token secret died with the process), so audio cannot resume on
  that call; what must hold is that no exception reaches user code while the
  bridge notices, redials and gives up, that publishing then raises
  ``BridgeClosedError`` naming why, and that closing leaves no threads, tasks or
  sockets behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from child_processes import ready_line, reap
from hardening_helpers import (
    Echoes,
    answered_call,
    echo_bridge,
    free_port,
    open_sockets,
    thread_names,
    until,
)

from clutchcall import AsyncVoice, BridgeClosedError
from clutchcall.dev import Engine

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_frames_resume_within_2_s_of_the_relays_return() -> None:
    echoes = Echoes()
    with Engine(time_scale=0.05) as engine:
        async with engine.async_voice() as voice, echo_bridge(voice, echoes) as bridge:
            await echoes.talk_for(bridge, 0.5)
            await until(lambda: echoes.rtt)
            await anyio.to_thread.run_sync(engine.stop_relay)
            await echoes.talk_for(bridge, 1.0)
            await anyio.to_thread.run_sync(engine.start_relay)
            returned_at, back_from = time.monotonic(), echoes.next_seq
            while echoes.back_since(back_from) < 5 and time.monotonic() < returned_at + 10:
                await echoes.talk_for(bridge, 0.05)
            resumed_after = time.monotonic() - returned_at
            stats = bridge.stats
    assert echoes.back_since(back_from) >= 5
    assert resumed_after <= 2.0, (resumed_after, stats)
    assert stats.reconnects == 1


def start_dev(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clutchcall", "dev", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = ready_line(proc, 30)
    if line is None:
        stop(proc)
        raise RuntimeError("the dev engine did not start")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a dev engine this test started, by its pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    reap(proc)


@pytest.fixture
def dev_args(tmp_path: Path) -> Iterator[list[str]]:
    http_port, relay_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    yield [
        *("--port", str(http_port), "--relay-port", str(relay_port)),
        *("--cert-dir", str(tmp_path), "--time-scale", "0.05"),
    ]


async def test_sigkilled_engine_only_a_typed_error_reaches_user_code_and_nothing_leaks(
    dev_args: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clutchcall")
    threads_before, sockets_before = thread_names(), open_sockets()
    tasks_before = asyncio.all_tasks()
    echoes = Echoes()
    errors: list[BaseException] = []
    proc, info = start_dev(dev_args)
    restarted: subprocess.Popen[str] | None = None
    try:
        voice = AsyncVoice(
            base_url=info["base_url"],
            api_key=info["api_key"],
            org_id=info["org_id"],
            relay_url=info["relay_url"],
            verify=info["relay_ca_file"],
        )
        async with voice:
            sid = await answered_call(voice)
            with anyio.fail_after(45):
                bridge = await voice.audio_bridge.attach(sid, on_uplink=echoes.on_uplink)
                async with bridge:
                    await echoes.talk_for(bridge, 0.5, errors)
                    await until(lambda: echoes.rtt)
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                    await echoes.talk_for(bridge, 0.5, errors)
                    restarted, info_again = await anyio.to_thread.run_sync(start_dev, dev_args)
                    # Same address and certificate: the client can dial the new engine.
                    assert info_again["relay_url"] == info["relay_url"]
                    # The client notices the dead connection (idle timeout), redials,
                    # is refused (unknown token secret, then no such call) and ends.
                    while not bridge.ended:
                        await echoes.talk_for(bridge, 0.1, errors)
                    # From then on, publishing says why with a typed error.
                    assert bridge.closed
                    await echoes.talk_for(bridge, 0.2, errors)
                    stats = bridge.stats
        assert bridge.closed
    finally:
        stop(proc)
        if restarted is not None:
            stop(restarted)
    assert errors and all(type(e) is BridgeClosedError for e in errors), errors
    assert "call_not_found" in str(errors[-1])
    # Logged once each, at WARNING: the loss, the first failed attempt, giving up;
    # nothing per frame (the bridge published for seconds into the dead link).
    records = [r for r in caplog.records if r.name.startswith("clutchcall")]
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) in (2, 3), warnings
    assert warnings[0].startswith("lost the session with the relay"), warnings
    assert warnings[-1].startswith("gave up reconnecting"), warnings
    assert all("attempt 1 failed" in w for w in warnings[1:-1]), warnings
    gave_up = next(r for r in records if r.getMessage().startswith("gave up"))
    assert vars(gave_up)["call_sids"] == [sid] and vars(gave_up)["reconnect_attempts"] >= 1
    assert len(records) <= len(warnings) + 2, [r.getMessage() for r in records]
    assert stats.reconnects == 0 and stats.dropped > 0
    assert asyncio.all_tasks() - tasks_before == set()
    await until(lambda: thread_names() == threads_before)
    await until(lambda: open_sockets() <= sockets_before)
