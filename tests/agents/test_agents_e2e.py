"""Agents on live calls, end to end: control plane, relay, agent host, real sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from clutchcall import AsyncVoice, CallStatus, NotFoundError, Voice
from clutchcall.audio import make_codec, synth_silence, synth_tone
from clutchcall.dev import Engine
from clutchcall.dev.agents import Agent, AgentChannel, encode_pcm

pytestmark = pytest.mark.timeout(60)

DEST = "+15551234567"
FROM = "+15558675309"


def wait_until(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def answered(voice: Voice, agent: str | None) -> str:
    call = voice.calls.originate(to=DEST, from_=FROM, trunk_id="trunk_main", agent=agent)
    wait_until(lambda: voice.calls.get(sid=call.sid).status is CallStatus.IN_PROGRESS)
    return call.sid


@pytest.fixture
def hangups(voice: Voice) -> Iterator[list[str]]:
    sids: list[str] = []
    yield sids
    for sid in sids:
        if not voice.calls.get(sid=sid).ended:
            voice.calls.hangup(sid)


def utterance_frames() -> list[bytes]:
    codec = make_codec("opus")
    pcm = np.concatenate(
        [synth_tone(300, 0.4, amplitude=0.5).reshape(-1), synth_silence(0.4).reshape(-1)]
    )
    return encode_pcm(codec, pcm)


def test_agent_given_to_originate_greets_hears_and_replies(
    voice: Voice, engine: Engine, hangups: list[str]
) -> None:
    sid = answered(voice, "healthcare-assistant")
    hangups.append(sid)
    heard: list[bytes] = []
    with voice.audio_bridge.attach_caller(sid, on_downlink=lambda f, ts: heard.append(f)) as caller:
        wait_until(lambda: len(heard) >= 20)  # the greeting is arriving
        decoder = make_codec("opus")
        assert all(decoder.decode(f).shape == (960, 1) for f in heard[:20])
        for frame in utterance_frames():
            caller.publish_uplink(frame)
            time.sleep(0.02)
        record = engine.agent_record(sid)
        assert record is not None
        wait_until(lambda: record.transcripts()[0][1].utterances >= 1)
    name, transcript = record.transcripts()[0]
    assert name == "healthcare-assistant"
    assert transcript.events[:3] == ["greeting", "speech", "reply"]
    assert transcript.speech_frames >= 15


def test_echo_agent_repeats_the_callers_frames(
    voice: Voice, engine: Engine, hangups: list[str]
) -> None:
    sid = answered(voice, None)
    hangups.append(sid)
    voice.agents.attach(sid, "echo")
    heard: list[bytes] = []
    sent: list[bytes] = []

    def echoed() -> list[bytes]:
        return [f for f in heard if f.startswith(b"echo-me")]

    with voice.audio_bridge.attach_caller(sid, on_downlink=lambda f, ts: heard.append(f)) as caller:
        # The agent joins once the caller is on the call: talk until it answers back.
        for n in range(500):
            if len(echoed()) >= 30:
                break
            sent.append(b"echo-me-%03d" % n)
            caller.publish_uplink(sent[-1])
            time.sleep(0.01)
        wait_until(lambda: len(echoed()) >= 30)
    back = echoed()
    start = sent.index(back[0])
    assert back == sent[start : start + len(back)]  # every frame, in order, from its first
    assert engine.agent_record(sid) is not None


def test_reattaching_swaps_the_agent_on_the_same_downlink(
    voice: Voice, engine: Engine, hangups: list[str]
) -> None:
    sid = answered(voice, "billing-bot")
    hangups.append(sid)
    arrivals: list[float] = []
    lock = threading.Lock()

    def on_downlink(frame: bytes, ts: int) -> None:
        with lock:
            arrivals.append(time.monotonic())

    with voice.audio_bridge.attach_caller(sid, on_downlink=on_downlink):
        wait_until(lambda: len(arrivals) >= 10)
        swap_at = time.monotonic()
        voice.agents.attach(sid, "healthcare-assistant")
        record = engine.agent_record(sid)
        assert record is not None
        wait_until(
            lambda: [n for n, _ in record.transcripts()] == ["billing-bot", "healthcare-assistant"]
        )
        wait_until(lambda: record.transcripts()[1][1].frames_said >= 10)
        time.sleep(0.1)
    assert voice.calls.get(sid=sid).agent == "healthcare-assistant"
    with lock:
        around = [t for t in arrivals if swap_at - 0.5 <= t <= swap_at + 1.0]
    gaps = np.diff(np.array(around))
    # Downlink keeps flowing across the swap: no silence longer than a few frame periods.
    assert len(around) > 20 and float(gaps.max()) < 0.25


def test_unknown_agents_are_404(voice: Voice, hangups: list[str]) -> None:
    sid = answered(voice, None)
    hangups.append(sid)
    with pytest.raises(NotFoundError):
        voice.agents.attach(sid, "nobody-here")


class Counter(Agent):
    """A custom agent: says one frame per frame heard, numbered."""

    name = "counter"

    async def run(self, channel: AgentChannel) -> None:
        n = 0
        async for _frame in channel.frames():
            n += 1
            await channel.say(b"count-%d" % n)


@pytest.mark.anyio
async def test_registered_custom_agent_runs_on_async_clients(engine: Engine) -> None:
    engine.register_agent(Counter)
    async with engine.async_voice() as voice:
        await _custom_agent_round_trip(voice)


async def _custom_agent_round_trip(voice: AsyncVoice) -> None:
    import anyio

    call = await voice.calls.originate(to=DEST, from_=FROM, trunk_id="t", agent="counter")
    try:
        with anyio.fail_after(10):
            while (await voice.calls.get(sid=call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        got: list[bytes] = []
        async with await voice.audio_bridge.attach_caller(
            call.sid, on_downlink=lambda f, ts: got.append(f)
        ) as caller:
            with anyio.fail_after(10):
                while not got:
                    await caller.publish_uplink(b"hello")
                    await anyio.sleep(0.02)
        assert got[0].startswith(b"count-")
    finally:
        await voice.calls.hangup(call.sid)
