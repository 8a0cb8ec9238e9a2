"""The async facade against the real dev engine, on asyncio and on trio."""

from __future__ import annotations

import anyio
import pytest
from control_helpers import CALLER_ID, DEST, NO_ANSWER, TRUNK, async_wait_status

from clutchcall import (
    AsyncVoice,
    CallStatus,
    ConflictError,
    EndReason,
    InvalidArgumentError,
    NotFoundError,
)
from clutchcall.dev import Engine

pytestmark = pytest.mark.anyio


async def test_call_lifecycle(async_voice: AsyncVoice) -> None:
    call = await async_voice.calls.originate(
        to=DEST, from_=CALLER_ID, trunk_id=TRUNK, agent="echo", ring_timeout_sec=10
    )
    assert call.status.value == "dialing" and call.ring_timeout_sec == 10
    await async_wait_status(call, {CallStatus.IN_PROGRESS})
    await call.transfer(agent="billing-bot")
    assert call.agent == "billing-bot"
    await call.transfer("+15557654321")
    assert (await async_voice.calls.get(sid=call.sid)).to == "+15557654321"
    await async_voice.agents.attach(call.sid, "healthcare-assistant")
    assert (await call.refresh()).agent == "healthcare-assistant"
    await call.hangup()
    assert call.status is CallStatus.COMPLETED and call.end_reason is EndReason.HANGUP
    with pytest.raises(ConflictError):
        await call.hangup()


async def test_concurrent_originates_are_independent(async_voice: AsyncVoice) -> None:
    sids: list[str] = []

    async def place() -> None:
        call = await async_voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
        sids.append(call.sid)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(place)
    assert len(set(sids)) == 10


async def test_errors_are_typed(async_voice: AsyncVoice) -> None:
    with pytest.raises(NotFoundError):
        await async_voice.calls.get(sid="CA" + "0" * 32)
    call = await async_voice.calls.originate(to=NO_ANSWER, from_=CALLER_ID, trunk_id=TRUNK)
    with pytest.raises(InvalidArgumentError):
        await call.transfer()
    with pytest.raises(ConflictError) as info:
        await call.transfer("+15557654321")
    assert info.value.code == "call_not_answered"


async def test_bridge_token_and_close(engine: Engine) -> None:
    async with engine.async_voice() as voice:
        call = await voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
        token = await voice.calls.create_bridge_token(call.sid)
        assert token.role == "server" and token.call_sid == call.sid
    assert voice._http.is_closed
