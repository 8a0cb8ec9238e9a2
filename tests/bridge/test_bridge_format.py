"""A bridge's audio format is checked at attach, before any request, without the
audio extra, and accepts exactly what clutchcall.audio.make_codec accepts."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

import pytest
from bridge_fixtures import hang_up_calls_afterwards  # noqa: F401
from bridge_helpers import answered_call, answered_call_sync

from clutchcall import AsyncVoice, InvalidArgumentError, Voice
from clutchcall.audio import UnsupportedFormatError, make_codec
from clutchcall.bridge import AUDIO_FORMATS
from clutchcall.bridge._format import resolve_format
from clutchcall.dev import Engine

pytestmark = pytest.mark.timeout(60)

CODECS = ("opus", "pcm16", "g711_ulaw", "g711_alaw", "mp3", "OPUS")
RATES: tuple[object, ...] = (
    None,
    0,
    -8000,
    8000,
    11025,
    12000,
    16000,
    22050,
    24000,
    32000,
    44100,
    48000,
    96000,
    True,
    48000.0,
    "48000",
)
CHANNELS: tuple[object, ...] = (0, 1, 2, 3, True, 1.0)
FRAME_MS: tuple[object, ...] = (0, 2, 5, 10, 20, 25, 30, 40, 60, 80, 120, 20.0, "20")

#: Formats the issue names as accepted at attach but refused by make_codec.
REFUSED = [
    {"codec": "opus", "sample_rate": 44100},
    {"codec": "g711_ulaw", "sample_rate": 48000},
    {"codec": "pcm16", "sample_rate": 11025},
    {"codec": "opus", "frame_ms": 25},
    {"codec": "g711_alaw", "channels": 2},
    {"codec": "pcm16", "channels": 3},
    {"codec": "opus", "frame_ms": 30},
    {"codec": "speex"},
    {"sample_rate": 0},
    {"frame_ms": 20.0},
]
SID = "CA" + "0" * 32


def bridge_accepts(
    codec: str, rate: object, channels: object, frame_ms: object
) -> tuple[str, int, int, int] | None:
    try:
        return resolve_format(codec, rate, channels, frame_ms)  # type: ignore[arg-type]
    except InvalidArgumentError:
        return None


def codec_accepts(codec: str, rate: object, channels: object, frame_ms: object) -> bool:
    try:
        make_codec(codec, sample_rate=rate, channels=channels, frame_ms=frame_ms)  # type: ignore[arg-type]
    except UnsupportedFormatError:
        return False
    return True


def test_attach_accepts_exactly_the_formats_make_codec_accepts() -> None:
    accepted = 0
    for codec, rate, channels, frame_ms in itertools.product(CODECS, RATES, CHANNELS, FRAME_MS):
        resolved = bridge_accepts(codec, rate, channels, frame_ms)
        if rate is None:  # the bridge's default rate for the codec, fed to make_codec
            if resolved is None:
                assert not any(
                    codec_accepts(codec, r, channels, frame_ms) for r in (8000, 48000)
                ), (codec, channels, frame_ms)
                continue
            rate = resolved[1]
        same = codec_accepts(codec, rate, channels, frame_ms)
        assert (resolved is not None) == same, (codec, rate, channels, frame_ms)
        accepted += resolved is not None
    assert accepted > 50  # the grid reaches the accepting side too


def test_the_published_table_is_what_attach_checks() -> None:
    for codec, rule in AUDIO_FORMATS.items():
        for rate, channels, frame_ms in itertools.product(
            rule.sample_rates, rule.channels, rule.frame_ms
        ):
            assert resolve_format(codec, rate, channels, frame_ms) == (
                codec,
                rate,
                channels,
                frame_ms,
            )
            assert codec_accepts(codec, rate, channels, frame_ms)
        assert resolve_format(codec, None, 1, 20)[1] == rule.default_sample_rate


def test_defaults_follow_each_codec() -> None:
    assert resolve_format("opus", None, 1, 20) == ("opus", 48000, 1, 20)
    assert resolve_format("pcm16", None, 1, 20) == ("pcm16", 48000, 1, 20)
    assert resolve_format("g711_ulaw", None, 1, 20) == ("g711_ulaw", 8000, 1, 20)
    assert resolve_format("g711_alaw", None, 1, 20) == ("g711_alaw", 8000, 1, 20)


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"codec": "opus", "sample_rate": 44100}, "supported: 48000 Hz"),
        ({"codec": "g711_ulaw", "sample_rate": 48000}, "supported: 8000 Hz"),
        (
            {"codec": "pcm16", "sample_rate": 11025},
            "supported: 8000, 12000, 16000, 24000, 32000, 44100, 48000 Hz",
        ),
        ({"codec": "opus", "frame_ms": 25}, "supported: 10, 20, 40, 60 ms"),
        ({"codec": "g711_alaw", "channels": 2}, "supported: 1)"),
        ({"codec": "speex"}, "g711_alaw, g711_ulaw, opus, pcm16"),
    ],
)
def test_the_error_names_the_valid_choices(options: dict[str, object], names: str) -> None:
    args = {"codec": "opus", "sample_rate": None, "channels": 1, "frame_ms": 20, **options}
    with pytest.raises(InvalidArgumentError) as caught:
        resolve_format(**args)  # type: ignore[arg-type]
    assert names in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("options", REFUSED)
async def test_async_attach_refuses_bad_formats_before_any_request(
    async_voice: AsyncVoice, engine: Engine, options: dict[str, object]
) -> None:
    for attach in (async_voice.audio_bridge.attach, async_voice.audio_bridge.attach_caller):
        with pytest.raises(InvalidArgumentError):
            await attach(SID, **options)  # type: ignore[arg-type]
    assert engine.requests() == []


@pytest.mark.parametrize("options", REFUSED)
def test_sync_attach_refuses_bad_formats_before_any_request_or_thread(
    engine: Engine, options: dict[str, object]
) -> None:
    with engine.voice() as voice:
        for attach in (voice.audio_bridge.attach, voice.audio_bridge.attach_caller):
            with pytest.raises(InvalidArgumentError):
                attach(SID, **options)  # type: ignore[arg-type]
        assert voice.audio_bridge._loop is None  # the bridge thread never started
    assert engine.requests() == []


@pytest.mark.anyio
async def test_g711_attaches_at_8000_hz_by_default(async_voice: AsyncVoice) -> None:
    sid = await answered_call(async_voice)
    async with await async_voice.audio_bridge.attach(sid, codec="g711_ulaw") as bridge:
        assert (bridge.codec, bridge.sample_rate, bridge.channels, bridge.frame_ms) == (
            "g711_ulaw",
            8000,
            1,
            20,
        )
    async with await async_voice.audio_bridge.attach_caller(
        sid, codec="pcm16", sample_rate=16000, channels=2, frame_ms=30
    ) as caller:
        assert (caller.codec, caller.sample_rate, caller.channels, caller.frame_ms) == (
            "pcm16",
            16000,
            2,
            30,
        )


def test_sync_g711_attaches_at_8000_hz_by_default(voice: Voice) -> None:
    sid = answered_call_sync(voice)
    with voice.audio_bridge.attach_caller(sid, codec="g711_alaw") as bridge:
        assert (bridge.codec, bridge.sample_rate) == ("g711_alaw", 8000)


# Run in a fresh interpreter: an import hook refuses av and numpy (as if the audio
# extra were not installed) and records every attempt to import them.
WITHOUT_AUDIO = """
import importlib.abc, json, sys

attempts = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("av", "numpy"):
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
"""


def test_attach_checks_formats_without_the_audio_extra() -> None:
    body = """
    from clutchcall import InvalidArgumentError, Voice
    from clutchcall.errors import MissingExtraError

    report = {}
    voice = Voice(api_key="k", org_id="org_a", base_url="http://127.0.0.1:1", max_retries=0)
    try:
        voice.audio_bridge.attach("CA" + "0" * 32, codec="opus", sample_rate=44100)
    except InvalidArgumentError as exc:
        report["attach"] = str(exc)
    voice.close()
    report["before"] = list(attempts)
    report["audio_loaded"] = "clutchcall.audio" in sys.modules
    try:
        from clutchcall.audio import AsyncPcmBridge, PcmBridge
    except MissingExtraError as exc:
        report["extra"] = exc.extra
        report["message"] = str(exc)
    print(json.dumps(report))
    """
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_AUDIO + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "supported: 48000 Hz" in report["attach"]
    assert report["before"] == [] and report["audio_loaded"] is False
    assert report["extra"] == "audio"
    assert "pip install 'clutchcall[audio]'" in report["message"]
