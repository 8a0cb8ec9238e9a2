"""The format contract end to end: the dev engine speaks, hears and transcodes real audio.

- A server bridge in each of the four codecs hears the simulated callee say its
  DTMF phrase in that codec (decoded here with ``make_codec``: not silence, not
  placeholders), without the relay transcoding anything.
- A pcm16 16 kHz server bridge and an Opus 48 kHz caller bridge on one call hear
  each other's digits through the relay's transcoding.
- The echo callee returns a pcm16 bridge's frames byte for byte.
- An agent hears and answers a pcm16 caller in pcm16.
- A malformed catalog is ignored by the relay, which keeps serving.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import anyio
import numpy as np
import pytest

from clutchcall import AsyncVoice, CallStatus, ConflictError, Voice
from clutchcall.audio import detect_dtmf, make_codec, synth_dtmf, synth_silence, synth_tone
from clutchcall.dev import Engine
from clutchcall.dev.callees import PHRASE
from clutchcall.moqnet import MoqtClient
from clutchcall.moqt import AudioFormat

pytestmark = pytest.mark.timeout(60)

ANSWERS = "+15551234567"
ECHO = "+15005550004"
FROM = "+15558675309"

FOUR = [
    AudioFormat("opus", 48000, 1, 20),
    AudioFormat("pcm16", 16000, 1, 20),
    AudioFormat("g711_ulaw", 8000, 1, 20),
    AudioFormat("g711_alaw", 8000, 1, 20),
]


def answered(voice: Voice, to: str = ANSWERS, agent: str | None = None) -> str:
    call = voice.calls.originate(to=to, from_=FROM, trunk_id="trunk_main", agent=agent)
    deadline = time.monotonic() + 10
    while voice.calls.get(sid=call.sid).status is not CallStatus.IN_PROGRESS:
        assert time.monotonic() < deadline, "the call was not answered"
        time.sleep(0.01)
    return call.sid


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def codec_of(fmt: AudioFormat):  # type: ignore[no-untyped-def]
    return make_codec(
        fmt.codec, sample_rate=fmt.sample_rate, channels=fmt.channels, frame_ms=fmt.frame_ms
    )


def decode(fmt: AudioFormat, frames: list[bytes]) -> np.ndarray:
    codec = codec_of(fmt)
    return np.concatenate([codec.decode(frame) for frame in frames])


def says_the_phrase(digits: str) -> bool:
    """``digits`` is the callee's phrase, over and over (from anywhere in it), and
    holds at least one whole phrase's worth of digits."""
    return len(digits) >= len(PHRASE) and digits in PHRASE * (len(digits) // len(PHRASE) + 2)


def collector(frames: list[bytes]) -> Callable[[bytes, int], None]:
    return lambda frame, timestamp_us: frames.append(frame)


def frames_of(fmt: AudioFormat, digits: str) -> list[bytes]:
    pcm = np.concatenate([synth_dtmf(digits, fmt.sample_rate), synth_silence(0.2, fmt.sample_rate)])
    codec = codec_of(fmt)
    n = codec.samples_per_frame
    return [codec.encode(pcm[i : i + n]) for i in range(0, pcm.shape[0] // n * n, n)]


def test_a_bridge_in_each_codec_hears_the_callee_speak_in_that_codec(
    voice: Voice, engine: Engine
) -> None:
    """Four calls at once, one bridge per codec: at least 2 s of uplink each, which
    decodes in the bridge's own format to the callee's phrase."""
    heard: dict[AudioFormat, list[bytes]] = {fmt: [] for fmt in FOUR}
    before = engine.relay_stats().frames_transcoded
    sids = [answered(voice) for _ in FOUR]
    bridges = [
        voice.audio_bridge.attach(
            sid,
            codec=fmt.codec,
            sample_rate=fmt.sample_rate,
            channels=fmt.channels,
            frame_ms=fmt.frame_ms,
            on_uplink=collector(heard[fmt]),
        )
        for sid, fmt in zip(sids, FOUR, strict=True)
    ]
    try:
        wanted = 2200 // 20
        wait_for(lambda: all(len(frames) >= wanted for frames in heard.values()))
    finally:
        for bridge in bridges:
            bridge.close()
        for sid in sids:
            voice.calls.get(sid=sid).hangup()
    for fmt, frames in heard.items():
        pcm = decode(fmt, frames[:wanted])  # raises if a frame is not in this format
        assert len(pcm) >= 2 * fmt.sample_rate
        assert np.abs(pcm.astype(np.int32)).max() > 3000, f"{fmt}: silence"
        digits = detect_dtmf(pcm, fmt.sample_rate)
        assert says_the_phrase(digits), f"{fmt}: heard {digits!r}"
        counters = engine.media_counters(sids[FOUR.index(fmt)])
        assert counters is not None and counters["format"] == str(fmt)
    # The callees spoke each bridge's format: nothing needed transcoding.
    assert engine.relay_stats().frames_transcoded == before


def test_a_pcm16_server_and_an_opus_caller_hear_each_other_through_the_gateway(
    voice: Voice, engine: Engine
) -> None:
    server_fmt = AudioFormat("pcm16", 16000, 1, 20)
    caller_fmt = AudioFormat("opus", 48000, 1, 20)
    sid = answered(voice)
    heard_by_server: list[bytes] = []
    heard_by_caller: list[bytes] = []
    lock = threading.Lock()

    def on_uplink(frame: bytes, ts: int) -> None:
        with lock:
            heard_by_server.append(frame)

    before = engine.relay_stats().frames_transcoded
    with (
        voice.audio_bridge.attach(
            sid, codec="pcm16", sample_rate=16000, on_uplink=on_uplink
        ) as server,
        voice.audio_bridge.attach_caller(
            sid, codec="opus", on_downlink=lambda f, ts: heard_by_caller.append(f)
        ) as caller,
    ):
        time.sleep(0.2)  # both catalogs reach the relay; the callee gives way to the caller
        with lock:
            heard_by_server.clear()
        for up, down in zip(
            frames_of(caller_fmt, "2468"), frames_of(server_fmt, "3579"), strict=False
        ):
            caller.publish_uplink(up)
            server.publish_downlink(down)
            time.sleep(0.01)
        wait_for(lambda: len(heard_by_caller) >= 40 and len(heard_by_server) >= 40)
        time.sleep(0.1)
    voice.calls.get(sid=sid).hangup()
    with lock:
        server_pcm = decode(server_fmt, heard_by_server)  # pcm16 16 kHz frames: 640 bytes
    assert all(len(frame) == 640 for frame in heard_by_server)
    assert "2468" in detect_dtmf(server_pcm, 16000)
    assert "3579" in detect_dtmf(decode(caller_fmt, heard_by_caller), 48000)
    assert engine.relay_stats().frames_transcoded > before


def test_the_echo_callee_returns_pcm16_frames_byte_for_byte(voice: Voice, engine: Engine) -> None:
    fmt = AudioFormat("pcm16", 16000, 1, 20)
    sid = answered(voice, ECHO)
    sent = frames_of(fmt, "0")[:20]
    back: list[bytes] = []
    with voice.audio_bridge.attach(
        sid, codec="pcm16", sample_rate=16000, on_uplink=lambda f, ts: back.append(f)
    ) as bridge:
        wait_for(lambda: (engine.media_counters(sid) or {}).get("joined"))
        for frame in sent:
            bridge.publish_downlink(frame)
            time.sleep(0.005)
        wait_for(lambda: len(back) >= len(sent))
    voice.calls.get(sid=sid).hangup()
    assert back == sent
    counters = engine.media_counters(sid)
    assert counters is not None and counters["format"] == str(fmt)


def test_an_agent_hears_and_answers_a_pcm16_caller_in_pcm16(voice: Voice, engine: Engine) -> None:
    fmt = AudioFormat("pcm16", 16000, 1, 20)
    sid = answered(voice, agent="billing-bot")
    replies: list[bytes] = []
    speech = np.concatenate(
        [synth_tone(440.0, 0.5, 16000, amplitude=0.3), synth_silence(0.6, 16000)]
    )
    with voice.audio_bridge.attach_caller(
        sid, codec="pcm16", sample_rate=16000, on_downlink=lambda f, ts: replies.append(f)
    ) as caller:
        codec = codec_of(fmt)
        for i in range(0, speech.shape[0] // 320 * 320, 320):
            caller.publish_uplink(codec.encode(speech[i : i + 320]))
            time.sleep(0.02)
        record = engine.agent_record(sid)
        wait_for(lambda: record is not None and record.transcripts()[0][1].utterances >= 1)
        wait_for(lambda: len(replies) >= 30)
    voice.calls.get(sid=sid).hangup()
    assert record is not None
    (name, transcript), *_ = record.transcripts()
    assert name == "billing-bot" and transcript.undecodable == 0
    assert all(len(frame) == 640 for frame in replies)
    assert np.abs(decode(fmt, replies).astype(np.int32)).max() > 3000


@pytest.mark.anyio
async def test_the_relay_ignores_a_malformed_catalog(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    call = await async_voice.calls.originate(
        to="+15005550002", from_=FROM, trunk_id="t", ring_timeout_sec=120
    )
    token = (await async_voice.calls.create_bridge_token(call.sid, "caller")).token
    before = engine.relay_stats().catalogs_refused
    assert engine.relay_url is not None and engine.relay_ca_file is not None
    async with MoqtClient(engine.relay_url, token=token, verify=engine.relay_ca_file) as client:
        uplink = await client.publish_audio(call.sid, "uplink", format=AudioFormat("pcm16", 8000))
        assert uplink.catalog is not None
        catalog = await client.read_catalog(call.sid)
        assert catalog.format_of("uplink") == AudioFormat("pcm16", 8000)
        # Now declare garbage: the relay keeps the last good format and carries on.
        uplink.catalog._payload = b'{"version": "draft-01", "tracks": [{"name": 5}]}'
        uplink.catalog._group += 1
        uplink.catalog._sent.clear()
        uplink.catalog._flush()
        deadline = time.monotonic() + 5
        while engine.relay_stats().catalogs_refused == before:
            assert time.monotonic() < deadline
            await anyio.sleep(0.01)
        again = await client.read_catalog(call.sid, "uplink")
        assert again.format_of("uplink") == AudioFormat("pcm16", 8000)
    await async_voice.calls.hangup(call.sid)


@pytest.mark.anyio
async def test_a_publisher_that_declares_nothing_is_taken_to_send_the_default(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    """Like a generic MoQT client: Opus 48 kHz mono with no catalog reaches a pcm16
    16 kHz bridge transcoded."""
    call = await async_voice.calls.originate(
        to="+15005550002", from_=FROM, trunk_id="t", ring_timeout_sec=120
    )
    token = (await async_voice.calls.create_bridge_token(call.sid, "caller")).token
    heard: list[bytes] = []
    assert engine.relay_url is not None and engine.relay_ca_file is not None
    async with (
        MoqtClient(engine.relay_url, token=token, verify=engine.relay_ca_file) as phone,
        await async_voice.audio_bridge.attach(
            call.sid, codec="pcm16", sample_rate=16000, on_uplink=lambda f, ts: heard.append(f)
        ),
    ):
        uplink = await phone.publish_audio(call.sid, "uplink")
        await uplink.wait_subscribed()
        await anyio.sleep(0.1)  # the bridge's catalog reaches the relay
        for frame in frames_of(AudioFormat(), "7"):
            await uplink.write(frame)
            await anyio.sleep(0.005)
        with anyio.fail_after(5):
            while len(heard) < 10:  # noqa: ASYNC110 - frames arrive in the client's task
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)
    await async_voice.calls.hangup(call.sid)
    assert all(len(frame) == 640 for frame in heard)
    assert "7" in detect_dtmf(decode(AudioFormat("pcm16", 16000), heard), 16000)


@pytest.mark.anyio
async def test_a_publisher_faster_than_real_time_costs_a_bounded_transcoding_budget(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    """Five seconds of Opus sent at once to a pcm16 bridge: the relay transcodes
    about its burst allowance (1 s) and drops the rest for that bridge, counted."""
    call = await async_voice.calls.originate(
        to="+15005550002", from_=FROM, trunk_id="t", ring_timeout_sec=120
    )
    token = (await async_voice.calls.create_bridge_token(call.sid, "caller")).token
    heard: list[bytes] = []
    frames = frames_of(AudioFormat(), "1") * 10  # 250 frames: 5 s of audio
    before = engine.relay_stats()
    assert engine.relay_url is not None and engine.relay_ca_file is not None
    async with (
        MoqtClient(
            engine.relay_url, token=token, verify=engine.relay_ca_file, queue_frames=len(frames)
        ) as phone,
        await async_voice.audio_bridge.attach(
            call.sid, codec="pcm16", sample_rate=16000, on_uplink=lambda f, ts: heard.append(f)
        ),
    ):
        uplink = await phone.publish_audio(call.sid, "uplink")
        await uplink.wait_subscribed()
        await anyio.sleep(0.1)  # the bridge's catalog reaches the relay
        started = time.monotonic()
        for frame in frames:
            uplink.write_nowait(frame)
        with anyio.fail_after(10):
            while uplink.queued or uplink.in_flight:  # noqa: ASYNC110 - the client's task sends
                await anyio.sleep(0.01)
        elapsed = time.monotonic() - started
        await anyio.sleep(0.2)
    with contextlib.suppress(ConflictError):
        await async_voice.calls.hangup(call.sid)
    after = engine.relay_stats()
    transcoded = after.frames_transcoded - before.frames_transcoded
    over = after.frames_over_budget - before.frames_over_budget
    allowance = (1.0 + 2.0 * (elapsed + 0.3)) / 0.02 + 2
    assert 0 < transcoded <= allowance, (transcoded, elapsed)
    assert over >= len(frames) - allowance, (over, elapsed)
    assert len(heard) <= transcoded
