"""Server-side AI agents for the dev engine, and the interface to plug in your own.

An agent is bound to one call at a time. It hears the caller (the call's
``uplink`` track) and speaks (the ``downlink`` track) through an
:class:`AgentChannel`; the engine owns the network side, so an agent is plain
async code::

    from clutchcall.dev import Engine
    from clutchcall.dev.agents import Agent, AgentChannel

    class Parrot(Agent):
        name = "parrot"

        async def run(self, channel: AgentChannel) -> None:
            async for frame in channel.frames():
                await channel.say(frame.data)

    with Engine(agents=[Parrot]) as engine:
        ...  # originate(..., agent="parrot") or agents.attach(sid, "parrot")

Built in: ``echo`` (repeats what it hears after a short delay) and two scripted
assistants, ``healthcare-assistant`` and ``billing-bot``, which greet the caller,
listen with an energy voice-activity detector, answer each utterance with a short
tone phrase of their own, and keep counts of what they heard (:class:`Transcript`).
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import anyio
import numpy as np

from ..audio import AudioCodecImpl, AudioError, make_codec, synth_prompt, synth_silence, synth_tone
from ..audio.codecs import Pcm
from ..moqt import DEFAULT_FORMAT, AudioFormat

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_MS = 20
FRAME_US = FRAME_MS * 1000


@dataclass(frozen=True)
class HeardFrame:
    """One uplink frame as an agent receives it."""

    data: bytes
    timestamp_us: int


class AgentChannel(Protocol):
    """What an agent sees of its call."""

    @property
    def call_sid(self) -> str: ...

    @property
    def format(self) -> AudioFormat:
        """The call's audio format: what :meth:`frames` yields and :meth:`say` takes."""
        ...

    def frames(self) -> AsyncIterator[HeardFrame]:
        """The caller's frames (uplink), in order, until the call's media ends."""
        ...

    async def say(self, frame: bytes, timestamp_us: int | None = None) -> None:
        """Send one encoded frame to the caller (downlink)."""
        ...


class Agent(abc.ABC):
    """Base class of agents the dev engine can attach to calls.

    Subclasses set ``name`` (the id used in ``originate(agent=...)`` and
    ``agents.attach``) and implement :meth:`run`, which lasts as long as the agent
    is on the call; the engine cancels it when the call ends or another agent
    takes over. Frames are in ``channel.format``: the format the caller declared
    (48 kHz mono Opus in 20 ms frames, the bridge default, if it declared none).
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self.transcript = Transcript()

    @abc.abstractmethod
    async def run(self, channel: AgentChannel) -> None:
        """Talk with the caller until cancelled (or until returning, to go quiet)."""


@dataclass
class Transcript:
    """What an agent heard and said, for tests and the demo's report."""

    frames_heard: int = 0
    frames_said: int = 0
    undecodable: int = 0
    utterances: int = 0
    speech_frames: int = 0
    events: list[str] = field(default_factory=list)


class EchoAgent(Agent):
    """Repeats every uplink frame on downlink ``delay_ms`` later."""

    name = "echo"
    delay_ms: ClassVar[int] = 200

    async def run(self, channel: AgentChannel) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[float, HeardFrame]](500)
        delay = self.delay_ms / 1000

        async def speaker() -> None:
            async with receive:
                async for due, frame in receive:
                    wait = due - anyio.current_time()
                    if wait > 0:
                        await anyio.sleep(wait)
                    await channel.say(frame.data, frame.timestamp_us + self.delay_ms * 1000)
                    self.transcript.frames_said += 1

        async with anyio.create_task_group() as tg, send:
            tg.start_soon(speaker)
            async for frame in channel.frames():
                self.transcript.frames_heard += 1
                await send.send((anyio.current_time() + delay, frame))


class EnergyVad:
    """Frame-energy voice activity detection with hangover.

    Speech starts after ``attack`` consecutive frames above ``threshold_dbfs`` and
    an utterance ends after ``release`` consecutive frames below it.
    """

    def __init__(self, threshold_dbfs: float = -40.0, attack: int = 2, release: int = 10) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.attack = attack
        self.release = release
        self.speaking = False
        self._loud = 0
        self._quiet = 0

    @staticmethod
    def level_dbfs(pcm: Pcm) -> float:
        samples = pcm.astype(np.float64).reshape(-1)
        rms = math.sqrt(float(np.mean(samples * samples))) if samples.size else 0.0
        return 20 * math.log10(max(rms, 1e-9) / 32768.0)

    def push(self, pcm: Pcm) -> str | None:
        """Feed one frame; returns ``"start"`` or ``"end"`` when an utterance begins or ends."""
        loud = self.level_dbfs(pcm) > self.threshold_dbfs
        if loud:
            self._loud += 1
            self._quiet = 0
            if not self.speaking and self._loud >= self.attack:
                self.speaking = True
                return "start"
        else:
            self._loud = 0
            self._quiet += 1
            if self.speaking and self._quiet >= self.release:
                self.speaking = False
                return "end"
        return None


