"""The sync facade against the real dev engine over real sockets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from control_helpers import (
    BUSY,
    CALLER_ID,
    DEST,
    HANGS_UP,
    INVALID,
    NO_ANSWER,
    TRUNK,
    wait_status,
)

from clutchcall import (
    AuthenticationError,
    CallStatus,
    ConflictError,
    EndReason,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
    Voice,
)
from clutchcall.dev import Engine


def test_originate_returns_a_dialing_call_with_every_field(voice: Voice) -> None:
    before = datetime.now(UTC)
    call = voice.calls.originate(
        to=DEST, from_=CALLER_ID, trunk_id=TRUNK, agent="healthcare-assistant"
    )
    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert call.status is CallStatus.DIALING
    assert (call.to, call.from_, call.trunk_id, call.agent) == (
        DEST,
        CALLER_ID,
        TRUNK,
        "healthcare-assistant",
    )
    assert call.started_at.tzinfo is not None
    assert abs((call.started_at - before).total_seconds()) < 5
    assert call.ring_timeout_sec == 30
    assert call.answered_at is None and call.ended_at is None and call.end_reason is None
    assert not call.ended


def test_get_follows_the_call_from_dialing_to_answered(voice: Voice) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    seen = [call.status]
    fetched = voice.calls.get(sid=call.sid)
    while fetched.status is not CallStatus.IN_PROGRESS:
        fetched = voice.calls.get(sid=call.sid)
        if fetched.status is not seen[-1]:
            seen.append(fetched.status)
    assert seen[0] is CallStatus.DIALING
    assert seen[-1] is CallStatus.IN_PROGRESS
    assert set(seen) <= {CallStatus.DIALING, CallStatus.RINGING, CallStatus.IN_PROGRESS}
    assert fetched.answered_at is not None and fetched.answered_at >= fetched.started_at


def test_transfer_to_number_agent_and_shorthand_then_hangup(voice: Voice) -> None:
    call = wait_status(
        voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK), {CallStatus.IN_PROGRESS}
    )
    call.transfer(agent="billing-bot")
    assert call.agent == "billing-bot"
    call.transfer(to="+15557654321")
    assert call.to == "+15557654321" and call.agent is None
    call.transfer("+15550001111")
    assert voice.calls.get(sid=call.sid).to == "+15550001111"
    call.hangup()
    assert call.status is CallStatus.COMPLETED
    assert call.end_reason is EndReason.HANGUP
    assert call.ended and call.ended_at is not None


def test_hangup_before_answer_cancels(voice: Voice) -> None:
    call = voice.calls.originate(to=NO_ANSWER, from_=CALLER_ID, trunk_id=TRUNK)
    ended = voice.calls.hangup(call.sid)
    assert ended.status is CallStatus.COMPLETED
    assert ended.end_reason is EndReason.CANCELED


def test_ended_calls_refuse_transfer_hangup_and_agents(voice: Voice) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    call.hangup()
    actions: list[Callable[[], None]] = [call.hangup, lambda: call.transfer("+15557654321")]
    for action in actions:
        with pytest.raises(ConflictError) as info:
            action()
        assert info.value.status_code == 409 and info.value.code == "call_ended"
        assert info.value.request_id and info.value.request_id.startswith("req_")
    with pytest.raises(ConflictError):
        voice.agents.attach(call.sid, "echo")


def test_transfer_before_answer_is_a_conflict(voice: Voice) -> None:
    call = voice.calls.originate(to=NO_ANSWER, from_=CALLER_ID, trunk_id=TRUNK)
    with pytest.raises(ConflictError) as info:
        call.transfer("+15557654321")
    assert info.value.code == "call_not_answered"


@pytest.mark.parametrize(
    ("to", "status", "reason"),
    [
        (INVALID, CallStatus.FAILED, EndReason.INVALID_NUMBER),
        (BUSY, CallStatus.FAILED, EndReason.BUSY),
        (NO_ANSWER, CallStatus.NO_ANSWER, EndReason.NO_ANSWER),
        (HANGS_UP, CallStatus.COMPLETED, EndReason.CALLEE_HANGUP),
    ],
)
def test_magic_numbers_choose_the_outcome(
    voice: Voice, to: str, status: CallStatus, reason: EndReason
) -> None:
    call = voice.calls.originate(to=to, from_=CALLER_ID, trunk_id=TRUNK, ring_timeout_sec=5)
    wait_status(call, {status})
    assert call.end_reason is reason
    if to == HANGS_UP:
        assert call.answered_at is not None
    else:
        assert call.answered_at is None


@pytest.mark.parametrize(("asked", "clamped"), [(1, 5), (5, 5), (45, 45), (120, 120), (10**6, 120)])
def test_ring_timeout_is_clamped(voice: Voice, asked: int, clamped: int) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK, ring_timeout_sec=asked)
    assert call.ring_timeout_sec == clamped


def test_agents_attach_replaces_the_agent(voice: Voice) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK, agent="echo")
    voice.agents.attach(call.sid, "billing-bot")
    assert call.refresh().agent == "billing-bot"


def test_unknown_agent_is_not_found(voice: Voice) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    with pytest.raises(NotFoundError) as info:
        voice.agents.attach(call.sid, "no-such-agent")
    assert info.value.code == "agent_not_found"
    with pytest.raises(NotFoundError):
        voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK, agent="nobody")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"to": "+15557654321", "agent": "echo"}, "exactly one"),
        ({"to": ""}, "non-empty"),
    ],
)
def test_transfer_arguments_are_checked_before_any_request(
    voice: Voice, engine: Engine, kwargs: dict[str, Any], message: str
) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    with pytest.raises(InvalidArgumentError, match=message):
        call.transfer(**kwargs)
    assert engine.requests(path="/transfer$") == []


def test_invalid_numbers_are_rejected_with_field_errors(voice: Voice) -> None:
    with pytest.raises(UnprocessableEntityError) as info:
        voice.calls.originate(to="5551234567", from_="+1", trunk_id="bad trunk")
    err = info.value
    assert err.status_code == 422 and err.code == "validation_failed"
    assert {e.field for e in err.errors} == {"to", "from", "trunkId"}
    assert "to" in str(err)


def test_unknown_sid_is_not_found(voice: Voice) -> None:
    with pytest.raises(NotFoundError) as info:
        voice.calls.get(sid="CA" + "0" * 32)
    assert info.value.code == "call_not_found"
    with pytest.raises(InvalidArgumentError):
        voice.calls.get(sid="")


def test_another_orgs_call_is_not_found(voice: Voice, engine: Engine) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    other_key = engine.add_api_key(org_id="org_other")
    with Voice(base_url=engine.base_url, api_key=other_key, org_id="org_other") as other:
        with pytest.raises(NotFoundError):
            other.calls.get(sid=call.sid)
        with pytest.raises(NotFoundError):
            other.calls.hangup(call.sid)
    assert not voice.calls.get(sid=call.sid).ended


def test_unknown_key_is_unauthenticated(engine: Engine) -> None:
    with (
        Voice(base_url=engine.base_url, api_key="cc_wrong", org_id=engine.org_id) as bad,
        pytest.raises(AuthenticationError) as info,
    ):
        bad.calls.get(sid="CA" + "0" * 32)
    assert info.value.status_code == 401 and info.value.code == "unauthorized"


def test_key_of_another_org_is_forbidden(engine: Engine) -> None:
    with (
        Voice(base_url=engine.base_url, api_key=engine.api_key, org_id="org_elsewhere") as v,
        pytest.raises(PermissionDeniedError) as info,
    ):
        v.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    assert info.value.code == "org_mismatch"


def test_missing_scope_is_forbidden(voice: Voice, engine: Engine) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    key = engine.add_api_key(scopes={"voice:calls"})
    with Voice(base_url=engine.base_url, api_key=key, org_id=engine.org_id) as limited:
        assert limited.calls.get(sid=call.sid).sid == call.sid
        with pytest.raises(PermissionDeniedError) as info:
            limited.agents.attach(call.sid, "echo")
        assert info.value.code == "insufficient_scope"
        with pytest.raises(PermissionDeniedError):
            limited.calls.create_bridge_token(call.sid)


def test_idempotency_key_returns_the_same_call(voice: Voice, engine: Engine) -> None:
    first = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK, idempotency_key="k-1")
    again = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK, idempotency_key="k-1")
    assert again.sid == first.sid
    with pytest.raises(ConflictError) as info:
        voice.calls.originate(to=BUSY, from_=CALLER_ID, trunk_id=TRUNK, idempotency_key="k-1")
    assert info.value.code == "idempotency_key_reused"
    assert sum(1 for c in engine.store.calls.values() if c.sid == first.sid) == 1


def test_each_originate_gets_its_own_idempotency_key(voice: Voice, engine: Engine) -> None:
    a = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    b = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    assert a.sid != b.sid
    keys = [r.idempotency_key for r in engine.requests("POST", r"/calls$")]
    assert len(keys) == 2 and None not in keys and keys[0] != keys[1]


def test_bridge_token_names_call_and_role_and_hides_the_token(voice: Voice) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    token = voice.calls.create_bridge_token(call.sid, role="caller")
    assert (token.call_sid, token.role) == (call.sid, "caller")
    assert token.token.startswith("cct1.") and token.token not in repr(token)
    with pytest.raises(InvalidArgumentError):
        voice.calls.create_bridge_token(call.sid, role="admin")
