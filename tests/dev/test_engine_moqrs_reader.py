"""An independent MoQT client (moq-rs's Python package) reads a call through the dev relay.

moq-rs carries its credentials in the connect URL (``?jwt=<bridge token>``), finds
the call by subscribing to namespaces (the relay announces ``voice/<sid>``), reads
the call's MSF catalog (track ``catalog``) and the ``uplink`` track, and the audio
decodes, in the format the catalog names, to the simulated callee's phrase.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from clutchcall import CallStatus, Voice
from clutchcall.audio import detect_dtmf, make_codec
from clutchcall.dev import Engine
from clutchcall.dev.callees import PHRASE

moq = pytest.importorskip("moq")

pytestmark = pytest.mark.timeout(60)

MSF_CODECS = {"opus": "opus", "pcm-s16": "pcm16", "ulaw": "g711_ulaw", "alaw": "g711_alaw"}


def answered(voice: Voice) -> str:
    call = voice.calls.originate(to="+15551234567", from_="+15558675309", trunk_id="trunk_main")
    deadline = time.monotonic() + 10
    while voice.calls.get(sid=call.sid).status is not CallStatus.IN_PROGRESS:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return call.sid


async def read_call(
    url: str, fingerprint: str, sid: str, frames: int
) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The call's catalog, and ``frames`` uplink frames as (group sequence, payload)."""
    async with moq.Client(
        url, tls_fingerprints=[fingerprint], websocket_enabled=False, reconnect=False
    ) as client:
        broadcast = await asyncio.wait_for(
            client.announced_broadcast(f"voice/{sid}").available(), 10
        )
        catalog_track = await asyncio.wait_for(broadcast.subscribe_track("catalog"), 10)
        catalog = await asyncio.wait_for(catalog_track.read_frame(), 10)
        uplink = await asyncio.wait_for(broadcast.subscribe_track("uplink"), 10)
        payloads: list[tuple[int, bytes]] = []
        while len(payloads) < frames:
            group = await asyncio.wait_for(uplink.next_group(), 10)
            assert group is not None, "the uplink track ended"
            while (frame := await asyncio.wait_for(group.read_frame(), 10)) is not None:
                payloads.append((group.sequence, frame.payload))
        return catalog.payload, payloads


def contiguous_runs(frames: list[tuple[int, bytes]]) -> list[list[bytes]]:
    """The payloads split wherever a group was skipped (moq-rs skips ahead for a
    reader that falls behind)."""
    runs: list[list[bytes]] = []
    previous: int | None = None
    for sequence, payload in frames:
        if previous is None or sequence not in (previous, previous + 1):
            runs.append([])
        runs[-1].append(payload)
        previous = sequence
    return runs


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
def test_moq_rs_reads_the_catalog_and_the_audio_with_the_token_in_the_url(
    kind: str, voice: Voice, engine: Engine
) -> None:
    sid = answered(voice)
    server_token = voice.calls.create_bridge_token(sid, "server").token
    base = engine.relay_url if kind == "quic" else engine.relay_webtransport_url
    assert base is not None
    fingerprint = engine.relay_cert_sha256.replace(":", "").lower()
    # A pcm16 16 kHz bridge is on the call: the callee speaks its format.
    with voice.audio_bridge.attach(sid, codec="pcm16", sample_rate=16000):
        deadline = time.monotonic() + 10
        while (engine.media_counters(sid) or {}).get("format") is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        catalog_payload, payloads = asyncio.run(
            read_call(f"{base}?jwt={server_token}", fingerprint, sid, frames=100)
        )
    voice.calls.get(sid=sid).hangup()
    catalog = json.loads(catalog_payload)
    assert catalog["version"] == "draft-01"
    tracks = {track["name"]: track for track in catalog["tracks"]}
    assert tracks.keys() == {"uplink", "downlink"}
    uplink = tracks["uplink"]
    assert uplink["namespace"] == f"voice/{sid}" and uplink["packaging"] == "loc"
    assert (uplink["codec"], uplink["samplerate"], uplink["channelConfig"]) == (
        "pcm-s16",
        16000,
        "1",
    )
    # Decode with nothing but what the catalog says.
    codec = make_codec(
        MSF_CODECS[uplink["codec"]],
        sample_rate=uplink["samplerate"],
        channels=int(uplink["channelConfig"]),
        frame_ms=uplink["maxGroupDuration"],
    )
    runs = contiguous_runs(payloads)
    # A skipped group or two on a loaded machine is moq-rs's choice; more would
    # mean the relay did not keep up.
    assert len(runs) <= 3, [len(run) for run in runs]
    for run in runs:
        pcm = np.concatenate([codec.decode(payload) for payload in run])
        digits = detect_dtmf(pcm, uplink["samplerate"])
        # Each stretch without a gap decodes to a stretch of the callee's phrase.
        assert digits in PHRASE * 4, (digits, [len(run) for run in runs])
        if len(runs) == 1:
            assert len(digits) >= len(PHRASE), digits


def test_a_bad_token_in_the_url_is_refused(voice: Voice, engine: Engine) -> None:
    sid = answered(voice)
    token = voice.calls.create_bridge_token(sid, "server").token
    fingerprint = engine.relay_cert_sha256.replace(":", "").lower()

    async def connect(url: str) -> None:
        async with moq.Client(
            url, tls_fingerprints=[fingerprint], websocket_enabled=False, reconnect=False
        ) as client:
            await asyncio.wait_for(client.announced_broadcast(f"voice/{sid}").available(), 5)

    assert engine.relay_url is not None
    for url in (
        engine.relay_url,  # no token at all
        f"{engine.relay_url}?jwt={token}x",  # a token whose signature does not match
        f"{engine.relay_url}?other={token}",
    ):
        with pytest.raises(moq.Error):
            asyncio.run(connect(url))
    voice.calls.get(sid=sid).hangup()
