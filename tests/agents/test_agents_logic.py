"""Agent behaviour on an in-memory channel (the network path is tested end to end elsewhere)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import numpy as np
import pytest

from clutchcall.audio import make_codec, synth_silence, synth_tone
from clutchcall.dev.agents import (
    Agent,
    AgentChannel,
    AgentRegistry,
    BillingBot,
    EchoAgent,
    EnergyVad,
    HealthcareAssistant,
    HeardFrame,
    encode_pcm,
)
from clutchcall.moqt import DEFAULT_FORMAT, AudioFormat

pytestmark = pytest.mark.anyio


class MemoryChannel:
    """An AgentChannel fed from a list and recording what the agent says."""

    def __init__(self, frames: list[bytes], pace: float = 0.0) -> None:
        self._frames = frames
        self._pace = pace
        self.said: list[tuple[bytes, int | None]] = []
        self.done = anyio.Event()

    @property
    def call_sid(self) -> str:
        return "CA" + "a" * 32

    @property
    def format(self) -> AudioFormat:
        return DEFAULT_FORMAT

    async def frames(self) -> AsyncIterator[HeardFrame]:
        for i, data in enumerate(self._frames):
            if self._pace:
                await anyio.sleep(self._pace)
            yield HeardFrame(data, i * 20_000)
        self.done.set()

    async def say(self, frame: bytes, timestamp_us: int | None = None) -> None:
        self.said.append((frame, timestamp_us))


async def test_echo_repeats_every_frame_later_with_shifted_timestamps() -> None:
    frames = [bytes([i]) * 10 for i in range(20)]
    channel = MemoryChannel(frames, pace=0.002)
    agent = EchoAgent()
    started = anyio.current_time()
    with anyio.fail_after(5):
        await agent.run(channel)
    assert anyio.current_time() - started >= EchoAgent.delay_ms / 1000
    assert [f for f, _ in channel.said] == frames
    assert [ts for _, ts in channel.said] == [i * 20_000 + 200_000 for i in range(20)]
    assert agent.transcript.frames_heard == agent.transcript.frames_said == 20


def speech_then_silence(codec_frames: int = 30) -> list[bytes]:
    codec = make_codec("opus")
    pcm = np.concatenate(
        [
            synth_silence(0.2).reshape(-1),
            synth_tone(300, 0.5, amplitude=0.5).reshape(-1),
            synth_silence(0.4).reshape(-1),
        ]
    )
    return encode_pcm(codec, pcm)


@pytest.mark.parametrize("cls", [HealthcareAssistant, BillingBot])
async def test_scripted_agent_greets_hears_an_utterance_and_replies(cls: type[Agent]) -> None:
    agent = cls()
    agent.frame_interval = 0.0  # type: ignore[attr-defined]
    channel = MemoryChannel(speech_then_silence())
    with anyio.fail_after(5):
        await agent.run(channel)
    t = agent.transcript
    assert t.events == ["greeting", "speech", "reply"]
    assert t.utterances == 1 and t.undecodable == 0
    # 25 frames of tone; the count runs from the VAD's attack to the end of its release.
    assert 20 <= t.speech_frames <= 40
    greeting = len(agent.greeting())  # type: ignore[attr-defined]
    reply = len(agent.reply())  # type: ignore[attr-defined]
    assert t.frames_said == len(channel.said) == greeting + reply


async def test_the_two_assistants_answer_differently() -> None:
    assert HealthcareAssistant().reply() != BillingBot().reply()


async def test_undecodable_uplink_is_counted_not_fatal() -> None:
    agent = BillingBot()
    agent.frame_interval = 0.0
    channel = MemoryChannel([b"\xff\xff\xff not opus"] * 5)
    with anyio.fail_after(5):
        await agent.run(channel)
    assert agent.transcript.undecodable == 5
    assert agent.transcript.frames_said == len(agent.greeting())


def test_vad_needs_attack_and_release() -> None:
    vad = EnergyVad(threshold_dbfs=-40, attack=2, release=3)
    loud = synth_tone(400, 0.02, amplitude=0.5)
    quiet = synth_silence(0.02)
    assert [vad.push(p) for p in (loud, quiet, loud, loud, quiet, quiet, quiet)] == [
        None,
        None,
        None,
        "start",
        None,
        None,
        "end",
    ]


def test_registry_knows_builtins_and_rejects_bad_classes() -> None:
    registry = AgentRegistry()
    assert registry.names() == {"echo", "healthcare-assistant", "billing-bot"}
    assert isinstance(registry.create("echo"), EchoAgent)

    class Nameless(Agent):
        async def run(self, channel: AgentChannel) -> None:
            return None

    with pytest.raises(ValueError, match="name"):
        registry.register(Nameless)
