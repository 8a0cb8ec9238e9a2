"""The audio formats a bridge accepts, checked at attach before anything is sent.

A bridge carries encoded frames as bytes and needs no codec library, but the
format it announces must be one that :func:`clutchcall.audio.make_codec` can
encode and decode, so that a bad combination fails at ``attach`` instead of at
the first frame. :data:`AUDIO_FORMATS` mirrors ``make_codec`` exactly (the tests
compare the two over a grid of combinations); the table in
:mod:`clutchcall.audio.codecs` shows it.

``sample_rate=None`` means the codec's default: 48000 for opus and pcm16, 8000
(the only rate) for G.711.
"""

from __future__ import annotations

from dataclasses import dataclass

from clutchcall_api.models import AudioCodec

from ..errors import InvalidArgumentError

__all__ = ["AUDIO_FORMATS", "AudioFormatRule", "resolve_format"]

_PCM_FRAME_MS = (10, 20, 30, 40, 60)


@dataclass(frozen=True)
class AudioFormatRule:
    """What one codec accepts on a bridge."""

    sample_rates: tuple[int, ...]
    channels: tuple[int, ...]
    frame_ms: tuple[int, ...]
    #: The sample rate ``attach`` uses when given none.
    default_sample_rate: int


_G711 = AudioFormatRule(
    sample_rates=(8000,), channels=(1,), frame_ms=_PCM_FRAME_MS, default_sample_rate=8000
)

#: Codec name -> what it accepts.
AUDIO_FORMATS: dict[str, AudioFormatRule] = {
    AudioCodec.OPUS.value: AudioFormatRule(
        sample_rates=(48000,), channels=(1, 2), frame_ms=(10, 20, 40, 60), default_sample_rate=48000
    ),
    AudioCodec.PCM16.value: AudioFormatRule(
        sample_rates=(8000, 12000, 16000, 24000, 32000, 44100, 48000),
        channels=(1, 2),
        frame_ms=_PCM_FRAME_MS,
        default_sample_rate=48000,
    ),
    AudioCodec.G711_ULAW.value: _G711,
    AudioCodec.G711_ALAW.value: _G711,
}


def _check(codec: str, name: str, value: object, allowed: tuple[int, ...], unit: str) -> int:
    choices = ", ".join(str(a) for a in allowed)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"{name} must be an int; {codec} supports {choices}{unit}, got {value!r}"
        )
    if value not in allowed:
        raise InvalidArgumentError(
            f"{codec} does not support {name}={value} (supported: {choices}{unit})"
        )
    return value


def resolve_format(
    codec: AudioCodec | str, sample_rate: int | None, channels: int, frame_ms: int
) -> tuple[str, int, int, int]:
    """``(codec, sample_rate, channels, frame_ms)`` with the defaults filled in.

    Raises :class:`~clutchcall.InvalidArgumentError` naming the valid choices for
    a combination the codec does not support.
    """
    try:
        name = AudioCodec(codec).value
    except ValueError:
        names = ", ".join(c.value for c in AudioCodec)
        raise InvalidArgumentError(f"codec must be one of {names}, got {codec!r}") from None
    rule = AUDIO_FORMATS[name]
    rate = rule.default_sample_rate if sample_rate is None else sample_rate
    rate = _check(name, "sample_rate", rate, rule.sample_rates, " Hz")
    channels = _check(name, "channels", channels, rule.channels, "")
    frame_ms = _check(name, "frame_ms", frame_ms, rule.frame_ms, " ms")
    return name, rate, channels, frame_ms
