"""Reconnect: the relay restarts (same port) or sends GOAWAY mid-call; audio resumes.

These tests use an engine of their own, since they stop its relay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import anyio
import pytest
from bridge_fixtures import own_engine_fixture  # noqa: F401
from bridge_helpers import (
    answered_call,
    answered_call_sync,
    callee_joined,
    frames_heard,
    seq_of,
    until,
    wait_until,
)

from clutchcall.dev import Engine
from clutchcall.moqnet.client import RECONNECT_LOG_INTERVAL

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
async def test_relay_restart_mid_call_resumes_both_directions(
    kind: str, own_engine: Engine
) -> None:
    engine = own_engine
    url = engine.relay_url if kind == "quic" else engine.relay_webtransport_url
    heard: list[int] = []
    async with engine.async_voice(relay_url=url) as voice:
        sid = await answered_call(voice)
        with anyio.fail_after(30):
            bridge = await voice.audio_bridge.attach(
                sid, on_uplink=lambda f, ts: heard.append(seq_of(f))
            )
            async with bridge:
                await until(lambda: callee_joined(engine, sid) and len(heard) >= 5)
                port = engine.relay_port
                await anyio.to_thread.run_sync(engine.stop_relay)
                # The relay said goodbye; had that packet been lost, the client's
                # keepalive and idle timeout (5 s) would notice.
                await until(lambda: not bridge.connected, 8)
                # Publishing during the outage is fine: frames wait in a small queue,
                # the stale ones are dropped and counted.
                for n in range(40):
                    await bridge.publish_downlink(b"outage-%d" % n, n)
                    await anyio.sleep(0.01)
                before = len(heard)
                await anyio.to_thread.run_sync(engine.start_relay)
                assert engine.relay_port == port
                await until(lambda: bridge.stats.reconnects == 1, 15)
                await until(lambda: len(heard) >= before + 10, 10)
                heard_before = frames_heard(engine, sid)
                for n in range(10):
                    await bridge.publish_downlink(b"after-%d" % n, 1000 + n)
                    await anyio.sleep(0.005)
                await until(lambda: frames_heard(engine, sid) >= heard_before + 10, 10)
                stats = bridge.stats
    assert stats.reconnects == 1
    assert stats.dropped > 0  # most outage frames were stale by the time the relay returned
    received = [f.data for f in engine.received_downlink(sid)]
    assert received[-10:] == [b"after-%d" % n for n in range(10)]
    outage = [d for d in received if d.startswith(b"outage-")]
    # At most the queue's 25 newest outage frames made it, in order, the rest were dropped.
    assert len(outage) <= 25
    assert outage == sorted(outage, key=lambda d: int(d.split(b"-")[1]))
    # The callee's frames after the restart continue its sequence without repeats.
    assert len(set(heard)) == len(heard)


async def test_goaway_is_followed_without_losing_the_call(own_engine: Engine) -> None:
    engine = own_engine
    heard: list[int] = []
    async with engine.async_voice() as voice:
        sid = await answered_call(voice)
        with anyio.fail_after(30):
            async with await voice.audio_bridge.attach(
                sid, on_uplink=lambda f, ts: heard.append(seq_of(f))
            ) as bridge:
                await until(lambda: len(heard) >= 5)
                sent = await anyio.to_thread.run_sync(engine.relay_goaway)
                assert sent >= 2  # the bridge and the callee
                await until(lambda: bridge.stats.reconnects == 1, 10)
                count = len(heard)
                await until(lambda: len(heard) >= count + 10, 10)
                for n in range(5):
                    await bridge.publish_downlink(b"still-here-%d" % n, n)
                await until(
                    lambda: (
                        [f.data for f in engine.received_downlink(sid)][-5:]
                        == [b"still-here-%d" % n for n in range(5)]
                    ),
                    10,
                )
        assert engine.relay_sessions(sid) >= 1


async def test_bridges_sharing_a_connection_all_resume_after_a_relay_restart(
    own_engine: Engine,
) -> None:
    engine = own_engine
    heard: dict[str, list[int]] = {}
    async with engine.async_voice() as voice:
        sids = [await answered_call(voice) for _ in range(3)]
        with anyio.fail_after(40):
            bridges = []
            for sid in sids:
                seqs: list[int] = []
                heard[sid] = seqs

                def on_uplink(frame: bytes, timestamp_us: int, seqs: list[int] = seqs) -> None:
                    seqs.append(seq_of(frame))

                bridges.append(await voice.audio_bridge.attach(sid, on_uplink=on_uplink))
            try:
                await until(lambda: all(len(h) >= 5 for h in heard.values()))
                assert [c for c in engine.relay_client_sessions() if c & set(sids)] == [
                    frozenset(sids)
                ]
                await anyio.to_thread.run_sync(engine.stop_relay)
                await until(lambda: not any(b.connected for b in bridges), 8)
                before = {sid: len(h) for sid, h in heard.items()}
                await anyio.to_thread.run_sync(engine.start_relay)
                await until(lambda: all(b.stats.reconnects == 1 for b in bridges), 15)
                await until(lambda: all(len(heard[s]) >= before[s] + 10 for s in sids), 10)
                # Still one session for the three calls, each track under its own token.
                assert [c for c in engine.relay_client_sessions() if c & set(sids)] == [
                    frozenset(sids)
                ]
            finally:
                for bridge in bridges:
                    await bridge.aclose()
    for sid in sids:
        assert len(set(heard[sid])) == len(heard[sid])


async def test_an_outage_is_logged_once_at_warning_with_its_cost(
    own_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay goes away and comes back: one WARNING for the loss, one for the
    recovery (how long, how many attempts, how many frames dropped), at most one
    for a failed attempt and a bounded number of INFO lines in between; nothing
    per frame, however many frames were published meanwhile."""
    engine = own_engine
    heard: list[int] = []
    caplog.set_level(logging.INFO, logger="clutchcall")
    mine = threading.get_ident()  # the engine's own clients log from its threads
    async with engine.async_voice() as voice:
        sid = await answered_call(voice)
        with anyio.fail_after(30):
            async with await voice.audio_bridge.attach(
                sid, on_uplink=lambda f, ts: heard.append(seq_of(f))
            ) as bridge:
                await until(lambda: callee_joined(engine, sid) and len(heard) >= 5)
                await anyio.to_thread.run_sync(engine.stop_relay)
                await until(lambda: not bridge.connected, 8)
                for n in range(100):  # 1 s of audio into the outage
                    await bridge.publish_downlink(b"outage-%d" % n, n)
                    await anyio.sleep(0.01)
                await anyio.to_thread.run_sync(engine.start_relay)
                await until(lambda: bridge.stats.reconnects == 1, 15)
                before = len(heard)
                await until(lambda: len(heard) >= before + 5, 10)
                stats = bridge.stats
    check_outage_records(caplog, lambda r: r.thread == mine, sid, stats.dropped)


