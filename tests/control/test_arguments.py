"""Bad arguments are refused before anything is sent; server-side validation errors
read once, not twice."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from control_helpers import CALLER_ID, DEST, TRUNK

from clutchcall import AsyncVoice, InvalidArgumentError, UnprocessableEntityError, Voice
from clutchcall._control._responses import status_error
from clutchcall.dev import Engine

pytestmark = pytest.mark.timeout(30)

NOT_SIDS: list[object] = [
    "hello",
    "",
    "CA",
    "CA" + "0" * 31,  # one digit short
    "CA" + "0" * 33,
    "CA" + "A" * 32,  # upper-case hex
    "ca" + "0" * 32,
    "CA" + "0" * 31 + "g",
    " CA" + "0" * 32,
    "CA" + "0" * 32 + "\n",
    "CA" + "0" * 16 + "/" + "0" * 15,
    "../calls",
    None,
    42,
    b"CA" + b"0" * 32,
]


def sync_actions(voice: Voice, sid: Any) -> dict[str, Callable[[], object]]:
    return {
        "get": lambda: voice.calls.get(sid),
        "transfer": lambda: voice.calls.transfer(sid, "+15557654321"),
        "hangup": lambda: voice.calls.hangup(sid),
        "create_bridge_token": lambda: voice.calls.create_bridge_token(sid),
        "raw get": lambda: voice.calls.with_raw_response.get(sid),
        "raw hangup": lambda: voice.calls.with_raw_response.hangup(sid),
        "agents.attach": lambda: voice.agents.attach(sid, "echo"),
    }


@pytest.mark.parametrize("sid", NOT_SIDS, ids=repr)
def test_a_malformed_sid_is_refused_before_sending(
    voice: Voice, engine: Engine, sid: object
) -> None:
    for name, action in sync_actions(voice, sid).items():
        with pytest.raises(InvalidArgumentError) as info:
            action()
        argument = "call_sid" if name == "agents.attach" else "sid"
        assert str(info.value).startswith(f"{argument} must be a call sid"), name
        assert isinstance(info.value, ValueError)
    assert engine.requests() == []


def test_a_huge_argument_is_quoted_briefly(voice: Voice) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        voice.calls.get("x" * 100_000)
    assert len(str(info.value)) < 200


def async_actions(voice: AsyncVoice, sid: Any) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: voice.calls.get(sid),
        lambda: voice.calls.transfer(sid, agent="echo"),
        lambda: voice.calls.hangup(sid),
        lambda: voice.calls.create_bridge_token(sid, "caller"),
        lambda: voice.calls.with_raw_response.create_bridge_token(sid),
        lambda: voice.agents.with_raw_response.attach(sid, "echo"),
    ]


@pytest.mark.anyio
async def test_a_malformed_sid_is_refused_before_sending_async(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    for sid in ("hello", "CA" + "F" * 32, None):
        for action in async_actions(async_voice, sid):
            with pytest.raises(InvalidArgumentError, match="sid must be a call sid"):
                await action()
    assert engine.requests() == []


def test_a_real_sid_still_reaches_the_server(voice: Voice) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    assert voice.calls.get(call.sid).sid == call.sid
    assert voice.calls.create_bridge_token(call.sid).call_sid == call.sid


def test_a_422_says_each_problem_once(voice: Voice) -> None:
    with pytest.raises(UnprocessableEntityError) as info:
        voice.calls.originate(to="5551234567", from_=CALLER_ID, trunk_id=TRUNK)
    err = info.value
    assert [e.field for e in err.errors] == ["to"]
    assert str(err).count(err.errors[0].message) == 1, str(err)
    assert err.message.count("E.164") == 1
    # Several fields: each named once.
    with pytest.raises(UnprocessableEntityError) as several:
        voice.calls.originate(to="5551234567", from_="+1", trunk_id="bad trunk")
    text = str(several.value)
    for problem in several.value.errors:
        assert text.count(f"{problem.field} {problem.message}") == 1
        assert f"{problem.field}: {problem.message}" not in text


def problem_response(detail: str, errors: list[dict[str, str]]) -> httpx.Response:
    body = {
        "type": "about:blank",
        "title": "Unprocessable",
        "status": 422,
        "code": "validation_failed",
        "detail": detail,
        "errors": errors,
    }
    request = httpx.Request("POST", "https://engine.example/v1/orgs/org_a/calls")
    return httpx.Response(
        422,
        headers={"content-type": "application/problem+json"},
        content=json.dumps(body).encode(),
        request=request,
    )


def test_field_errors_the_detail_leaves_out_are_still_listed() -> None:
    generic = status_error(
        problem_response(
            "the request is invalid",
            [
                {"field": "to", "message": "must be E.164"},
                {"field": "from", "message": "is required"},
            ],
        )
    )
    assert generic.message == "the request is invalid: to: must be E.164; from: is required"
    partly = status_error(
        problem_response(
            "to must be E.164",
            [
                {"field": "to", "message": "must be E.164"},
                {"field": "from", "message": "is required"},
            ],
        )
    )
    assert partly.message == "to must be E.164: from: is required"
