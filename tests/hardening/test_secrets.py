"""The API key and bridge tokens never show in reprs, logs or exception messages.

Logs of every logger are captured at DEBUG (the engine's relay runs in this
process, so its logs are captured too) while bridges work and fail: a wrong
call, an unreachable relay, a relay that refuses the token, a GOAWAY and a
relay restart.
"""

from __future__ import annotations

import logging
import socket

import anyio
import pytest
from hardening_helpers import Echoes, answered_call, free_port, until

from clutchcall.bridge import BridgeAuthError, BridgeConnectError, MoqtClient
from clutchcall.dev import Engine
from clutchcall.errors import NotFoundError

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_no_secret_in_reprs_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    secrets: list[str] = []

    def note(*things: object) -> None:
        for thing in things:
            seen.extend([repr(thing), str(thing)])

    with Engine(time_scale=0.05) as engine:
        secrets.append(engine.api_key)
        async with engine.async_voice() as voice:
            note(voice)
            sid = await answered_call(voice)
            token = await voice.calls.create_bridge_token(sid, "server")
            secrets.append(token.token)
            note(token)
            echoes = Echoes()
            with anyio.fail_after(30):
                async with await voice.audio_bridge.attach(
                    sid, on_uplink=echoes.on_uplink
                ) as bridge:
                    note(bridge, bridge.stats, voice.audio_bridge)
                    for seq in range(10):
                        await bridge.publish_downlink(echoes.mark(seq))
                        await anyio.sleep(0.02)
                    await anyio.to_thread.run_sync(engine.relay_goaway)
                    await until(lambda: bridge.stats.reconnects == 1, 10)
                    await anyio.to_thread.run_sync(engine.stop_relay)
                    await anyio.to_thread.run_sync(engine.start_relay)
                    await until(lambda: bridge.stats.reconnects == 2, 10)
                    note(bridge)
            # Failures: no such call, a relay that is not there, a refused token.
            unknown_sid = "CA" + "0" * 32
            with pytest.raises(NotFoundError) as not_found:
                await voice.audio_bridge.attach(unknown_sid, on_uplink=echoes.on_uplink)
            note(not_found.value, not_found.value.__cause__)
            nowhere = f"moqt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
            async with engine.async_voice(relay_url=nowhere) as lost:
                with pytest.raises(BridgeConnectError) as no_relay, anyio.fail_after(30):
                    await lost.audio_bridge.attach(sid, on_uplink=echoes.on_uplink)
            note(no_relay.value, no_relay.value.__cause__)

            wrong = token.token[:-4] + ("AAAA" if not token.token.endswith("AAAA") else "BBBB")
            secrets.append(wrong)
            ca_file = engine.relay_ca_file
            assert ca_file is not None
            with pytest.raises(BridgeAuthError) as refused:
                async with MoqtClient(engine.relay_url, token=wrong, verify=ca_file):
                    pass
            note(refused.value)
    seen.append(caplog.text)
    seen.extend(str(record.args) for record in caplog.records)
    assert caplog.records  # something was logged to look at
    for secret in secrets:
        leaks = [text for text in seen if secret in text]
        assert leaks == [], secret[:6]