def test_an_outage_of_a_blocking_bridge_is_logged_once_at_warning(
    own_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The blocking twin: its client runs (and logs) on the bridge thread."""
    engine = own_engine
    heard: list[int] = []
    caplog.set_level(logging.INFO, logger="clutchcall")
    with engine.voice() as voice:
        sid = answered_call_sync(voice)
        with voice.audio_bridge.attach(
            sid, on_uplink=lambda f, ts: heard.append(seq_of(f))
        ) as bridge:
            wait_until(lambda: callee_joined(engine, sid) and len(heard) >= 5)
            engine.stop_relay()
            wait_until(lambda: not bridge.connected, 8)
            for n in range(100):  # 1 s of audio into the outage
                bridge.publish_downlink(b"outage-%d" % n, n)
                time.sleep(0.01)
            engine.start_relay()
            wait_until(lambda: bridge.stats.reconnects == 1, 15)
            before = len(heard)
            wait_until(lambda: len(heard) >= before + 5, 10)
            stats = bridge.stats
    check_outage_records(
        caplog, lambda r: r.threadName == "clutchcall-audio-bridge", sid, stats.dropped
    )


def check_outage_records(
    caplog: pytest.LogCaptureFixture,
    ours: Callable[[logging.LogRecord], bool],
    sid: str,
    dropped: int,
) -> None:
    """One outage of the bridge of ``sid``, as its client logged it (``ours``: the
    records of that client, not of the engine's own clients in its threads)."""
    records = [
        r
        for r in caplog.records
        if r.name.startswith("clutchcall") and ours(r) and r.levelno >= logging.INFO
    ]
    client = [r for r in records if r.name == "clutchcall.moqnet.client"]
    warnings = [r for r in client if r.levelno >= logging.WARNING]
    lost = [r for r in warnings if r.getMessage().startswith("lost the session")]
    back = [r for r in warnings if "is back after" in r.getMessage()]
    failed = [r for r in warnings if "attempt 1 failed" in r.getMessage()]
    assert len(lost) == 1 and len(back) == 1, [r.getMessage() for r in client]
    assert len(failed) <= 1
    assert len(warnings) == len(lost) + len(back) + len(failed), [r.getMessage() for r in warnings]
    assert lost[0].created <= back[0].created
    lost_fields, back_fields = vars(lost[0]), vars(back[0])  # the records' extra fields
    assert sid in lost_fields["call_sids"] and sid in back_fields["call_sids"]
    assert lost_fields["relay_url"] == back_fields["relay_url"]
    assert "?" not in back_fields["relay_url"]
    assert back_fields["reconnect_attempts"] >= 1
    assert 0 < back_fields["frames_dropped"] <= dropped
    outage = back_fields["outage_seconds"]
    still = [r for r in client if r.getMessage().startswith("still reconnecting")]
    assert len(still) <= 1 + outage / RECONNECT_LOG_INTERVAL
    # Nothing else: no line per frame or per attempt.
    assert len(client) == len(warnings) + len(still), [r.getMessage() for r in client]
    assert len(records) <= len(client) + 1, [r.getMessage() for r in records]
