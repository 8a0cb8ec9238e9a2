"""``make demo``: whole calls against the embedded dev engine, start to finish.

1. A call to the echo test number: attach the audio bridge, send downlink frames
   (Opus), time each one's way back on uplink.
2. A call answered by a person (the simulated callee, who says a few DTMF digits
   over and over): attach a pcm16 16 kHz bridge, record what the caller says,
   decoded from uplink, to ``out/caller-side.wav``, and name the digits heard.
3. A call answered by an AI agent: play a WAV into the uplink as the caller, record
   the agent's side to ``out/agent-side.wav``, hand the call to another agent
   midway, hang up, and report what each side heard.

It runs the dev engine, so it needs the ``dev`` extra: ``pip install 'clutchcall[dev]'``.
"""

from __future__ import annotations

import statistics
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from ._extras import raise_missing_extra

try:
    import numpy as np
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ModuleNotFoundError as exc:
    raise_missing_extra(exc, feature="clutchcall.demo", extra="dev")

from . import CallStatus, Voice
from .audio import (
    AudioPlayer,
    AudioSource,
    detect_dtmf,
    make_codec,
    read_wav,
    synth_prompt,
    synth_silence,
    synth_tone,
    write_wav,
)
from .dev import Engine

ECHO_NUMBER = "+15005550004"
CALLEE = "+15551234567"
CALLER_ID = "+15558675309"
PLAYOUT_DELAY_US = 60_000
PREBUFFER_FRAMES = 3  # AudioPlayer's default prebuffer (60 ms)
RECORD_CAPACITY_MS = 600_000  # the recorder holds the whole call before writing it out
CALLER_SECONDS = 3.0  # how long the caller side is recorded


@dataclass(frozen=True)
class DemoReport:
    echo_frames: int
    rtt_ms_p50: float
    rtt_ms_p99: float
    uplink_frames_sent: int
    downlink_frames_heard: int
    underruns: int
    concealed: int
    wav_path: Path
    wav_seconds: float
    downlink_span_seconds: float
    agents: list[tuple[str, int, int]]  # name, utterances heard, frames said
    caller_wav_path: Path
    caller_wav_seconds: float
    caller_digits: str


def wait_for(voice: Voice, sid: str, wanted: set[CallStatus], timeout: float = 10.0) -> None:
    """Poll the call until it reaches one of ``wanted``, printing each status change."""
    last: CallStatus | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = voice.calls.get(sid=sid)
        if call.status != last:
            print(f"  status: {call.status.value}")
            last = call.status
        if call.status in wanted:
            return
        time.sleep(0.05)
    raise TimeoutError(f"call {sid} did not reach {sorted(s.value for s in wanted)}")


def echo_round_trips(voice: Voice, frames: int = 100) -> tuple[int, list[float]]:
    """Downlink frames to the echo callee and back; returns (frames back, RTTs in ms)."""
    call = voice.calls.originate(to=ECHO_NUMBER, from_=CALLER_ID, trunk_id="trunk_main")
    print(f"echo call {call.sid}")
    wait_for(voice, call.sid, {CallStatus.IN_PROGRESS})
    # A 440 Hz tone in Opus; the echo keeps each frame's timestamp, which names it.
    codec = make_codec("opus")
    tone = synth_tone(440.0, frames * 0.02, 48000)
    opus = [codec.encode(tone[n * 960 : (n + 1) * 960]) for n in range(frames)]
    sent: dict[int, float] = {}
    rtts: list[float] = []
    back = threading.Event()

    def on_uplink(frame: bytes, timestamp_us: int) -> None:
        started = sent.pop(timestamp_us, None)
        if started is not None:
            rtts.append((time.perf_counter() - started) * 1000)
            if len(rtts) == frames:
                back.set()

    with voice.audio_bridge.attach(call.sid, on_uplink=on_uplink) as bridge:
        time.sleep(0.3)  # let the simulated callee join its side of the call
        for n in range(frames):
            timestamp_us = 1_000_000 + n * 20_000
            sent[timestamp_us] = time.perf_counter()
            bridge.publish_downlink(opus[n], timestamp_us)
            time.sleep(0.02)
        back.wait(timeout=5)
        print(f"  bridge stats: {bridge.stats}")
    call.hangup()
    return len(rtts), rtts


def caller_side(voice: Voice, out_dir: Path) -> tuple[Path, float, str]:
    """A call answered by the simulated callee; a pcm16 16 kHz bridge records what
    it says (uplink, decoded) to ``caller-side.wav``. Returns the path, its length
    in seconds and the DTMF digits heard in it."""
    call = voice.calls.originate(to=CALLEE, from_=CALLER_ID, trunk_id="trunk_main")
    print(f"call {call.sid} to a person")
    wait_for(voice, call.sid, {CallStatus.IN_PROGRESS})
    wav_path = out_dir / "caller-side.wav"
    with AudioPlayer.to_wav(
        wav_path, codec="pcm16", sample_rate=16000, capacity_ms=RECORD_CAPACITY_MS
    ) as recorder:
        with voice.audio_bridge.attach(
            call.sid, codec="pcm16", sample_rate=16000, on_uplink=recorder.on_frame
        ) as bridge:
            time.sleep(CALLER_SECONDS)
            print(f"  bridge stats: {bridge.stats}")
        recorder.drain()
    call.hangup()
    wav = read_wav(wav_path)
    digits = detect_dtmf(wav.pcm, wav.sample_rate, channels=wav.channels)
    seconds = len(wav.pcm) / wav.sample_rate
    print(f"  recorded {wav_path} ({seconds:.2f} s): the caller said DTMF {' '.join(digits)}")
    return wav_path, seconds, digits


