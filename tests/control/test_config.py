"""Configuration from arguments and environment, and keeping the API key secret."""

from __future__ import annotations

import logging

import httpx
import pytest
from control_helpers import CALLER_ID, DEST, TRUNK, fast_policy

from clutchcall import AsyncVoice, ConfigurationError, NotFoundError, Voice
from clutchcall.dev import Engine, Fault

ENV = ("CLUTCHCALL_BASE_URL", "CLUTCHCALL_CREDENTIALS", "CLUTCHCALL_ORG_ID", "CLUTCHCALL_RELAY_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_everything_can_come_from_the_environment(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUTCHCALL_BASE_URL", engine.base_url)
    monkeypatch.setenv("CLUTCHCALL_CREDENTIALS", engine.api_key)
    monkeypatch.setenv("CLUTCHCALL_ORG_ID", engine.org_id)
    monkeypatch.setenv("CLUTCHCALL_RELAY_URL", "moqt://127.0.0.1:4443")
    with Voice() as voice:
        assert voice.relay_url == "moqt://127.0.0.1:4443"
        call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
        assert voice.calls.get(sid=call.sid).sid == call.sid


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUTCHCALL_ORG_ID", "org_fromenv")
    voice = AsyncVoice(api_key="k", org_id="org_fromarg", base_url="http://127.0.0.1:1/")
    assert voice.org_id == "org_fromarg"
    assert voice.base_url == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"org_id": "org_a"}, "CLUTCHCALL_CREDENTIALS"),
        ({"api_key": "k"}, "CLUTCHCALL_ORG_ID"),
        ({"api_key": "k", "org_id": "acme"}, "org_id"),
        ({"api_key": "k", "org_id": "org_a", "base_url": "ftp://x"}, "base_url"),
        ({"api_key": "k", "org_id": "org_a", "timeout": 0}, "timeout"),
        ({"api_key": "k", "org_id": "org_a", "max_retries": -1}, "max_retries"),
        ({"api_key": "k", "org_id": "org_a", "relay_url": "udp://x"}, "relay_url"),
        ({"api_key": "has space", "org_id": "org_a"}, "whitespace"),
        (
            {"api_key": "k", "org_id": "org_a", "share_bridge_connections": "no"},
            "share_bridge_connections",
        ),
    ],
)
def test_missing_or_bad_settings_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Voice(**kwargs)  # type: ignore[arg-type]


def test_the_key_never_shows_in_reprs_logs_or_errors(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    secret = engine.add_api_key()
    caplog.set_level(logging.DEBUG)
    with Voice(base_url=engine.base_url, api_key=secret, org_id=engine.org_id) as voice:
        fast_policy(voice)
        engine.inject_fault(Fault(status=503, times=1, method="GET", path="CA9{32}"))
        with pytest.raises(NotFoundError) as info:
            voice.calls.get(sid="CA" + "9" * 32)
        texts = [
            repr(voice),
            repr(voice._config),
            repr(voice._http.headers),
            repr(info.value.response.request) if info.value.response._request else "",
            str(info.value),
            repr(info.value),
            repr(info.value.response.headers),
            caplog.text,
        ]
    assert "retrying GET" in caplog.text
    for text in texts:
        assert secret not in text


def test_with_options_overrides_limits_only(engine: Engine) -> None:
    with engine.voice() as voice:
        quick = voice.with_options(timeout=1.5, max_retries=0)
        try:
            assert (quick.timeout, quick.max_retries) == (1.5, 0)
            assert (voice.timeout, voice.max_retries) == (30.0, 2)
            assert quick.org_id == voice.org_id
            call = quick.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
            assert voice.calls.get(sid=call.sid).sid == call.sid
        finally:
            quick.close()


def test_requests_go_through_a_caller_supplied_httpx_client(engine: Engine) -> None:
    seen: list[str] = []
    user_client = httpx.Client(event_hooks={"request": [lambda r: seen.append(r.url.path)]})
    try:
        with engine.voice(http_client=user_client) as voice:
            call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
        assert seen == [f"/v1/orgs/{engine.org_id}/calls"]
        assert call.sid
        assert not user_client.is_closed
    finally:
        user_client.close()


def test_clients_cannot_be_pickled(engine: Engine) -> None:
    import pickle

    with engine.voice() as voice, pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(voice)