def encode_pcm(codec: AudioCodecImpl, pcm: Pcm) -> list[bytes]:
    """Cut PCM (``(samples, channels)``) into whole frames (zero-padding the last)
    and encode each."""
    n = codec.samples_per_frame
    frames = pcm.reshape(-1, codec.channels)
    if frames.shape[0] % n:
        pad = np.zeros((n - frames.shape[0] % n, codec.channels), dtype=np.int16)
        frames = np.concatenate([frames, pad])
    return [codec.encode(frames[i : i + n]) for i in range(0, frames.shape[0], n)]


class ScriptedAgent(Agent):
    """Greets, listens, and answers each utterance with its own tone phrase."""

    name = "scripted"
    #: Frequencies (Hz) of the reply phrase: one 120 ms tone each.
    reply_tones: ClassVar[Sequence[float]] = (660.0, 880.0)
    #: Seconds between 20 ms frames it says (scaled for other frame durations):
    #: real time. Zero sends as fast as possible.
    frame_interval: float = FRAME_MS / 1000

    def __init__(self) -> None:
        super().__init__()
        self.format = DEFAULT_FORMAT
        self._codec = self._make_codec(DEFAULT_FORMAT)
        self._decoder = self._make_codec(DEFAULT_FORMAT)
        self.vad = EnergyVad()

    @staticmethod
    def _make_codec(fmt: AudioFormat) -> AudioCodecImpl:
        return make_codec(
            fmt.codec, sample_rate=fmt.sample_rate, channels=fmt.channels, frame_ms=fmt.frame_ms
        )

    def use_format(self, fmt: AudioFormat) -> None:
        """Hear and speak ``fmt`` (the call's format) from now on."""
        self.format = fmt
        self._codec = self._make_codec(fmt)
        self._decoder = self._make_codec(fmt)

    def greeting(self) -> list[bytes]:
        fmt = self.format
        return encode_pcm(self._codec, synth_prompt(fmt.sample_rate, channels=fmt.channels))

    def reply(self) -> list[bytes]:
        rate, channels = self.format.sample_rate, self.format.channels
        parts = [synth_tone(f, 0.12, rate, channels=channels) for f in self.reply_tones]
        parts.append(synth_silence(0.1, rate, channels=channels))
        return encode_pcm(self._codec, np.concatenate(parts))

    async def run(self, channel: AgentChannel) -> None:
        self.use_format(getattr(channel, "format", DEFAULT_FORMAT))
        send, receive = anyio.create_memory_object_stream[list[bytes]](16)

        async def speaker() -> None:
            """Plays queued phrases in real time, one frame every 20 ms."""
            async with receive:
                async for phrase in receive:
                    next_at = anyio.current_time()
                    interval = self.frame_interval * self.format.frame_ms / FRAME_MS
                    for frame in phrase:
                        await channel.say(frame)
                        self.transcript.frames_said += 1
                        next_at += interval
                        await anyio.sleep(max(0.0, next_at - anyio.current_time()))

        async with anyio.create_task_group() as tg, send:
            tg.start_soon(speaker)
            self.transcript.events.append("greeting")
            await send.send(self.greeting())
            async for frame in channel.frames():
                self.transcript.frames_heard += 1
                try:
                    pcm = self._decoder.decode(frame.data)
                except AudioError:
                    self.transcript.undecodable += 1
                    continue
                if self.vad.speaking:
                    self.transcript.speech_frames += 1
                change = self.vad.push(pcm)
                if change == "start":
                    self.transcript.events.append("speech")
                elif change == "end":
                    self.transcript.utterances += 1
                    self.transcript.events.append("reply")
                    await send.send(self.reply())


class HealthcareAssistant(ScriptedAgent):
    name = "healthcare-assistant"
    reply_tones = (523.25, 659.25, 783.99)


class BillingBot(ScriptedAgent):
    name = "billing-bot"
    reply_tones = (440.0, 349.23)


BUILTIN_AGENT_CLASSES: tuple[type[Agent], ...] = (EchoAgent, HealthcareAssistant, BillingBot)


class AgentRegistry:
    """Agent classes by name; the engine's control plane accepts exactly these names."""

    def __init__(self, classes: Sequence[type[Agent]] = BUILTIN_AGENT_CLASSES) -> None:
        self._classes: dict[str, type[Agent]] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type[Agent]) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{cls.__name__} needs a class attribute `name`")
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise TypeError(f"{cls!r} is not an Agent subclass")
        self._classes[name] = cls

    def names(self) -> set[str]:
        return set(self._classes)

    def create(self, name: str) -> Agent:
        return self._classes[name]()