def agent_call(voice: Voice, out_dir: Path) -> tuple[str, dict[str, int], Path, float, float]:
    """A call handled by agents, with a WAV in and the agent side recorded."""
    prompt_wav = out_dir / "caller-prompt.wav"
    pcm = np.concatenate([synth_prompt(16000).reshape(-1), synth_silence(0.6, 16000).reshape(-1)])
    write_wav(prompt_wav, pcm, 16000)  # made here: the demo ships no binary audio
    call = voice.calls.originate(
        to=CALLEE, from_=CALLER_ID, trunk_id="trunk_main", agent="healthcare-assistant"
    )
    print(f"agent call {call.sid} (agent {call.agent})")
    wait_for(voice, call.sid, {CallStatus.IN_PROGRESS})
    wav_path = out_dir / "agent-side.wav"
    timestamps: list[int] = []
    # Two players: `live` plays out in real time, 60 ms behind arrival, as a listener
    # would hear it (its underruns are the ones worth reporting); `recorder` lays the
    # frames out on their own timeline, so network jitter never stretches the file.
    live = AudioPlayer(lambda pcm: None, codec="opus")
    with AudioPlayer.to_wav(wav_path, codec="opus", capacity_ms=RECORD_CAPACITY_MS) as recorder:

        def on_downlink(frame: bytes, timestamp_us: int) -> None:
            timestamps.append(timestamp_us)
            recorder.on_frame(frame, timestamp_us)
            live.on_frame(frame, timestamp_us)
            if len(timestamps) >= PREBUFFER_FRAMES:  # start once the prebuffer is full
                live.play_until(time.monotonic_ns() // 1000 - PLAYOUT_DELAY_US)

        with voice.audio_bridge.attach_caller(call.sid, on_downlink=on_downlink) as caller:
            sent = AudioSource.from_wav(prompt_wav, codec="opus").run_blocking(
                caller.publish_uplink
            )
            print(f"  played {prompt_wav.name} into uplink: {sent.frames} frames")
            time.sleep(0.8)
            call.transfer(agent="billing-bot")
            print(f"  transferred to agent {call.agent}")
            more = AudioSource.from_wav(prompt_wav, codec="opus").run_blocking(
                caller.publish_uplink
            )
            time.sleep(0.8)
            print(f"  bridge stats: {caller.stats}")
        recorder.drain()
        live.drain()
        stats = live.stats
    call.hangup()
    print(f"  status: {call.status.value} ({call.end_reason.value if call.end_reason else ''})")
    # The downlink's timeline in whole 20 ms slots, as the player lays frames out.
    slots = round((max(timestamps) - min(timestamps)) / 20_000) + 1 if timestamps else 0
    span = slots * 0.02
    with wave.open(str(wav_path), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
    counts = {
        "uplink_sent": sent.frames + more.frames,
        "downlink_heard": len(timestamps),
        "underruns": stats.underruns,
        "concealed": stats.concealed,
    }
    return call.sid, counts, wav_path, seconds, span


def run(out_dir: Path = Path("out"), time_scale: float = 0.5) -> DemoReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    with Engine(time_scale=time_scale) as engine, engine.voice() as voice:
        print(f"dev engine: control plane {engine.base_url}, relay {engine.relay_url}")
        echoed, rtts = echo_round_trips(voice)
        caller_wav, caller_seconds, digits = caller_side(voice, out_dir)
        sid, counts, wav_path, seconds, span = agent_call(voice, out_dir)
        record = engine.agent_record(sid)
        agents = (
            [(n, t.utterances, t.frames_said) for n, t in record.transcripts()] if record else []
        )
    ordered = sorted(rtts) or [float("nan")]
    return DemoReport(
        echo_frames=echoed,
        rtt_ms_p50=statistics.median(ordered),
        rtt_ms_p99=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        uplink_frames_sent=counts["uplink_sent"],
        downlink_frames_heard=counts["downlink_heard"],
        underruns=counts["underruns"],
        concealed=counts["concealed"],
        wav_path=wav_path,
        wav_seconds=seconds,
        downlink_span_seconds=span,
        agents=agents,
        caller_wav_path=caller_wav,
        caller_wav_seconds=caller_seconds,
        caller_digits=digits,
    )


def main() -> None:
    report = run()
    print()
    print("summary")
    print(
        f"  echo: {report.echo_frames} frames back, round trip p50 {report.rtt_ms_p50:.2f} ms, "
        f"p99 {report.rtt_ms_p99:.2f} ms"
    )
    print(
        f"  agent call: uplink {report.uplink_frames_sent} frames sent, downlink "
        f"{report.downlink_frames_heard} frames heard, {report.underruns} underruns, "
        f"{report.concealed} frames concealed"
    )
    for name, utterances, said in report.agents:
        print(f"  agent {name}: heard {utterances} utterance(s), said {said} frames")
    print(f"  agent side recorded to {report.wav_path} ({report.wav_seconds:.2f} s)")
    print(
        f"  caller side recorded to {report.caller_wav_path} "
        f"({report.caller_wav_seconds:.2f} s, DTMF {' '.join(report.caller_digits)})"
    )


if __name__ == "__main__":
    main()
