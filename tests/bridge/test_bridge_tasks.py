"""Who owns the bridges' tasks: ``async with AsyncVoice(...)`` does, and leaving it
leaves none behind; without ``async with`` they are background tasks that
``close()`` stops. asyncio and trio, against the dev engine."""

from __future__ import annotations

import anyio
import pytest
from bridge_fixtures import hang_up_calls_afterwards  # noqa: F401
from bridge_helpers import answered_call, until

from clutchcall.dev import Engine
from clutchcall.moqnet import MoqtClient

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def tasks() -> set[int]:
    """The IDs of the tasks running in this event loop."""
    return {task.id for task in anyio.get_running_tasks()}


async def test_leaving_async_with_cancels_and_joins_every_bridge_task(engine: Engine) -> None:
    before = tasks()
    with anyio.fail_after(20):
        async with engine.async_voice() as setup:
            sid = await answered_call(setup)
        async with engine.async_voice() as voice:
            # A consumer that never finishes, and bridges left open: leaving must
            # still end them, and every task they started.
            stuck = anyio.Event()

            async def never_done(frame: bytes, timestamp_us: int) -> None:
                stuck.set()
                await anyio.sleep_forever()

            server = await voice.audio_bridge.attach(sid, on_uplink=never_done)
            caller = await voice.audio_bridge.attach_caller(sid)
            while not stuck.is_set():  # the caller is heard on the server side
                await caller.publish_uplink(b"hello")
                await anyio.sleep(0.02)
            # Their work runs in tasks of the voice's own task group (children of the
            # task that entered it), not in tasks nobody owns.
            me = anyio.get_current_task().id
            owned = [
                t for t in anyio.get_running_tasks() if (t.name or "").startswith("clutchcall-")
            ]
            assert {t.name for t in owned} >= {f"clutchcall-bridge-{sid}", "clutchcall-moqt-client"}
            assert all(t.parent_id == me for t in owned), [(t.name, t.parent_id) for t in owned]
        assert tasks() == before
        assert server.ended and caller.ended and server.closed
    await until(lambda: engine.relay_sessions(sid) <= 1)


async def test_an_error_in_the_block_propagates_unchanged_and_no_task_stays(
    engine: Engine,
) -> None:
    before = tasks()
    with anyio.fail_after(20):
        async with engine.async_voice() as setup:
            sid = await answered_call(setup)
        with pytest.raises(LookupError, match="the user's own error"):
            async with engine.async_voice() as voice:
                bridge = await voice.audio_bridge.attach(sid)
                raise LookupError("the user's own error")
        assert tasks() == before
        assert bridge.closed


async def test_without_async_with_bridges_run_until_close(engine: Engine) -> None:
    """The documented fallback: background tasks of the loop, stopped by close()."""
    before = tasks()
    with anyio.fail_after(20):
        voice = engine.async_voice()
        try:
            sid = await answered_call(voice)
            first = await voice.audio_bridge.attach(sid)
            second = await voice.audio_bridge.attach_caller(sid)
            heard = anyio.Event()
            first.on_uplink(lambda frame, timestamp_us: heard.set())
            while not heard.is_set():  # the caller side is heard on the server side
                await second.publish_uplink(b"hello")
                await anyio.sleep(0.02)
            await second.aclose()
            assert not first.ended
        finally:
            await voice.close()
        assert first.ended and second.ended
        # The background tasks finish once closed (not joined: they were not owned).
        await until(lambda: tasks() == before)


async def test_the_raw_client_in_async_with_leaves_no_task_behind(engine: Engine) -> None:
    before = tasks()
    with anyio.fail_after(20):
        async with engine.async_voice() as voice:
            sid = await answered_call(voice)
            token = await voice.calls.create_bridge_token(sid, role="server")
        url = engine.relay_url
        assert url is not None
        async with MoqtClient(
            url, token=token.token, verify=engine.relay_ca_file or False
        ) as client:
            subscription = await client.subscribe_audio(sid, "uplink")
            await subscription.receive()
            me = anyio.get_current_task().id
            (task,) = [t for t in anyio.get_running_tasks() if t.name == "clutchcall-moqt-client"]
            assert task.parent_id == me  # owned by the client's own task group
        assert tasks() == before
