"""Audio for voice calls: codecs, a paced source, a jitter-buffered player, WAV files.

The Python counterparts of the browser helpers: :class:`AudioSource` plays the
role of ``captureMicrophone`` (PCM in, one encoded frame with its timestamp out
per frame period) and :class:`AudioPlayer` that of ``OpusPlayer`` (encoded
frames in, in any order, continuous PCM out, with silence where audio is
missing). See ``README.md`` next to this file for the policies.

Encode and decode single frames::

    from clutchcall.audio import make_codec

    codec = make_codec("opus", sample_rate=48000, channels=1, frame_ms=20)
    packet = codec.encode(pcm_960_samples)      # int16 array or bytes -> bytes
    pcm = codec.decode(packet)                  # -> int16 array, shape (960, 1)

Publish a WAV file (any rate, any channels) onto a bridge, paced in real time::

    source = AudioSource.from_wav("greeting.wav", codec="opus", frame_ms=20)
    await source.run(bridge.publish_downlink)            # or source.run_blocking(...)

Record what arrives into a WAV file::

    with AudioPlayer.to_wav("downlink.wav", codec="opus") as player:
        caller = v.audio_bridge.attach_caller(sid, codec="opus", on_downlink=player.on_frame)
        player.run_blocking(duration=10.0)   # or: await player.run() in a task group

Hear a bridge as PCM and talk into it with PCM (decoded, converted, paced)::

    pcm = AsyncPcmBridge(bridge)                         # PcmBridge(bridge) when blocking
    async for frame in pcm.uplink(sample_rate=16000):    # frame.samples: int16 (n, channels)
        ...
    await pcm.publish_downlink(tts_pcm, sample_rate=24000, flush=True)

It needs the ``audio`` extra (PyAV and numpy): ``pip install 'clutchcall[audio]'``;
without it, importing this package raises :class:`~clutchcall.errors.MissingExtraError`
(an ``ImportError``) saying so.
"""

from __future__ import annotations

from .._extras import raise_missing_extra

try:  # PyAV and numpy come with the 'audio' extra, not with the base install.
    import av  # noqa: F401
    import numpy  # noqa: F401
except ModuleNotFoundError as exc:
    raise_missing_extra(exc, feature="clutchcall.audio", extra="audio")

from ..moqt.voice import AudioFrame
from . import g711
from .codecs import (
    AudioCodecImpl,
    G711Codec,
    OpusApplication,
    OpusCodec,
    Pcm,
    Pcm16Codec,
    PcmLike,
    as_pcm,
    make_codec,
)
from .dtmf import DTMF_FREQUENCIES, detect_dtmf, synth_dtmf
from .errors import AudioError, DecodeError, FrameSizeError, UnsupportedFormatError, WavFormatError
from .jitter import JitterBuffer, JitterStats, Playout, PlayoutKind, PushOutcome
from .pcm_bridge import AsyncPcmBridge, AsyncPcmStream, PcmBridge, PcmFrame, PcmStream
from .player import AudioPlayer, PcmSink, PlayerStats
from .prompt import synth_chirp, synth_prompt, synth_silence, synth_tone
from .resample import Resampler
from .source import AudioSource, Publish, SourceStats
from .transcode import Transcoder
from .wav import Wav, WavWriter, iter_wav, read_wav, wav_params, write_wav

__all__ = [
    "DTMF_FREQUENCIES",
    "AsyncPcmBridge",
    "AsyncPcmStream",
    "AudioCodecImpl",
    "AudioError",
    "AudioFrame",
    "AudioPlayer",
    "AudioSource",
    "DecodeError",
    "FrameSizeError",
    "G711Codec",
    "JitterBuffer",
    "JitterStats",
    "OpusApplication",
    "OpusCodec",
    "Pcm",
    "Pcm16Codec",
    "PcmBridge",
    "PcmFrame",
    "PcmLike",
    "PcmSink",
    "PcmStream",
    "PlayerStats",
    "Playout",
    "PlayoutKind",
    "Publish",
    "PushOutcome",
    "Resampler",
    "SourceStats",
    "Transcoder",
    "UnsupportedFormatError",
    "Wav",
    "WavFormatError",
    "WavWriter",
    "as_pcm",
    "detect_dtmf",
    "g711",
    "iter_wav",
    "make_codec",
    "read_wav",
    "synth_chirp",
    "synth_dtmf",
    "synth_prompt",
    "synth_silence",
    "synth_tone",
    "wav_params",
    "write_wav",
]
