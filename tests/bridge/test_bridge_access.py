"""Who may touch a call's tracks: tokens, orgs, roles, ended calls.

The control plane refuses tokens for unknown, foreign and ended calls; the relay
refuses sessions without a good token (closing them with the draft-14 code) and
tracks outside the token's call and role (SUBSCRIBE_ERROR /
PUBLISH_NAMESPACE_ERROR UNAUTHORIZED).
"""

from __future__ import annotations

import time

import anyio
import pytest
from bridge_fixtures import hang_up_calls_afterwards  # noqa: F401
from bridge_helpers import answered_call

from clutchcall import (
    AsyncVoice,
    BridgeAuthError,
    ConflictError,
    NotFoundError,
)
from clutchcall.dev import Engine, tokens
from clutchcall.moqnet import MoqtClient
from clutchcall.moqt import (
    PublishNamespaceErrorCode,
    SessionErrorCode,
    SubscribeErrorCode,
    VoiceRole,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

KINDS = ["quic", "webtransport"]


def relay(engine: Engine, kind: str) -> str:
    url = engine.relay_url if kind == "quic" else engine.relay_webtransport_url
    assert url is not None
    return url


def client(engine: Engine, kind: str, token: str | None) -> MoqtClient:
    return MoqtClient(relay(engine, kind), token=token, verify=engine.relay_ca_file or False)


async def test_unknown_call_is_not_found(async_voice: AsyncVoice) -> None:
    with pytest.raises(NotFoundError):
        await async_voice.audio_bridge.attach("CA" + "0" * 32)


async def test_ended_call_is_a_conflict(async_voice: AsyncVoice) -> None:
    sid = await answered_call(async_voice)
    await async_voice.calls.hangup(sid)
    with pytest.raises(ConflictError):
        await async_voice.audio_bridge.attach(sid)
    with pytest.raises(ConflictError):
        await async_voice.audio_bridge.attach_caller(sid)


async def test_a_call_of_another_org_is_not_found(async_voice: AsyncVoice, engine: Engine) -> None:
    sid = await answered_call(async_voice)
    key = engine.add_api_key(org_id="org_other")
    async with engine.async_voice(api_key=key, org_id="org_other") as other:
        with pytest.raises(NotFoundError):
            await other.audio_bridge.attach(sid)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_relay_closes_sessions_without_a_good_token(kind: str, engine: Engine) -> None:
    expired = tokens.mint(
        engine.store.bridge_secret,
        tokens.BridgeClaims(engine.org_id, "CA" + "1" * 32, VoiceRole.SERVER, time.time() - 5),
    )
    forged = tokens.mint(
        b"not the engine's secret",
        tokens.BridgeClaims(engine.org_id, "CA" + "1" * 32, VoiceRole.SERVER, time.time() + 60),
    )
    cases = [
        (None, SessionErrorCode.UNAUTHORIZED, "token is required"),
        ("garbage", SessionErrorCode.UNAUTHORIZED, "not a bridge token"),
        (forged, SessionErrorCode.UNAUTHORIZED, "signature"),
        (expired, SessionErrorCode.EXPIRED_AUTH_TOKEN, "expired"),
    ]
    for token, code, reason in cases:
        with anyio.fail_after(10), pytest.raises(BridgeAuthError) as info:
            async with client(engine, kind, token):
                pass
        assert info.value.code == code, token
        assert reason in info.value.reason


async def test_the_relay_refuses_tokens_of_calls_that_ended(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(async_voice)
    token = await async_voice.calls.create_bridge_token(sid, role="server")
    await async_voice.calls.hangup(sid)
    with anyio.fail_after(10), pytest.raises(BridgeAuthError, match="ended") as info:
        async with client(engine, "quic", token.token):
            pass
    assert info.value.code == SessionErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("kind", KINDS)
async def test_roles_and_calls_bound_what_a_token_may_touch(
    kind: str, async_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(async_voice)
    other_sid = await answered_call(async_voice)
    server = await async_voice.calls.create_bridge_token(sid, role="server")
    caller = await async_voice.calls.create_bridge_token(sid, role="caller")
    with anyio.fail_after(15):
        async with client(engine, kind, server.token) as moqt:
            await moqt.subscribe_audio(sid, "uplink")  # the server's own track: fine
            with pytest.raises(BridgeAuthError) as info:
                await moqt.subscribe_audio(sid, "downlink")  # the caller's track
            assert info.value.code == SubscribeErrorCode.UNAUTHORIZED
            with pytest.raises(BridgeAuthError) as info:
                await moqt.subscribe_audio(other_sid, "uplink")  # another call
            assert info.value.code == SubscribeErrorCode.UNAUTHORIZED
            with pytest.raises(BridgeAuthError) as info:
                await moqt.publish_audio(other_sid, "downlink")
            assert info.value.code == PublishNamespaceErrorCode.UNAUTHORIZED
            # The session survives refused requests.
            downlink = await moqt.publish_audio(sid, "downlink")
            assert downlink.subscribers == 1  # the relay subscribed what a server publishes
        async with client(engine, kind, caller.token) as moqt:
            with pytest.raises(BridgeAuthError) as info:
                await moqt.subscribe_audio(sid, "uplink")
            assert info.value.code == SubscribeErrorCode.UNAUTHORIZED
            await moqt.subscribe_audio(sid, "downlink")
