"""How the engine's own call members (simulated callees, agents) join the relay.

All members of one kind share one :class:`~clutchcall.bridge.MoqtClient` (one QUIC
connection and MoQT session): each call's tracks carry a bridge token of their
own, minted by the engine, the way an SDK client multiplexes its bridges. A busy
engine so pays one connection's packets and timers for its members, not one per
call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ..bridge._client import MoqtClient
from ..bridge.errors import BridgeClosedError
from . import tokens
from ._state import CallRecord, Store

#: Lifetime of the tokens the engine mints for its own members.
MEMBER_TOKEN_SECONDS = 24 * 3600.0


class MemberPool:
    """The shared client of one kind of member (one role, one implementation name)."""

    def __init__(
        self,
        store: Store,
        role: str,
        *,
        relay_url: Callable[[], str],
        cert_sha256: str,
        implementation: str,
        **options: Any,
    ) -> None:
        self.store = store
        self.role = role
        self._relay_url = relay_url
        self._cert_sha256 = cert_sha256
        self._implementation = implementation
        self._options = options
        #: The calls whose tracks are on the client, oldest first.
        self._calls: dict[str, CallRecord] = {}
        self._client: MoqtClient | None = None
        self._opening: anyio.Event | None = None

    def token(self, call: CallRecord) -> str:
        """A bridge token for ``call`` in this pool's role."""
        expires = time.time() + MEMBER_TOKEN_SECONDS
        claims = tokens.BridgeClaims(call.org_id, call.sid, self.role, expires)
        return tokens.mint(self.store.bridge_secret, claims)

    async def _credentials(self, fresh: bool) -> tuple[str, str | None]:
        """Set up with the token of a call still going (the relay refuses ended ones)."""
        now = self.store.clock()
        calls = list(self._calls.values())
        live = [call for call in calls if call.ending(now) is None]
        for call in live or calls:
            return self._relay_url(), self.token(call)
        raise BridgeClosedError("no call is left on the engine's member connection")

    async def _connected(self) -> MoqtClient:
        while True:
            client = self._client
            if client is not None and not client.ended:
                return client
            if self._opening is None:
                break
            await self._opening.wait()
        self._opening = opening = anyio.Event()
        try:
            client = MoqtClient(
                credentials=self._credentials,
                cert_sha256=self._cert_sha256,
                implementation=self._implementation,
                backoff=(0.05, 0.5),
                **self._options,
            )
            await client.connect()
            self._client = client
            return client
        finally:
            self._opening = None
            opening.set()

    @asynccontextmanager
    async def join(self, call: CallRecord) -> AsyncIterator[MoqtClient]:
        """The shared client, connected, for ``call``'s tracks; the caller closes its
        tracks before leaving. The last call to leave closes the client."""
        self._calls[call.sid] = call
        try:
            yield await self._connected()
        finally:
            del self._calls[call.sid]
            if not self._calls and self._client is not None:
                client, self._client = self._client, None
                with anyio.CancelScope(shield=True):
                    await client.aclose()
