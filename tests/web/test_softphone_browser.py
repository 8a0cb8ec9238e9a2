"""The softphone in a real browser: headless Chromium (the system package) driven by
Playwright, a fake microphone playing a WAV tone, the dev engine's page and relay.

Every test reads its verdict from what the browser did (what its OpusPlayer actually
played, what it published), so none can pass without the browser having run. When
``/usr/bin/chromium`` is missing the module is skipped, naming the package to install
(``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from numpy.typing import NDArray

from clutchcall.audio import make_codec, synth_silence, synth_tone
from clutchcall.audio.wav import write_wav
from clutchcall.bridge import AudioBridge
from clutchcall.dev import Engine
from clutchcall.moqnet import MoqtClient
from clutchcall.moqt import AudioFormat, Catalog

CHROMIUM = Path(os.environ.get("CLUTCHCALL_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(
        f"the browser tests need headless Chromium at {CHROMIUM}: "
        "install the Debian package 'chromium' (apt-get install -y chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")

pytestmark = pytest.mark.timeout(60)

RATE = 48000
MIC_TONE = 1000.0
SERVER_TONE = 600.0
ECHO_NUMBER = "+15005550004"
NORMAL_NUMBER = "+15551234567"
#: The healthcare-assistant agent's reply tones (clutchcall.dev.agents).
AGENT_TONES = (523.25, 659.25, 783.99)
#: Where the mid-call screenshot goes (CLUTCHCALL_SCREENSHOT overrides it).
SCREENSHOT = Path(os.environ.get("CLUTCHCALL_SCREENSHOT", "out/softphone.png"))

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

# Float32 samples the player played, as base64 (JSON would be ten times bigger).
RECORD_JS = """async (ms) => {
  const samples = await window.softphone.player.recordOutput(ms);
  const bytes = new Uint8Array(samples.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}"""


def _samples(encoded: str) -> NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(encoded), dtype=np.float32)


def dominant_frequency(samples: NDArray[Any], rate: int = RATE) -> float:
    """The strongest frequency above 100 Hz (Hann window, zero-padded to 1 Hz bins)."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), n=max(rate, x.size)))
    freqs = np.fft.rfftfreq(max(rate, x.size), 1 / rate)
    spectrum[freqs < 100] = 0
    return float(freqs[int(np.argmax(spectrum))])


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone: 1 s of a 1 kHz tone, then 0.3 s of silence (looped)."""
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    tone = synth_tone(MIC_TONE, 1.0, RATE).reshape(-1)
    write_wav(path, np.concatenate([tone, synth_silence(0.3, RATE).reshape(-1)]), RATE, 1)
    return path


@pytest.fixture(scope="module")
def web_engine() -> Iterator[Engine]:
    with Engine(time_scale=0.05) as engine:
        yield engine


@pytest.fixture(scope="module")
def browser(mic_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium with a fresh profile and the WAV as its microphone."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={mic_wav}"],
            viewport={"width": 1000, "height": 740},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, web_engine: Engine) -> Iterator[Any]:
    """The softphone page, loaded and ready; closed (with its media) after the test."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(web_engine.softphone_url)
    page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    try:
        yield page
    finally:
        page.close()
    assert not errors, f"uncaught errors on the page: {errors}"


def page_state(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """() => {
      const s = window.softphone;
      return {
        callSid: s.callSid, status: s.status, rttP50Ms: s.rttP50Ms, framesIn: s.framesIn,
        error: s.error, events: s.events,
        bridge: s.bridge && s.bridge.stats, mic: s.mic && s.mic.stats,
        player: s.player && s.player.stats,
      };
    }"""
    )
    return result


def dial(page: Any, to: str, agent: str = "") -> dict[str, Any]:
    page.fill("#to", to)
    page.select_option("#agent", agent)
    page.click("#call")
    return wait_for_audio(page)


def wait_for_audio(page: Any, frames: int = 25) -> dict[str, Any]:
    """Wait until the call is up and the page has received ``frames`` downlink frames."""

    def ready() -> dict[str, Any] | None:
        state = page_state(page)
        assert state["error"] is None, state["error"]
        return state if state["status"] == "in_progress" and state["framesIn"] >= frames else None

    result: dict[str, Any] = wait_for(ready, 15, f"{frames} downlink frames")
    return result


def test_echo_number_plays_the_mic_tone_back(page: Any, web_engine: Engine) -> None:
    state = dial(page, ECHO_NUMBER)
    played = _samples(page.evaluate(RECORD_JS, 1300))
    assert dominant_frequency(played) == pytest.approx(MIC_TONE, abs=5)
    # The round trip is measured on the page, from the frames' own timestamps.
    state = wait_for(lambda: page_state(page)["rttP50Ms"], 5, "a round-trip measurement")
    rtt = page_state(page)["rttP50Ms"]
    assert 0 < rtt < 1000
    assert page.inner_text("#rtt").startswith("p50 ")
    assert "in_progress" in page.inner_text("#status")
    # What the echo callee sent back is what the page published.
    counters = web_engine.media_counters(page_state(page)["callSid"])
    assert counters is not None and counters["downlink"]["frames"] > 0
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    page.click("#hangup")
    wait_for(lambda: page_state(page)["status"] == "completed", 5, "the hangup")
    assert state is not None


def talk_to_the_page(
    page: Any, bridge: AudioBridge, frames: list[bytes], heard: list[bytes], lock: threading.Lock
) -> NDArray[np.float32]:
    """Publish ``frames`` (in a loop, in real time, 500 at most) on the bridge's
    downlink while the page plays them. ``heard`` (the uplink frames Python receives)
    is emptied first, as from here on the page is the uplink's publisher; returns
    the second the page recorded once it played 40 frames and Python heard 60."""
    with lock:
        heard.clear()
    stop = threading.Event()

    def speak() -> None:
        next_at = time.monotonic()
        i = 0
        while not stop.is_set() and i < 500:
            bridge.publish_downlink(frames[i % len(frames)])
            i += 1
            next_at += 0.02
            time.sleep(max(0.0, next_at - time.monotonic()))

    speaker = threading.Thread(target=speak, daemon=True)
    speaker.start()
    try:
        wait_for_audio(page, frames=40)
        played = _samples(page.evaluate(RECORD_JS, 1000))
        wait_for(lambda: len(heard) >= 60, 10, "60 uplink frames in Python")
    finally:
        stop.set()
        speaker.join(timeout=5)
    return played


def test_page_and_python_server_bridge_hear_each_other(page: Any, web_engine: Engine) -> None:
    codec = make_codec("opus", sample_rate=RATE, channels=1, frame_ms=20)
    heard: list[bytes] = []
    lock = threading.Lock()

    def on_uplink(frame: bytes, timestamp_us: int) -> None:
        with lock:
            heard.append(frame)

    tone = synth_tone(SERVER_TONE, 1.0, RATE)
    frames = [codec.encode(tone[i : i + 960]) for i in range(0, RATE, 960)]
    with web_engine.voice() as voice:
        call = voice.calls.originate(to=NORMAL_NUMBER, from_="+15558675309", trunk_id="trunk_main")
        wait_for(lambda: voice.calls.get(call.sid).status == "in_progress", 5, "the answer")
        with voice.audio_bridge.attach(call.sid, codec="opus", on_uplink=on_uplink) as bridge:
            page.fill("#join-sid", call.sid)
            page.click("#join")
            wait_for(
                lambda: (page_state(page)["mic"] or {}).get("framesEncoded", 0) > 10, 10, "mic"
            )
            played = talk_to_the_page(page, bridge, frames, heard, lock)
        with lock:
            uplink = list(heard[-50:])
        decoder = make_codec("opus", sample_rate=RATE, channels=1, frame_ms=20)
        pcm = np.concatenate([decoder.decode(frame).reshape(-1) for frame in uplink])
        voice.calls.hangup(call.sid)
    # Python decoded the browser's Opus and found the mic's tone...
    assert dominant_frequency(pcm.astype(np.float64) / 32768) == pytest.approx(MIC_TONE, abs=5)
    # ...and the browser played the tone Python published.
    assert dominant_frequency(played) == pytest.approx(SERVER_TONE, abs=5)


def merged_catalog_once(engine: Engine, call_sid: str, token: str, track: str) -> Catalog:
    """The call's merged catalog, read by a Python MoqtClient over QUIC as soon as it
    declares ``track`` in Opus 48 kHz mono 20 ms (the browser's format)."""

    async def read() -> Catalog:
        assert engine.relay_url is not None and engine.relay_ca_file is not None
        async with MoqtClient(engine.relay_url, token=token, verify=engine.relay_ca_file) as client:
            subscription = await client.subscribe_catalog(call_sid)
            with anyio.fail_after(10):
                async for catalog in subscription:
                    if catalog.format_of(track) == AudioFormat("opus", 48000, 1, 20):
                        return catalog
        raise AssertionError("the catalog subscription ended")

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's loop
        return pool.submit(anyio.run, read).result(timeout=20)


def test_page_declares_its_format_and_hears_a_pcm16_server_through_the_gateway(
    page: Any, web_engine: Engine
) -> None:
    """The page's bridge declares Opus 48 kHz mono 20 ms in its uplink catalog: Python
    finds it in the relay's merged catalog, the page reads the pcm16 server bridge's
    downlink format, and the relay, told what the page speaks, transcodes that pcm16
    downlink into Opus for it (without the declaration the page got raw pcm16)."""
    server = make_codec("pcm16", sample_rate=16000, channels=1, frame_ms=20)
    tone = synth_tone(SERVER_TONE, 1.0, 16000)
    frames = [server.encode(tone[i : i + 320]) for i in range(0, 16000, 320)]
    heard: list[bytes] = []
    lock = threading.Lock()

    def on_uplink(frame: bytes, timestamp_us: int) -> None:
        with lock:
            heard.append(frame)

    with web_engine.voice() as voice:
        call = voice.calls.originate(to=NORMAL_NUMBER, from_="+15558675309", trunk_id="trunk_main")
        wait_for(lambda: voice.calls.get(call.sid).status == "in_progress", 5, "the answer")
        token = voice.calls.create_bridge_token(call.sid, "server").token
        with voice.audio_bridge.attach(
            call.sid, codec="pcm16", sample_rate=16000, on_uplink=on_uplink
        ) as bridge:
            page.fill("#join-sid", call.sid)
            page.click("#join")
            catalog = merged_catalog_once(web_engine, call.sid, token, "uplink")
            assert catalog.format_of("downlink") == AudioFormat("pcm16", 16000)
            (uplink,) = [t for t in catalog.tracks if t.name == "uplink"]
            assert (uplink.codec, uplink.samplerate, uplink.channel_config) == ("opus", 48000, "1")
            declared = wait_for(
                lambda: page.evaluate(
                    "() => window.softphone.bridge && window.softphone.bridge.downlinkFormat"
                    " && String(window.softphone.bridge.downlinkFormat)"
                ),
                10,
                "the page to read the downlink format",
            )
            assert declared == "pcm16 16000 Hz 1 ch 20 ms"
            played = talk_to_the_page(page, bridge, frames, heard, lock)
        with lock:
            uplink_frames = list(heard[-50:])
        voice.calls.hangup(call.sid)
    # The page played the server's tone, transcoded from pcm16, and decoded every frame...
    assert dominant_frequency(played) == pytest.approx(SERVER_TONE, abs=5)
    assert page_state(page)["player"]["decodeErrors"] == 0
    # ...and Python heard the page's Opus as pcm16 16 kHz, the format it declared.
    assert all(len(frame) == 640 for frame in uplink_frames)
    pcm = np.concatenate([server.decode(frame).reshape(-1) for frame in uplink_frames])
    assert dominant_frequency(pcm.astype(np.float64) / 32768, 16000) == pytest.approx(
        MIC_TONE, abs=5
    )


def test_dev_agent_hears_the_page_and_the_page_hears_it(page: Any, web_engine: Engine) -> None:
    state = dial(page, NORMAL_NUMBER, agent="healthcare-assistant")
    sid = state["callSid"]

    def agent_replied() -> bool:
        record = web_engine.agent_record(sid)
        if record is None or not record.transcripts():
            return False
        transcript = record.transcripts()[-1][1]
        return transcript.utterances >= 1 and transcript.frames_heard >= 50

    # The mic's 1 s tone then 0.3 s of silence is an utterance to the agent's VAD.
    wait_for(agent_replied, 15, "the agent to hear an utterance and reply")
    name, transcript = web_engine.agent_record(sid).transcripts()[-1]  # type: ignore[union-attr]
    assert name == "healthcare-assistant"
    assert transcript.undecodable == 0  # it decoded every Opus frame of the browser
    assert transcript.speech_frames > 20
    assert "reply" in transcript.events
    # The page plays what the agent says: its greeting and reply tones.
    played = _samples(page.evaluate(RECORD_JS, 2600))
    peak = dominant_frequency(played)
    assert min(abs(peak - tone) for tone in AGENT_TONES) < 8, peak
    page.click("#hangup")


def test_mic_stop_keeps_the_publication_and_close_ends_both_tracks(
    page: Any, web_engine: Engine
) -> None:
    state = dial(page, ECHO_NUMBER)
    sid = state["callSid"]
    # Keep a few echoed (valid Opus) frames to publish by hand later.
    page.evaluate(
        """() => {
      const s = window.softphone;
      s.kept = [];
      s.bridge.onDownlink((frame, tsUs) => {
        if (s.kept.length < 10) s.kept.push(frame);
        s.framesIn++;
        s.player.push(tsUs, frame);
      });
    }"""
    )
    wait_for(lambda: page.evaluate("() => window.softphone.kept.length") >= 10, 5, "frames")
    page.click("#mute")  # mic.stop()
    stopped = page.evaluate(
        """() => ({
      stopped: window.softphone.mic.stopped,
      tracks: window.softphone.mic.stream.getTracks().map((t) => t.readyState),
      closed: window.softphone.bridge.closed,
    })"""
    )
    assert stopped == {"stopped": True, "tracks": ["ended"], "closed": False}
    captured = page.evaluate("() => window.softphone.mic.stats.framesCaptured")
    time.sleep(0.3)
    assert page.evaluate("() => window.softphone.mic.stats.framesCaptured") == captured
    # The uplink publication is still open: frames published by hand come back.
    before = page_state(page)["framesIn"]
    page.evaluate(
        """() => {
      for (const f of window.softphone.kept) window.softphone.bridge.publishUplink(f);
    }"""
    )
    wait_for(lambda: page_state(page)["framesIn"] >= before + 10, 5, "hand-published frames")
    assert any(sid in calls for calls in web_engine.relay_client_sessions())
    # close(): both tracks and the session end; publishing afterwards is refused.
    outcome = page.evaluate(
        """async () => {
      const bridge = window.softphone.bridge;
      await bridge.close();
      let refused = null;
      try { bridge.publishUplink(new Uint8Array([1, 2, 3])); } catch (e) { refused = e.name; }
      return { refused, ended: bridge.ended, uplink: bridge.uplink.closed,
               downlink: bridge.downlink.closed, connected: bridge.connected };
    }"""
    )
    assert outcome == {
        "refused": "BridgeClosedError",
        "ended": True,
        "uplink": True,
        "downlink": True,
        "connected": False,
    }
    wait_for(
        lambda: not any(sid in calls for calls in web_engine.relay_client_sessions()),
        5,
        "the relay to drop the page's session",
    )
    with web_engine.voice() as voice:
        voice.calls.hangup(sid)


PLAYER_JS = """async () => {
  const { OpusPlayer } = await import("/softphone/clutchcall.js");
  const context = new AudioContext({ sampleRate: 48000 });
  const player = new OpusPlayer(context, { sampleRate: 48000, channels: 1 });
  await player.start();
  // 440 Hz, 20 ms Opus frames, encoded in the page.
  const frames = [];
  const encoder = new AudioEncoder({
    output: (chunk) => {
      const f = new Uint8Array(chunk.byteLength);
      chunk.copyTo(f);
      frames.push(f);
    },
    error: (e) => { throw e; },
  });
  encoder.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: 1, bitrate: 64000,
                      opus: { frameDuration: 20000 } });
  for (let k = 0; k < 40; k++) {
    const data = new Float32Array(960);
    for (let i = 0; i < 960; i++) {
      data[i] = 0.3 * Math.sin((2 * Math.PI * 440 * (k * 960 + i)) / 48000);
    }
    encoder.encode(new AudioData({ format: "f32-planar", sampleRate: 48000, numberOfFrames: 960,
                                   numberOfChannels: 1, timestamp: k * 20000, data }));
  }
  await encoder.flush();
  const recording = player.recordOutput(1600);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // 400 ms of audio, 400 ms of nothing (underrun), 400 ms again, then nothing.
  let k = 0;
  for (const burst of [20, 20]) {
    const start = performance.now();
    for (let i = 0; i < burst; i++, k++) {
      player.push(k * 20000, frames[k % frames.length]);
      const due = start + (i + 1) * 20 - 40;  // keep about 40 ms ahead
      await sleep(Math.max(0, due - performance.now()));
    }
    await sleep(400);
  }
  const samples = await recording;
  await sleep(100);
  const stats = { ...player.stats };
  player.close();
  await context.close();
  const bytes = new Uint8Array(samples.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return { samples: btoa(text), stats };
}"""


def test_player_underrun_plays_silence_not_glitches(page: Any) -> None:
    result = page.evaluate(PLAYER_JS)
    played = _samples(result["samples"])
    assert result["stats"]["underruns"] >= 2
    assert result["stats"]["decodeErrors"] == 0
    loud = np.abs(played) > 1e-4
    assert loud.any()
    # The tone while frames come...
    first = np.flatnonzero(loud)[0]
    assert dominant_frequency(played[first : first + 9600]) == pytest.approx(440, abs=5)
    # ...exact silence in the gap and after the end (no repeated or stale audio)...
    edges = np.flatnonzero(np.diff(loud.astype(np.int8)))
    bounds = [0, *(edges + 1).tolist(), loud.size]
    quiet = [(a, b) for a, b in itertools.pairwise(bounds) if not loud[a]]
    # the 400 ms gap (less the 40 ms buffered), with the tone before and after it
    gaps = [(a, b) for a, b in quiet if b - a >= int(0.25 * RATE) and a > 0 and b < loud.size]
    assert gaps, quiet
    assert np.count_nonzero(played[gaps[0][0] + 200 : gaps[0][1]]) == 0
    assert not loud[-int(0.1 * RATE) :].any()
    assert np.count_nonzero(played[-int(0.1 * RATE) :]) == 0
    # ...and no click: no step between samples beyond what a 0.3-amplitude 440 Hz sine
    # (0.017 per sample) plus codec noise makes, at underruns and restarts included.
    assert float(np.max(np.abs(np.diff(played)))) < 0.06


def test_bridge_redials_and_replays_its_tracks_when_the_relay_restarts(
    page: Any, web_engine: Engine
) -> None:
    state = dial(page, ECHO_NUMBER)
    web_engine.stop_relay()
    time.sleep(0.3)
    web_engine.start_relay()  # same port, same certificate: the page's hash still holds
    reconnected = wait_for(
        lambda: (page_state(page)["bridge"] or {}).get("reconnects", 0) >= 1, 15, "a redial"
    )
    assert reconnected
    # The echo comes back on the new session: both tracks were replayed.
    after = page_state(page)["framesIn"]
    wait_for(lambda: page_state(page)["framesIn"] >= after + 25, 10, "audio after the redial")
    played = _samples(page.evaluate(RECORD_JS, 1300))
    assert dominant_frequency(played) == pytest.approx(MIC_TONE, abs=5)
    assert page_state(page)["error"] is None
    page.click("#hangup")
    assert state["callSid"]
