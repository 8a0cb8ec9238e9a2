"""The SDK's logging: one DEBUG line per HTTP exchange, ``CLUTCHCALL_LOG``, no key."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from control_helpers import CALLER_ID, DEST, TRUNK, fast_policy

from clutchcall import APIConnectionError, ConfigurationError, ConflictError, NotFoundError, Voice
from clutchcall._control import _logs
from clutchcall.dev import Engine, Fault

pytestmark = pytest.mark.timeout(60)


def http_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "clutchcall.http"]


def test_one_debug_line_per_http_exchange_without_the_key(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    secret = engine.add_api_key()
    caplog.set_level(logging.DEBUG, logger="clutchcall")
    with Voice(base_url=engine.base_url, api_key=secret, org_id=engine.org_id) as voice:
        fast_policy(voice)
        call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
        engine.inject_fault(Fault(status=503, times=1, method="GET", path=call.sid))
        raw = voice.calls.with_raw_response.get(call.sid)
        with pytest.raises(NotFoundError):
            voice.calls.get("CA" + "9" * 32)
        call.hangup()
        with pytest.raises(ConflictError):
            call.hangup()
    lines = http_lines(caplog)
    served = engine.requests()
    assert len(lines) == len(served) == 6
    for line, record in zip(lines, served, strict=True):
        assert line.startswith(f"HTTP {record.method} {record.path} -> {record.status} in ")
        assert " ms" in line and "(request id req_" in line
    assert lines[1].endswith(")") and ", retrying" in lines[1]
    assert raw.request_id is not None and raw.request_id in lines[2]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "clutchcall.http")
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert secret not in logged


def test_a_failed_exchange_is_logged_too(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.DEBUG, logger="clutchcall")
    base_url = f"http://127.0.0.1:{port}"
    with (
        Voice(base_url=base_url, api_key="k", org_id="org_a", max_retries=0) as v,
        pytest.raises(APIConnectionError, match="failed"),
    ):
        v.calls.get("CA" + "1" * 32)
    (line,) = http_lines(caplog)
    assert line.startswith("HTTP GET /v1/orgs/org_a/calls/CA") and "failed: ConnectError" in line


def test_nothing_is_logged_at_info(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clutchcall")
    with engine.voice() as voice:
        voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    assert http_lines(caplog) == []


@pytest.fixture
def restore_sdk_logger() -> Iterator[None]:
    logger = logging.getLogger("clutchcall")
    level, handlers = logger.level, list(logger.handlers)
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)
    _logs._handler = None


@pytest.mark.usefixtures("restore_sdk_logger")
def test_clutchcall_log_adds_one_handler_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger("clutchcall")
    before = list(logger.handlers)
    monkeypatch.setenv("CLUTCHCALL_LOG", "info")
    with engine.voice():
        pass
    assert logger.level == logging.INFO
    monkeypatch.setenv("CLUTCHCALL_LOG", " DEBUG ")
    with engine.voice(), engine.voice() as voice, voice.with_options(timeout=5):
        pass
    added = [h for h in logger.handlers if h not in before]
    assert len(added) == 1 and isinstance(added[0], logging.StreamHandler)
    assert logger.level == logging.DEBUG


@pytest.mark.usefixtures("restore_sdk_logger")
@pytest.mark.parametrize("value", ["verbose", "1", "warning"])
def test_a_bad_clutchcall_log_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLUTCHCALL_LOG", value)
    with pytest.raises(ConfigurationError, match="CLUTCHCALL_LOG must be 'debug' or 'info'"):
        Voice(api_key="k", org_id="org_a")
    assert _logs._handler is None


SCRIPT = """
import json, sys
from clutchcall import Voice, NotFoundError

info = json.loads(sys.argv[1])
with Voice(base_url=info["base_url"], api_key=info["api_key"], org_id=info["org_id"]) as v:
    call = v.calls.originate(to="+15551234567", from_="+15558675309", trunk_id="t")
    v.calls.get(call.sid)
    try:
        v.calls.get("CA" + "5" * 32)
    except NotFoundError:
        pass
    call.hangup()
"""


@pytest.mark.parametrize(("level", "lines"), [("debug", 4), ("info", 0), ("", 0)])
def test_clutchcall_log_from_the_environment(engine: Engine, level: str, lines: int) -> None:
    secret = engine.add_api_key()
    info = {"base_url": engine.base_url, "api_key": secret, "org_id": engine.org_id}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUTCHCALL_")}
    env["CLUTCHCALL_LOG"] = level
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(info)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    logged = [line for line in done.stderr.splitlines() if " clutchcall.http: HTTP " in line]
    assert len(logged) == lines, done.stderr
    assert all(" DEBUG clutchcall.http: HTTP " in line for line in logged)
    assert secret not in done.stderr and secret not in done.stdout
    if level == "debug":
        assert [line.split("HTTP ", 1)[1].split(" ")[0] for line in logged] == [
            "POST",
            "GET",
            "GET",
            "POST",
        ]
        assert "-> 404 in " in logged[2]
