"""Runs the agents attached to live calls, on the dev engine's relay.

For each call that is in progress with an ``agent`` set and someone on its media
(a caller's bridge, say), the host joins the call's media as the ``server`` role
through an ordinary :class:`~clutchcall.bridge.MoqtClient` (one shared by all
agents, each call's tracks under that call's token):
it subscribes to ``uplink``, reads the call's catalog for the format the caller
declared (the default, Opus 48 kHz mono 20 ms, if none is declared within
:data:`~clutchcall.dev._members.FORMAT_WAIT`), publishes ``downlink`` declaring that
same format, and runs the agent on that channel: the agent hears and speaks the
call's format (the relay transcodes for a caller that declares another). When
the call's agent changes, the new agent takes over the same subscription and
publication, so the caller hears no gap beyond the frame in flight; when the
call ends, the host leaves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import anyio.abc

from ..moqnet import AudioPublication, AudioSubscription
from ..moqt import DEFAULT_FORMAT, AudioFormat, VoiceRole, VoiceTrack
from ._members import SCAN_INTERVAL, Member, MemberRelay, Scanner
from ._state import CallRecord, Store
from .agents import Agent, AgentRegistry, HeardFrame, Transcript

logger = logging.getLogger(__name__)

AGENT_IMPLEMENTATION = "clutchcall-dev-agent"


@dataclass
class AgentRecord:
    """The agents that have run on one call, oldest first (thread-safe to read)."""

    call_sid: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    agents: list[tuple[str, Agent]] = field(default_factory=list)

    def transcripts(self) -> list[tuple[str, Transcript]]:
        with self.lock:
            return [(name, agent.transcript) for name, agent in self.agents]


class _Channel:
    """An AgentChannel over the host's subscription and publication of one call."""

    def __init__(
        self,
        call_sid: str,
        uplink: AudioSubscription,
        downlink: AudioPublication,
        fmt: AudioFormat = DEFAULT_FORMAT,
    ):
        self._call_sid = call_sid
        self._uplink = uplink
        self._downlink = downlink
        self._format = fmt

    @property
    def call_sid(self) -> str:
        return self._call_sid

    @property
    def format(self) -> AudioFormat:
        return self._format

    async def frames(self) -> AsyncIterator[HeardFrame]:
        async for frame in self._uplink:
            yield HeardFrame(frame.data, frame.timestamp_us)

    async def say(self, frame: bytes, timestamp_us: int | None = None) -> None:
        self._downlink.write_nowait(frame, timestamp_us)
        await anyio.lowlevel.checkpoint()


class AgentHost(Scanner):
    """Attaches agents to calls (runs in the relay's event loop)."""

    def __init__(self, store: Store, registry: AgentRegistry, relay: MemberRelay) -> None:
        super().__init__(store, relay)
        self.registry = registry
        self._records: dict[str, AgentRecord] = {}
        self._pool = self._member_pool(VoiceRole.SERVER, AGENT_IMPLEMENTATION)

    def record(self, call_sid: str) -> AgentRecord | None:
        with self._lock:
            return self._records.get(call_sid)

    def _scan(self, tg: anyio.abc.TaskGroup) -> None:
        now = self.store.clock()
        with self.store.lock:
            wanted = [
                c
                for c in self.store.calls.values()
                if c.agent is not None and c.status(now) == "in_progress"
            ]
        for call in wanted:
            # Nobody to talk to: an agent would only burn the engine's CPU.
            if call.sid not in self._running and self._others_present(call.sid):
                scope = anyio.CancelScope()
                self._running[call.sid] = scope
                tg.start_soon(self._host, call, scope)

    def _current_agent(self, call: CallRecord) -> str | None:
        with self.store.lock:
            if call.status(self.store.clock()) != "in_progress":
                return None
            agent = call.agent
        return agent if agent is not None and self._others_present(call.sid) else None

    async def _host(self, call: CallRecord, scope: anyio.CancelScope) -> None:
        with self._lock:
            record = self._records.setdefault(call.sid, AgentRecord(call.sid))
        try:
            with scope:
                async with self._pool.join(call) as member:
                    uplink = await member.subscribe(VoiceTrack.UPLINK)
                    catalog = await member.catalog()
                    fmt = await Member.declared(catalog, VoiceTrack.UPLINK) or DEFAULT_FORMAT
                    downlink = await member.publish(VoiceTrack.DOWNLINK, fmt)
                    channel = _Channel(call.sid, uplink, downlink, fmt)
                    await self._serve(call, channel, record)
        except Exception:
            logger.warning("agent host of %s failed", call.sid, exc_info=True)
        finally:
            self._running.pop(call.sid, None)

    async def _serve(self, call: CallRecord, channel: _Channel, record: AgentRecord) -> None:
        """Run the call's current agent; swap it when the call's agent changes."""
        while (name := self._current_agent(call)) is not None:
            agent = self.registry.create(name)
            with record.lock:
                record.agents.append((name, agent))
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_agent, agent, channel)
                while self._current_agent(call) == name:  # noqa: ASYNC110 - state lives in another thread
                    await anyio.sleep(SCAN_INTERVAL)
                tg.cancel_scope.cancel()

    @staticmethod
    async def _run_agent(agent: Agent, channel: _Channel) -> None:
        try:
            await agent.run(channel)
        except Exception:
            logger.warning("agent %s failed on %s", agent.name, channel.call_sid, exc_info=True)
