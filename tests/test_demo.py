"""`make demo` end to end: its calls complete and its recording is a playable WAV."""

from __future__ import annotations

from pathlib import Path

import pytest

from clutchcall import demo
from clutchcall.audio import detect_dtmf, read_wav
from clutchcall.dev.callees import PHRASE

pytestmark = pytest.mark.timeout(120)


def test_demo_runs_its_calls_and_records_both_sides(tmp_path: Path) -> None:
    report = demo.run(out_dir=tmp_path, time_scale=0.1)
    assert report.echo_frames == 100
    assert 0 < report.rtt_ms_p50 <= report.rtt_ms_p99
    assert report.uplink_frames_sent >= 2 * 80
    assert [name for name, _, _ in report.agents] == ["healthcare-assistant", "billing-bot"]
    assert all(utterances >= 1 and said > 0 for _, utterances, said in report.agents)
    wav = read_wav(report.wav_path)
    assert wav.sample_rate == 48000 and wav.channels == 1
    # The recording covers the downlink's media timeline, within one 20 ms frame.
    assert abs(report.wav_seconds - report.downlink_span_seconds) <= 0.02 + 1e-9
    assert report.wav_seconds == pytest.approx(len(wav.pcm) / 48000)
    # The caller side: what the simulated callee said, decoded from uplink.
    assert report.caller_wav_path == tmp_path / "caller-side.wav"
    caller = read_wav(report.caller_wav_path)
    assert caller.sample_rate == 16000 and caller.channels == 1
    assert 2.0 <= report.caller_wav_seconds <= demo.CALLER_SECONDS + 0.5
    digits = report.caller_digits
    assert len(digits) >= 2 * len(PHRASE) and digits in PHRASE * 4, digits
    assert report.caller_digits == detect_dtmf(caller.pcm, 16000)
