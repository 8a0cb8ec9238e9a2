"""Per-request ``timeout=`` / ``max_retries=``, ``with_options(base_url=...)``, and
using a client after ``close()``: against the real dev engine on loopback."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from control_helpers import CALLER_ID, DEST, TRUNK, fast_policy

from clutchcall import (
    APIConnectionError,
    APITimeoutError,
    AsyncVoice,
    ClutchCallError,
    ConfigurationError,
    InternalServerError,
    InvalidArgumentError,
    Voice,
)
from clutchcall.dev import Engine, Fault
from clutchcall.errors import ClientClosedError

pytestmark = pytest.mark.timeout(30)

UNKNOWN = "CA" + "7" * 32


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_per_request_timeout_bounds_that_request_only(voice: Voice, engine: Engine) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    engine.inject_fault(Fault(status=None, delay=2.0, times=1, method="GET", path=call.sid))
    with pytest.raises(APITimeoutError, match=r"0\.2 s"):
        voice.calls.get(call.sid, timeout=0.2, max_retries=0)
    # The client's own timeout (30 s) is untouched: the next request, delayed a little, succeeds.
    engine.inject_fault(Fault(status=None, delay=0.3, times=1, method="GET", path=call.sid))
    assert voice.calls.get(call.sid).sid == call.sid
    assert voice.timeout == 30


def test_a_timed_out_attempt_is_retried_within_the_per_request_budget(
    voice: Voice, engine: Engine
) -> None:
    fast_policy(voice)
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    engine.inject_fault(Fault(status=None, delay=2.0, times=1, method="GET", path=call.sid))
    assert voice.calls.get(call.sid, timeout=0.3, max_retries=1).sid == call.sid


def test_per_request_max_retries_overrides_the_client(voice: Voice, engine: Engine) -> None:
    fast_policy(voice)
    assert voice.max_retries == 2
    engine.inject_fault(Fault(status=503, times=5, method="GET", path=UNKNOWN))
    with pytest.raises(InternalServerError):
        voice.calls.get(UNKNOWN, max_retries=0)
    assert len(engine.requests("GET", UNKNOWN)) == 1
    with pytest.raises(InternalServerError):
        voice.calls.get(UNKNOWN, max_retries=3)
    assert len(engine.requests("GET", UNKNOWN)) == 1 + 4


def test_call_handles_take_per_request_options(voice: Voice, engine: Engine) -> None:
    fast_policy(voice)
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK, max_retries=0)
    engine.inject_fault(Fault(status=503, times=1, method="GET", path=call.sid))
    with pytest.raises(InternalServerError):
        call.refresh(max_retries=0)
    engine.inject_fault(Fault(status=503, times=1, method="GET", path=call.sid))
    assert call.refresh(max_retries=1, timeout=5) is call
    call.hangup(timeout=5, max_retries=0)
    assert call.ended


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"timeout": 0}, "timeout"),
    ({"timeout": -1.5}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"timeout": "5"}, "timeout"),
    ({"timeout": float("inf")}, "timeout"),
    ({"timeout": float("nan")}, "timeout"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"max_retries": False}, "max_retries"),
]


@pytest.mark.parametrize(("options", "name"), BAD_OPTIONS)
def test_bad_per_request_options_are_refused_before_sending(
    voice: Voice, engine: Engine, options: dict[str, Any], name: str
) -> None:
    sid = "CA" + "8" * 32
    for action in (
        lambda: voice.calls.get(sid, **options),
        lambda: voice.calls.hangup(sid, **options),
        lambda: voice.calls.with_raw_response.transfer(sid, "+15557654321", **options),
        lambda: voice.calls.create_bridge_token(sid, **options),
        lambda: voice.agents.attach(sid, "echo", **options),
        lambda: voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK, **options),
    ):
        with pytest.raises(InvalidArgumentError, match=f"^{name} must be"):
            action()
    assert engine.requests() == []


@pytest.mark.parametrize("timeout", [float("inf"), float("nan")])
def test_the_client_timeout_must_be_finite(timeout: float) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        Voice(api_key="k", org_id="org_a", timeout=timeout)


def test_with_options_can_change_the_base_url(voice: Voice, engine: Engine) -> None:
    elsewhere = f"http://127.0.0.1:{closed_port()}"
    with voice.with_options(base_url=elsewhere, max_retries=0) as moved:
        assert moved.base_url == elsewhere and moved.org_id == voice.org_id
        with pytest.raises(APIConnectionError, match=elsewhere.replace(".", r"\.")):
            moved.calls.get(UNKNOWN)
    assert engine.requests() == []
    with voice.with_options(base_url=engine.base_url + "/") as same:
        call = same.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    assert voice.calls.get(call.sid).sid == call.sid
    with pytest.raises(ConfigurationError, match="base_url"):
        voice.with_options(base_url="ftp://example.com")


@pytest.mark.anyio
async def test_with_options_can_change_the_base_url_async(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    elsewhere = f"http://127.0.0.1:{closed_port()}"
    async with async_voice.with_options(base_url=elsewhere, max_retries=0) as moved:
        with pytest.raises(APIConnectionError):
            await moved.calls.get(UNKNOWN)
    assert engine.requests() == []


@pytest.mark.anyio
async def test_per_request_options_async(async_voice: AsyncVoice, engine: Engine) -> None:
    fast_policy(async_voice)
    call = await async_voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    engine.inject_fault(Fault(status=None, delay=2.0, times=1, method="GET", path=call.sid))
    with pytest.raises(APITimeoutError):
        await async_voice.calls.get(call.sid, timeout=0.2, max_retries=0)
    engine.inject_fault(Fault(status=503, times=5, method="GET", path=UNKNOWN))
    with pytest.raises(InternalServerError):
        await async_voice.calls.get(UNKNOWN, max_retries=1)
    assert len(engine.requests("GET", UNKNOWN)) == 2
    with pytest.raises(InvalidArgumentError, match=r"^timeout"):
        await async_voice.agents.attach(call.sid, "echo", timeout=-1)
    await call.hangup(timeout=5, max_retries=0)
    assert call.ended


# -- after close() -------------------------------------------------------------------------


def sync_requests(voice: Voice, sid: str) -> list[Any]:
    return [
        lambda: voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK),
        lambda: voice.calls.get(sid),
        lambda: voice.calls.transfer(sid, "+15557654321"),
        lambda: voice.calls.hangup(sid),
        lambda: voice.calls.create_bridge_token(sid),
        lambda: voice.calls.with_raw_response.get(sid),
        lambda: voice.agents.attach(sid, "echo"),
    ]


def test_a_closed_client_raises_client_closed_error(engine: Engine) -> None:
    voice = engine.voice()
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    voice.close()
    before = len(engine.requests())
    for action in [*sync_requests(voice, call.sid), call.refresh]:
        with pytest.raises(ClientClosedError, match="closed") as info:
            action()
        assert isinstance(info.value, ClutchCallError) and isinstance(info.value, RuntimeError)
    assert len(engine.requests()) == before
    voice.close()  # closing again is harmless


@pytest.mark.anyio
async def test_a_closed_async_client_raises_client_closed_error(engine: Engine) -> None:
    voice = engine.async_voice()
    call = await voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    await voice.close()
    before = len(engine.requests())
    with pytest.raises(ClientClosedError):
        await voice.calls.get(call.sid)
    with pytest.raises(ClientClosedError):
        await voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    with pytest.raises(ClientClosedError):
        await voice.agents.with_raw_response.attach(call.sid, "echo")
    with pytest.raises(ClientClosedError):
        await call.hangup()
    assert len(engine.requests()) == before


def test_a_closed_user_http_client_raises_client_closed_error(engine: Engine) -> None:
    http_client = httpx.Client()
    with Voice(
        base_url=engine.base_url,
        api_key=engine.api_key,
        org_id=engine.org_id,
        http_client=http_client,
    ) as voice:
        call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
        http_client.close()
        with pytest.raises(ClientClosedError, match="http_client"):
            voice.calls.get(call.sid)
