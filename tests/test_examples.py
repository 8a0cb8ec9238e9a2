"""The scripts in examples/ run to completion and do what their output says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clutchcall.audio import read_wav

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.timeout(120)


def run_example(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_sync_example_records_the_agent(tmp_path: Path) -> None:
    out = run_example("sync_call.py", cwd=tmp_path)
    assert "answered; the agent is billing-bot" in out and "call completed" in out
    wav = read_wav(tmp_path / "out" / "sync-agent.wav")
    assert len(wav.pcm) > 48000 // 2  # the agent said at least half a second


@pytest.mark.parametrize(
    ("script", "args"), [("async_call.py", ()), ("async_call.py", ("trio",)), ("trio_call.py", ())]
)
def test_async_examples_hear_the_echo(tmp_path: Path, script: str, args: tuple[str, ...]) -> None:
    out = run_example(script, *args, cwd=tmp_path)
    assert "heard our own voice back: 40 frames" in out
    assert out.rstrip().endswith("completed")


@pytest.mark.parametrize("script", ["speech_bot.py", "async_speech_bot.py", "trio_speech_bot.py"])
def test_speech_bots_answer_the_caller(tmp_path: Path, script: str) -> None:
    out = run_example(script, cwd=tmp_path)
    heard = re.search(r"bot: heard (\d+\.\d) s of speech; answering", out)
    assert heard is not None, out
    assert float(heard.group(1)) >= 1.0  # the caller's ~1.1 s of "speech", as one utterance
    assert "caller: the bot answered" in out
    decoded = re.search(r"bot: (\d+) frames decoded, (\d+) skipped", out)
    assert decoded is not None and int(decoded.group(1)) >= 50, out
    assert out.rstrip().endswith("completed")
