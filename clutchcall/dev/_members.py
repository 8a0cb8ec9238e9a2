"""How the engine's own call members (simulated callees, agents) join the relay.

All members of one kind share one :class:`~clutchcall.moqnet.MoqtClient` (one QUIC
connection and MoQT session): each call's tracks carry a bridge token of their
own, minted by the engine, the way an SDK client multiplexes its bridges. A busy
engine so pays one connection's packets and timers for its members, not one per
call.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from ..errors import BridgeClosedError, BridgeFormatError
from ..moqnet import AudioPublication, AudioSubscription, MoqtClient, SharedClient
from ..moqnet.client import CatalogSubscription
from ..moqt import AudioFormat, VoiceRole, VoiceTrack
from . import tokens
from ._state import CallRecord, Store

#: Lifetime of the tokens the engine mints for its own members.
MEMBER_TOKEN_SECONDS = 24 * 3600.0
#: How often the engine's members look for calls to join or leave.
SCAN_INTERVAL = 0.02
#: How long a member joining a call waits for the other side's declared format
#: (a bridge declares it as it attaches) before it picks the default.
FORMAT_WAIT = 0.5


@dataclass(frozen=True)
class MemberRelay:
    """How the engine's members reach the relay, and when a call is worth joining."""

    #: The relay's URL (known once it listens).
    url: Callable[[], str]
    #: The SHA-256 fingerprint of the relay's certificate.
    cert_sha256: str
    #: Whether a call has a session on the relay other than the engine's own members.
    others_present: Callable[[str], bool]


class Scanner(abc.ABC):
    """A kind of member (simulated callees, agents): :meth:`run` looks at the calls
    every :data:`SCAN_INTERVAL` and starts the members' tasks in its task group."""

    def __init__(self, store: Store, relay: MemberRelay) -> None:
        self.store = store
        self._relay = relay
        self._others_present = relay.others_present
        self._lock = threading.Lock()
        #: The member task of each call being served, by call sid.
        self._running: dict[str, anyio.CancelScope] = {}

    def _member_pool(self, role: VoiceRole, implementation: str, **options: Any) -> MemberPool:
        """A shared client for members in ``role`` (``options``: the client's)."""
        relay = self._relay
        return MemberPool(
            self.store,
            role,
            relay_url=relay.url,
            cert_sha256=relay.cert_sha256,
            implementation=implementation,
            **options,
        )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                self._scan(tg)
                await anyio.sleep(SCAN_INTERVAL)

    @abc.abstractmethod
    def _scan(self, tg: anyio.abc.TaskGroup) -> None:
        """Join the calls that need a member now, in ``tg``; leave the others."""


class Member:
    """One call on the shared client: opens that call's tracks under its token and
    closes them when the member leaves."""

    def __init__(self, client: MoqtClient, call_sid: str, token: str) -> None:
        self._client = client
        self._call_sid = call_sid
        self._token = token
        self._tracks: list[AudioSubscription | AudioPublication | CatalogSubscription] = []

    async def subscribe(self, track: VoiceTrack) -> AudioSubscription:
        subscription = await self._client.subscribe_audio(self._call_sid, track, token=self._token)
        self._tracks.append(subscription)
        return subscription

    async def publish(self, track: VoiceTrack, fmt: AudioFormat | None = None) -> AudioPublication:
        publication = await self._client.publish_audio(
            self._call_sid, track, token=self._token, format=fmt
        )
        self._tracks.append(publication)
        return publication

    async def catalog(self) -> CatalogSubscription:
        """The call's merged catalog (what each side declared)."""
        subscription = await self._client.subscribe_catalog(self._call_sid, token=self._token)
        self._tracks.append(subscription)
        return subscription

    @staticmethod
    async def declared(
        catalog: CatalogSubscription, track: VoiceTrack, within: float = FORMAT_WAIT
    ) -> AudioFormat | None:
        """The format the other side declared for ``track``, waiting ``within``
        seconds for it (None: none declared by then)."""
        with anyio.move_on_after(within):
            while True:
                latest = catalog.latest
                fmt = latest.format_of(track) if latest is not None else None
                if fmt is not None:
                    return fmt
                try:
                    await catalog.__anext__()
                except StopAsyncIteration:
                    return None
                except BridgeFormatError:  # a malformed catalog: wait for the next
                    continue
        return None

    async def close(self) -> None:
        for track in self._tracks:
            await track.aclose()


class MemberPool:
    """The shared client of one kind of member (one role, one implementation name)."""

    def __init__(
        self,
        store: Store,
        role: VoiceRole,
        *,
        relay_url: Callable[[], str],
        cert_sha256: str,
        implementation: str,
        **options: Any,
    ) -> None:
        self.store = store
        self.role = role
        self._relay_url = relay_url
        self._shared: SharedClient[CallRecord] = SharedClient(
            self._credentials,
            cert_sha256=cert_sha256,
            implementation=implementation,
            backoff=(0.05, 0.5),
            **options,
        )

    def token(self, call: CallRecord) -> str:
        """A bridge token for ``call`` in this pool's role."""
        expires = time.time() + MEMBER_TOKEN_SECONDS
        claims = tokens.BridgeClaims(call.org_id, call.sid, self.role, expires)
        return tokens.mint(self.store.bridge_secret, claims)

    async def _credentials(self, calls: list[CallRecord], fresh: bool) -> tuple[str, str | None]:
        """Set up with the token of a call still going (the relay refuses ended ones)."""
        now = self.store.clock()
        live = [call for call in calls if call.ending(now) is None]
        for call in live or calls:
            return self._relay_url(), self.token(call)
        raise BridgeClosedError("no call is left on the engine's member connection")

    @asynccontextmanager
    async def join(self, call: CallRecord) -> AsyncIterator[Member]:
        """``call`` on the shared client (connected first if need be); leaving closes
        its tracks, and the last call to leave closes the client."""
        member = Member(await self._shared.join(call), call.sid, self.token(call))
        try:
            yield member
        finally:
            with anyio.CancelScope(shield=True):
                await member.close()
                await self._shared.leave(call)
