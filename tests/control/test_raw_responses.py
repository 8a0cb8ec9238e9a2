"""``with_raw_response``: the HTTP response around each result, sync and async."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from control_helpers import CALLER_ID, DEST, TRUNK, fast_policy, wait_status

from clutchcall import (
    APIResponseValidationError,
    AsyncCall,
    AsyncVoice,
    BridgeToken,
    Call,
    CallStatus,
    ConflictError,
    Voice,
)
from clutchcall._control._raw import APIResponse
from clutchcall.dev import Engine, Fault

pytestmark = pytest.mark.timeout(30)


def check_exchange(raw: APIResponse[Any], method: str, path_end: str, status: int) -> None:
    assert raw.status_code == status
    assert raw.method == method and raw.http_request.method == method
    assert raw.url.path.endswith(path_end) and raw.http_request.url == raw.url
    assert raw.request_id is not None and raw.request_id.startswith("req_")
    assert raw.headers["x-request-id"] == raw.request_id
    assert raw.headers["content-type"].startswith("application/json")
    assert isinstance(raw.elapsed, datetime.timedelta) and raw.elapsed.total_seconds() > 0
    assert raw.retries_taken == 0
    assert raw.json() == json.loads(raw.content) == json.loads(raw.text)
    assert f"[{status} " in repr(raw) and path_end in repr(raw)


def test_every_calls_and_agents_method_has_a_raw_twin(voice: Voice) -> None:
    raw_calls = voice.calls.with_raw_response
    created = raw_calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    check_exchange(created, "POST", "/calls", 201)
    assert "idempotency-key" in created.http_request.headers
    call = created.parse()
    assert isinstance(call, Call) and call.status is CallStatus.DIALING
    assert created.parse() is call  # parsed once
    assert created.json()["sid"] == call.sid

    fetched = raw_calls.get(call.sid)
    check_exchange(fetched, "GET", f"/calls/{call.sid}", 200)
    assert fetched.parse().sid == call.sid

    wait_status(call, {CallStatus.IN_PROGRESS})
    attached = voice.agents.with_raw_response.attach(call.sid, "echo")
    check_exchange(attached, "PUT", f"/calls/{call.sid}/agent", 200)
    assert attached.parse() is None
    assert call.refresh().agent == "echo"

    token = raw_calls.create_bridge_token(call.sid, "caller")
    check_exchange(token, "POST", f"/calls/{call.sid}/bridge-tokens", 201)
    assert isinstance(token.parse(), BridgeToken) and token.parse().role == "caller"

    moved = raw_calls.transfer(call.sid, "+15557654321")
    check_exchange(moved, "POST", f"/calls/{call.sid}/transfer", 200)
    assert moved.parse().to == "+15557654321"

    ended = raw_calls.hangup(call.sid)
    check_exchange(ended, "POST", f"/calls/{call.sid}/hangup", 200)
    assert ended.parse().status is CallStatus.COMPLETED


@pytest.mark.anyio
async def test_every_calls_and_agents_method_has_a_raw_twin_async(async_voice: AsyncVoice) -> None:
    raw_calls = async_voice.calls.with_raw_response
    created = await raw_calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK, agent="echo")
    check_exchange(created, "POST", "/calls", 201)
    call = created.parse()
    assert isinstance(call, AsyncCall)
    fetched = await raw_calls.get(call.sid)
    check_exchange(fetched, "GET", f"/calls/{call.sid}", 200)
    token = await raw_calls.create_bridge_token(call.sid)
    check_exchange(token, "POST", "/bridge-tokens", 201)
    assert token.parse().call_sid == call.sid
    with pytest.raises(ConflictError):  # not answered yet
        await raw_calls.transfer(call.sid, agent="billing-bot")
    attached = await async_voice.agents.with_raw_response.attach(call.sid, "billing-bot")
    check_exchange(attached, "PUT", "/agent", 200)
    assert attached.parse() is None
    ended = await raw_calls.hangup(call.sid)
    check_exchange(ended, "POST", "/hangup", 200)
    assert ended.parse().ended


def test_retries_show_in_the_raw_response(voice: Voice, engine: Engine) -> None:
    fast_policy(voice)
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    engine.inject_fault(Fault(status=503, times=2, method="GET", path=call.sid))
    raw = voice.calls.with_raw_response.get(call.sid)
    assert raw.retries_taken == 2 and raw.status_code == 200
    assert [r.status for r in engine.requests("GET", call.sid)] == [503, 503, 200]


def test_an_error_status_still_raises_with_its_response(voice: Voice) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    call.hangup()
    with pytest.raises(ConflictError) as info:
        voice.calls.with_raw_response.hangup(call.sid)
    assert info.value.response.status_code == 409
    assert info.value.request_id == info.value.response.headers["x-request-id"]


# -- a success body that is not the API's: raw access still works, parse() refuses ------


class _Unusable(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"sid": 42, "status": "nonsense"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", "req_unusable")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def unusable_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unusable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_invalid_body_is_refused_only_when_parsed(unusable_server: str) -> None:
    sid = "CA" + "3" * 32
    with Voice(base_url=unusable_server, api_key="k", org_id="org_a") as voice:
        raw = voice.calls.with_raw_response.get(sid)
        assert raw.status_code == 200 and raw.request_id == "req_unusable"
        assert raw.json() == {"sid": 42, "status": "nonsense"}
        assert isinstance(raw.http_response, httpx.Response)
        with pytest.raises(APIResponseValidationError, match="req_unusable"):
            raw.parse()
        with pytest.raises(APIResponseValidationError):
            voice.calls.get(sid)
