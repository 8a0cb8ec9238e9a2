"""One MoqtClient shared by the tracks of many calls.

Used for the audio bridges of one client (per relay, role and event loop) and for
the dev engine's own call members (simulated callees, agents). Each call's tracks
carry that call's bridge token; the session's setup shows a token of one of the
members present when it dials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from .client import MoqtClient

M = TypeVar("M")

#: ``credentials(members, fresh)``: the URL and setup token to dial with.
MemberCredentials = Callable[[list[M], bool], Awaitable[tuple[str, str | None]]]


class SharedClient(Generic[M]):
    """A MoqtClient made for the first member and closed when the last one leaves.

    :meth:`join` connects it (once: members joining meanwhile wait for that
    connect, and a client that ended for good is replaced); :meth:`leave` closes it
    when no member is left. ``client_options`` go to :class:`MoqtClient`. Each
    client's task runs in :attr:`task_group` as it is when the client is made
    (None: a background task of the event loop).
    """

    def __init__(
        self,
        credentials: MemberCredentials[M],
        *,
        task_group: anyio.abc.TaskGroup | None = None,
        **client_options: Any,
    ) -> None:
        #: The members, oldest first.
        self.members: list[M] = []
        self.client: MoqtClient | None = None
        self.task_group = task_group
        self._credentials = credentials
        self._options = client_options
        self._opening: anyio.Event | None = None

    async def join(self, member: M) -> MoqtClient:
        """Add ``member`` (at once, before waiting) and return the connected client."""
        self.members.append(member)
        try:
            return await self._connected()
        except BaseException:
            self.members.remove(member)
            raise

    async def leave(self, member: M) -> None:
        """Remove ``member``; the last one to leave closes the client."""
        if member in self.members:
            self.members.remove(member)
        client = self.client
        if self.members or client is None:
            await anyio.lowlevel.checkpoint()
            return
        self.client = None  # a member joining while this one closes gets a new client
        await client.aclose()

    async def _connected(self) -> MoqtClient:
        while True:
            client = self.client
            if client is not None and not client.ended:
                return client
            if self._opening is None:
                break
            await self._opening.wait()
        self._opening = opening = anyio.Event()
        try:

            async def credentials(fresh: bool) -> tuple[str, str | None]:
                return await self._credentials(list(self.members), fresh)

            client = MoqtClient(credentials=credentials, **self._options)
            await client.connect(task_group=self.task_group)
            self.client = client
            return client
        finally:
            self._opening = None
            opening.set()
