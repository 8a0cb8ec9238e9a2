"""Bridges sharing one relay connection, and the relay's per-request tokens.

Real sockets on loopback (asyncio and trio) against the dev engine's relay.
"""

from __future__ import annotations

import time

import anyio
import pytest
from bridge_fixtures import hang_up_calls_afterwards, marker_frames  # noqa: F401
from bridge_helpers import ANSWERS, ECHO, answered_call, callee_joined, seq_of, until

from clutchcall import AsyncAudioBridge, AsyncVoice, BridgeAuthError
from clutchcall.dev import Engine, tokens
from clutchcall.moqnet import MoqtClient
from clutchcall.moqt import PublishNamespaceErrorCode, SubscribeErrorCode, VoiceRole

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60), pytest.mark.usefixtures("marker_frames")]


class Echoes:
    """What one bridge heard back, by payload."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, frame: bytes, timestamp_us: int) -> None:
        self.frames.append(frame)


async def talk(bridges: dict[str, AsyncAudioBridge], rounds: int, first: int = 0) -> None:
    for n in range(first, first + rounds):
        for sid, bridge in bridges.items():
            await bridge.publish_downlink(b"%s-%d" % (sid.encode(), n))
        await anyio.sleep(0.005)


async def open_echo_bridges(
    voice: AsyncVoice, engine: Engine, count: int
) -> tuple[dict[str, AsyncAudioBridge], dict[str, Echoes]]:
    bridges: dict[str, AsyncAudioBridge] = {}
    heard: dict[str, Echoes] = {}
    for _ in range(count):
        sid = await answered_call(voice, to=ECHO)
        heard[sid] = Echoes()
        bridges[sid] = await voice.audio_bridge.attach(sid, on_uplink=heard[sid])
    await until(lambda: all(callee_joined(engine, sid) for sid in bridges))
    return bridges, heard


@pytest.mark.parametrize("shared", [True, False])
async def test_bridges_of_one_client_share_a_session_unless_told_not_to(
    shared: bool, engine: Engine
) -> None:
    async with engine.async_voice(share_bridge_connections=shared) as voice:
        with anyio.fail_after(20):
            bridges, heard = await open_echo_bridges(voice, engine, 3)
            try:
                sids = set(bridges)
                carrying = [c for c in engine.relay_client_sessions() if c & sids]
                if shared:
                    assert carrying == [sids]
                else:
                    assert sorted(carrying, key=sorted) == sorted(
                        (frozenset({sid}) for sid in sids), key=sorted
                    )
                await talk(bridges, 10)
                await until(lambda: all(len(h.frames) >= 10 for h in heard.values()))
            finally:
                for bridge in bridges.values():
                    await bridge.aclose()
        for sid, echoes in heard.items():
            assert echoes.frames == [b"%s-%d" % (sid.encode(), n) for n in range(10)]
            stats = bridges[sid].stats
            assert (stats.frames_out, stats.frames_in, stats.dropped) == (10, 10, 0)


async def test_one_call_ending_ends_only_its_bridge(engine: Engine) -> None:
    async with engine.async_voice() as voice:
        with anyio.fail_after(20):
            bridges, heard = await open_echo_bridges(voice, engine, 2)
            (ending, ended_bridge), (going, going_bridge) = bridges.items()
            try:
                await voice.calls.hangup(ending)
                await until(lambda: ended_bridge.ended)
                assert not going_bridge.ended and going_bridge.connected
                await talk({going: going_bridge}, 5)
                await until(lambda: len(heard[going].frames) >= 5)
                assert engine.relay_client_sessions().count(frozenset({going})) == 1
                await ended_bridge.aclose()
                await talk({going: going_bridge}, 5, first=5)
                await until(lambda: len(heard[going].frames) >= 10)
                await going_bridge.aclose()
                # The last bridge leaving closes the shared connection.
                await until(lambda: not any(going in c for c in engine.relay_client_sessions()))
            finally:
                for bridge in bridges.values():
                    await bridge.aclose()
    assert heard[going].frames == [b"%s-%d" % (going.encode(), n) for n in range(10)]


async def test_a_second_bridge_for_the_same_call_and_role_gets_its_own_session(
    engine: Engine,
) -> None:
    async with engine.async_voice() as voice:
        sid = await answered_call(voice, to=ANSWERS)
        firsts: list[bytes] = []
        seconds: list[bytes] = []
        with anyio.fail_after(20):
            async with (
                await voice.audio_bridge.attach(sid, on_uplink=lambda f, t: firsts.append(f)),
                await voice.audio_bridge.attach(sid, on_uplink=lambda f, t: seconds.append(f)),
            ):
                await until(lambda: len(firsts) >= 5 and len(seconds) >= 5)
                # The callee, and one session per bridge.
                assert engine.relay_sessions(sid) == 3
                assert engine.relay_client_sessions().count(frozenset({sid})) == 2
    assert [seq_of(f) for f in firsts] == sorted(seq_of(f) for f in firsts)
    assert [seq_of(f) for f in seconds] == sorted(seq_of(f) for f in seconds)


async def test_requests_carry_their_own_tokens(async_voice: AsyncVoice, engine: Engine) -> None:
    """One session, authenticated for call A, reaches call B with B's token, and a
    bad token refuses only that request."""
    call_a = await answered_call(async_voice)
    call_b = await answered_call(async_voice)
    call_c = await answered_call(async_voice)
    token_a = await async_voice.calls.create_bridge_token(call_a, role="server")
    token_b = await async_voice.calls.create_bridge_token(call_b, role="server")
    caller_b = await async_voice.calls.create_bridge_token(call_b, role="caller")
    secret = engine.store.bridge_secret
    expired_b = tokens.mint(
        secret, tokens.BridgeClaims(engine.org_id, call_b, VoiceRole.SERVER, time.time() - 5)
    )
    forged_b = tokens.mint(
        b"not the engine's secret",
        tokens.BridgeClaims(engine.org_id, call_b, VoiceRole.SERVER, time.time() + 60),
    )
    url = engine.relay_url
    assert url is not None
    with anyio.fail_after(20):
        verify = engine.relay_ca_file or False
        async with MoqtClient(url, token=token_a.token, verify=verify) as moqt:
            for bad in (expired_b, forged_b, "garbage", caller_b.token):
                with pytest.raises(BridgeAuthError) as info:
                    await moqt.subscribe_audio(call_b, "uplink", token=bad)
                assert info.value.code == SubscribeErrorCode.UNAUTHORIZED, bad
            with pytest.raises(BridgeAuthError) as info:
                await moqt.subscribe_audio(call_c, "uplink", token=token_b.token)
            assert info.value.code == SubscribeErrorCode.UNAUTHORIZED
            with pytest.raises(BridgeAuthError) as info:
                await moqt.publish_audio(call_c, "downlink", token=token_b.token)
            assert info.value.code == PublishNamespaceErrorCode.UNAUTHORIZED
            # Without a token of its own a request leans on what the session holds.
            with pytest.raises(BridgeAuthError):
                await moqt.subscribe_audio(call_b, "uplink")
            uplink_b = await moqt.subscribe_audio(call_b, "uplink", token=token_b.token)
            downlink_b = await moqt.publish_audio(call_b, "downlink", token=token_b.token)
            uplink_a = await moqt.subscribe_audio(call_a, "uplink")
            assert downlink_b.subscribers == 1
            await until(lambda: engine.relay_sessions(call_b) == 2)  # callee + this session
            frames_a = [await uplink_a.receive() for _ in range(3)]
            frames_b = [await uplink_b.receive() for _ in range(3)]
    # Each call's callee numbers its own frames: both arrived, each on its own track.
    assert all(seq_of(f.data) >= 0 for f in frames_a + frames_b)
    assert uplink_b.stats.frames_in >= 3 and uplink_a.stats.frames_in >= 3
