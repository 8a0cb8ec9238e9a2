"""Tasks that outlive the call that started them, on asyncio and trio alike.

A bridge is returned by ``await attach(...)`` and closed later, often from
another task (with the sync API every call is a new task on the portal). Its
work therefore runs in one background task that owns a task group for all of
the bridge's tasks; ``aclose()`` asks it to stop and waits until it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

_ASYNCIO_TASKS: set[asyncio.Task[None]] = set()

ThreadsafeCall = Callable[[Callable[[], object]], None]


def _on_asyncio() -> bool:
    """True under asyncio; anyio's other backend is trio."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def loop_id() -> int:
    """Identifies the running event loop."""
    if not _on_asyncio():
        import trio

        return id(trio.lowlevel.current_trio_token())
    return id(asyncio.get_running_loop())


def spawn(fn: Callable[[], Awaitable[None]], name: str) -> None:
    """Run ``fn()`` as a background task of the current event loop."""
    if not _on_asyncio():
        import trio

        trio.lowlevel.spawn_system_task(fn, name=name)
        return

    async def wrapper() -> None:
        await fn()

    task = asyncio.get_running_loop().create_task(wrapper(), name=name)
    _ASYNCIO_TASKS.add(task)
    task.add_done_callback(_ASYNCIO_TASKS.discard)


def threadsafe_caller() -> ThreadsafeCall:
    """A function that schedules a callback on the current loop from any thread.

    Scheduling on a loop that has already finished is silently ignored.
    """
    if not _on_asyncio():
        import trio

        token = trio.lowlevel.current_trio_token()

        def call_trio(fn: Callable[[], object]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn)

        return call_trio

    loop = asyncio.get_running_loop()

    def call_asyncio(fn: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(fn)

    return call_asyncio
