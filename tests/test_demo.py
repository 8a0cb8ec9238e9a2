"""`make demo` end to end: its calls complete and its recording is a playable WAV."""

from __future__ import annotations

from pathlib import Path

import pytest

from clutchcall import demo
from clutchcall.audio import read_wav

pytestmark = pytest.mark.timeout(120)


def test_demo_runs_both_calls_and_records_the_agent_side(tmp_path: Path) -> None:
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
