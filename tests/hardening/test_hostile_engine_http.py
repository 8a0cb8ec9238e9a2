"""The dev engine's control plane against hostile HTTP clients.

Connections that stay silent, stop halfway through a request or trickle it are
closed after ``REQUEST_READ_TIMEOUT`` while other clients are served; the store
of calls, the idempotency keys and the request log stay bounded however many
requests arrive; an oversized body gets the documented 413.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from clutchcall import InternalServerError, NotFoundError
from clutchcall.dev import Engine
from clutchcall.dev._app import MAX_BODY, REQUEST_READ_TIMEOUT
from clutchcall.dev._faults import Faults

pytestmark = pytest.mark.timeout(60)

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
DEST = "+15551234567"  # answers and stays up until hung up
INVALID = "+15005550001"  # fails at once: an ended call
FROM = "+15558675309"
TRUNK = "trunk_main"


@pytest.fixture
def engine() -> Iterator[Engine]:
    """An engine of its own: these tests shrink its bounds and hold its sockets."""
    engine = Engine(time_scale=0.05)
    engine.faults = Faults(max_log=50)  # before start: the app is built with it
    with engine:
        yield engine


def connect(engine: Engine) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", engine.port), timeout=5)
    sock.setblocking(False)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (what it sent before is skipped)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def test_silent_half_sent_and_trickling_connections_are_closed(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    path = f"/v1/orgs/{engine.org_id}/calls"
    auth = f"Authorization: Bearer {engine.api_key}\r\n"
    body = b'{"to": "+15551234567", "from": "+15558675309", "trunkId": "trunk_main"}'
    full_head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    kinds = {
        "silent": b"",
        "half_head": full_head[:40],
        "half_body": full_head + body[:10],
        "trickle": b"",  # then one byte of the head every 0.25 s, never finishing
        "idle_keep_alive": full_head + body,  # a whole request; then silence
    }
    conns: dict[str, list[socket.socket]] = {kind: [] for kind in kinds}
    try:
        for kind, first in kinds.items():
            for _ in range(10):
                sock = connect(engine)
                sock.sendall(first)
                conns[kind].append(sock)
        opened = time.monotonic()
        # While the 50 are held, the engine serves everybody else.
        with engine.voice(max_retries=0) as voice:
            call = voice.calls.originate(to=DEST, from_=FROM, trunk_id=TRUNK)
            assert voice.calls.get(call.sid).sid == call.sid

        open_ones = {kind: list(socks) for kind, socks in conns.items()}
        sent = 0
        deadline = opened + REQUEST_READ_TIMEOUT + 5  # the timeout, plus a margin
        while any(open_ones.values()) and time.monotonic() < deadline:
            time.sleep(0.25)
            for sock in open_ones["trickle"]:
                with contextlib.suppress(OSError):  # closed: found below
                    sock.send(full_head[sent : sent + 1])
            sent += 1
            for kind, socks in open_ones.items():
                open_ones[kind] = [s for s in socks if not closed_by_server(s)]
        assert {kind: len(socks) for kind, socks in open_ones.items()} == dict.fromkeys(kinds, 0)
    finally:
        for socks in conns.values():
            for sock in socks:
                sock.close()
    # A handler left waiting for a body saw a disconnect, not a crash.
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
    with engine.voice() as voice:
        assert voice.calls.get(call.sid).sid == call.sid


def test_ended_calls_are_forgotten_past_the_bound_and_recent_ones_still_work(
    engine: Engine,
) -> None:
    engine.store.max_calls = 30
    sids: list[str] = []
    with engine.voice(max_retries=0) as voice:
        for i in range(100):
            call = voice.calls.originate(
                to=INVALID, from_=FROM, trunk_id=TRUNK, idempotency_key=f"key-{i}"
            )
            sids.append(call.sid)
            assert len(engine.store.calls) <= 30
            assert len(engine.store.idempotency) <= 30
        # A recent call is still there, and so is the key that created it: a retry of
        # the originate returns the same call instead of placing another.
        assert voice.calls.get(sids[-1]).sid == sids[-1]
        again = voice.calls.originate(
            to=INVALID, from_=FROM, trunk_id=TRUNK, idempotency_key="key-99"
        )
        assert again.sid == sids[-1]
        # The oldest were forgotten, keys included.
        with pytest.raises(NotFoundError):
            voice.calls.get(sids[0])
    assert len(set(sids)) == 100
    assert ("org_dev", "key-0") not in engine.store.idempotency


def test_a_store_full_of_live_calls_refuses_new_ones_until_one_ends(engine: Engine) -> None:
    engine.store.max_calls = 10
    with engine.voice(max_retries=0) as voice:
        live = [voice.calls.originate(to=DEST, from_=FROM, trunk_id=TRUNK) for _ in range(10)]
        with pytest.raises(InternalServerError) as info:
            voice.calls.originate(to=DEST, from_=FROM, trunk_id=TRUNK)
        assert info.value.status_code == 503 and info.value.code == "unavailable"
        assert info.value.response.headers["retry-after"]
        live[0].hangup()
        fresh = voice.calls.originate(to=DEST, from_=FROM, trunk_id=TRUNK)
        assert voice.calls.get(fresh.sid).sid == fresh.sid
        for call in live[1:]:  # every live call survived
            assert not voice.calls.get(call.sid).ended
    assert len(engine.store.calls) == 10


def test_the_request_log_keeps_only_the_newest_entries(engine: Engine) -> None:
    with httpx.Client(base_url=engine.base_url) as http:
        for i in range(120):
            http.get(f"/v1/orgs/{engine.org_id}/calls/CA{i:032x}")
    log = engine.requests()
    assert len(log) == 50
    assert log[-1].path.endswith(f"CA{119:032x}")
    assert all(not r.path.endswith(f"CA{0:032x}") for r in log)


def test_an_oversized_body_gets_the_documented_413(engine: Engine) -> None:
    spec = yaml.safe_load(SPEC.read_text())
    with_bodies = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "requestBody" in op
    ]
    assert len(with_bodies) == 4
    with engine.voice() as voice:
        sid = voice.calls.originate(to=DEST, from_=FROM, trunk_id=TRUNK).sid
    headers = {"Authorization": f"Bearer {engine.api_key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=engine.base_url, headers=headers) as http:
        for path, method, op in with_bodies:
            assert "413" in op["responses"], op["operationId"]
            url = path.replace("{orgId}", engine.org_id).replace("{sid}", sid)
            body = b'{"pad": "' + b"x" * MAX_BODY + b'"}'
            response = http.request(method.upper(), url, content=body)
            assert response.status_code == 413, op["operationId"]
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "payload_too_large"
    codes = spec["components"]["schemas"]["Problem"]["properties"]["code"]["description"]
    assert "payload_too_large" in codes
