"""The audio format on the wire: MSF catalogs for the voice tracks (sans-IO).

A bridge's ``codec`` / ``sample_rate`` / ``channels`` / ``frame_ms`` is a contract:
each side announces the format of the track it publishes in a MoQ Streaming
Format catalog (draft-ietf-moq-msf), so that any MoQT subscriber can decode the
call without out-of-band knowledge.

Where the catalogs live. Both sides of a call publish into the call's namespace
``("voice", <sid>)`` (the server ``downlink``, the caller ``uplink``), so a single
``catalog`` track there would have two publishers. Each side therefore publishes
its own catalog as the track ``catalog`` of a namespace only it announces:

- ``voice/<sid>/uplink/catalog``: the caller side's declaration of ``uplink``;
- ``voice/<sid>/downlink/catalog``: the server side's declaration of ``downlink``.

Each is a complete, independent MSF catalog whose one track names its namespace
(``"namespace": "voice/<sid>"``), so it reads the same through any relay. The
platform's relay, which sees both, also serves the call's merged catalog at
``voice/<sid>/catalog`` (both tracks, as published).

One catalog is one MoQT object (a JSON document in UTF-8), alone in its group;
a changed catalog starts a new group. Codec strings are those of the WebCodecs
codec registry, as MSF asks for LOC-packaged tracks:

==============  =====================  ==========================================
``AudioCodec``  MSF ``codec``          payload of one object
==============  =====================  ==========================================
``opus``        ``opus``               one Opus packet
``pcm16``       ``pcm-s16``            interleaved little-endian 16-bit samples
``g711_ulaw``   ``ulaw``               one G.711 mu-law byte per sample
``g711_alaw``   ``alaw``               one G.711 A-law byte per sample
==============  =====================  ==========================================

``samplerate`` and ``channelConfig`` (the channel count, as a string) carry the
rate and channels; ``maxGroupDuration`` (milliseconds) carries ``frame_ms``, since
every group holds exactly one frame.

:func:`decode_catalog` is strict: anything but a bounded, well-formed catalog
raises :class:`CatalogError`. Fields it does not know are ignored, as MSF asks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import MoqtError
from .messages import FilterType
from .session import Session
from .voice import (
    VOICE,
    SubscriberState,
    TrackPublisher,
    TrackSubscriber,
    VoiceTrack,
    voice_namespace,
    voice_track,
)
from .wire import Location, Namespace, Parameters

__all__ = [
    "CATALOG_PRIORITY",
    "CATALOG_TRACK",
    "CODEC_NAMES",
    "DEFAULT_FORMAT",
    "MAX_CATALOG_BYTES",
    "MAX_CATALOG_TRACKS",
    "MSF_VERSION",
    "AudioFormat",
    "Catalog",
    "CatalogError",
    "CatalogPublisher",
    "CatalogSubscriber",
    "CatalogTrack",
    "call_catalog",
    "catalog_namespace",
    "decode_catalog",
    "encode_catalog",
    "formats_of",
    "parse_catalog_namespace",
    "side_catalog",
]

#: The MSF catalog's track name.
CATALOG_TRACK = b"catalog"
#: The MSF version this package writes ("draft-XX" strings and draft-00's 1 are read).
MSF_VERSION = "draft-01"
#: A catalog object larger than this is refused unread.
MAX_CATALOG_BYTES = 16 * 1024
#: A catalog describing more tracks than this is refused.
MAX_CATALOG_TRACKS = 16
#: Strings in a catalog longer than this (in code points) are refused.
MAX_STRING = 256
#: Arrays and objects nested deeper than this are refused (a catalog's tracks are at 3).
MAX_DEPTH = 32

#: ``AudioCodec`` value -> MSF (WebCodecs registry) codec string.
CODEC_NAMES: Mapping[str, str] = {
    "opus": "opus",
    "pcm16": "pcm-s16",
    "g711_ulaw": "ulaw",
    "g711_alaw": "alaw",
}
_CODECS_BY_MSF = {msf: name for name, msf in CODEC_NAMES.items()}

#: What each codec supports (the table of :func:`clutchcall.audio.make_codec`).
_RATES: Mapping[str, tuple[int, ...]] = {
    "opus": (48000,),
    "pcm16": (8000, 12000, 16000, 24000, 32000, 44100, 48000),
    "g711_ulaw": (8000,),
    "g711_alaw": (8000,),
}
_CHANNELS: Mapping[str, tuple[int, ...]] = {
    "opus": (1, 2),
    "pcm16": (1, 2),
    "g711_ulaw": (1,),
    "g711_alaw": (1,),
}
_FRAME_MS: Mapping[str, tuple[int, ...]] = {
    "opus": (10, 20, 40, 60),
    "pcm16": (10, 20, 30, 40, 60),
    "g711_ulaw": (10, 20, 30, 40, 60),
    "g711_alaw": (10, 20, 30, 40, 60),
}


class CatalogError(MoqtError, ValueError):
    """A catalog (or an audio format) that is malformed, too large or unsupported."""


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """One audio track's format: what an audio bridge's ``attach`` arguments say.

    ``codec`` is an ``AudioCodec`` value (``"opus"``, ``"pcm16"``, ``"g711_ulaw"``,
    ``"g711_alaw"``). Construction checks the combination against what the codecs
    support (the table of :func:`clutchcall.audio.make_codec`) and raises
    :class:`CatalogError` otherwise.
    """

    codec: str = "opus"
    sample_rate: int = 48000
    channels: int = 1
    frame_ms: int = 20

    def __post_init__(self) -> None:
        codec = getattr(self.codec, "value", self.codec)  # an AudioCodec member
        if not isinstance(codec, str) or codec not in CODEC_NAMES:
            names = ", ".join(CODEC_NAMES)
            raise CatalogError(f"codec must be one of {names}, got {self.codec!r}")
        object.__setattr__(self, "codec", codec)
        for name, value, allowed in (
            ("sample_rate", self.sample_rate, _RATES[codec]),
            ("channels", self.channels, _CHANNELS[codec]),
            ("frame_ms", self.frame_ms, _FRAME_MS[codec]),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                choices = ", ".join(str(a) for a in allowed)
                raise CatalogError(f"{codec} {name} must be one of {choices}, got {value!r}")

    @property
    def msf_codec(self) -> str:
        """The codec string in an MSF catalog (WebCodecs registry)."""
        return CODEC_NAMES[self.codec]

    @property
    def samples_per_frame(self) -> int:
        """Samples per channel in one frame."""
        return self.sample_rate * self.frame_ms // 1000

    @property
    def bitrate(self) -> int:
        """Bits per second: nominal for Opus (32 kbit/s per channel), exact otherwise."""
        if self.codec == "opus":
            return 32000 * self.channels
        bits = 16 if self.codec == "pcm16" else 8
        return self.sample_rate * self.channels * bits

    @property
    def max_frame_bytes(self) -> int:
        """The largest one encoded frame may be (exact for PCM and G.711)."""
        if self.codec == "opus":
            # RFC 6716: at most 1275 bytes per 20 ms, three frames in a 60 ms packet.
            return 1275 * 3 * self.channels + 7
        bits = 16 if self.codec == "pcm16" else 8
        return self.samples_per_frame * self.channels * bits // 8

    def __str__(self) -> str:
        return f"{self.codec} {self.sample_rate} Hz {self.channels} ch {self.frame_ms} ms"


#: The format of the SDK's defaults (``attach()`` without arguments, the browser module).
DEFAULT_FORMAT = AudioFormat()


@dataclass(frozen=True, slots=True)
class CatalogTrack:
    """One track entry of a catalog (the fields this package uses)."""

    name: str
    #: The track's namespace as written (``"voice/<sid>"``); None: the catalog's own.
    namespace: str | None = None
    packaging: str = "loc"
    is_live: bool = True
    role: str | None = None
    #: The MSF codec string (``"opus"``, ``"pcm-s16"``, ``"ulaw"``, ``"alaw"``...).
    codec: str | None = None
    samplerate: int | None = None
    channel_config: str | None = None
    bitrate: int | None = None
    max_group_duration: int | None = None

    @classmethod
    def audio(cls, name: str, fmt: AudioFormat, *, namespace: str | None = None) -> CatalogTrack:
        """The entry of a LOC audio track in ``fmt``."""
        return cls(
            name=name,
            namespace=namespace,
            role="audio",
            codec=fmt.msf_codec,
            samplerate=fmt.sample_rate,
            channel_config=str(fmt.channels),
            bitrate=fmt.bitrate,
            max_group_duration=fmt.frame_ms,
        )

    @property
    def format(self) -> AudioFormat | None:
        """The :class:`AudioFormat` this entry describes; None if it is no audio
        track in a format the SDK speaks (another codec, no frame duration...)."""
        codec = _CODECS_BY_MSF.get(self.codec or "")
        if (
            codec is None
            or self.packaging != "loc"
            or self.samplerate is None
            or self.channel_config is None
            or not _ascii_digits(self.channel_config)
        ):
            return None
        frame_ms = self.max_group_duration if self.max_group_duration is not None else 20
        try:
            return AudioFormat(codec, self.samplerate, int(self.channel_config), frame_ms)
        except CatalogError:
            return None

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name}
        if self.namespace is not None:
            entry["namespace"] = self.namespace
        entry["packaging"] = self.packaging
        entry["isLive"] = self.is_live
        for key, value in (
            ("role", self.role),
            ("codec", self.codec),
            ("samplerate", self.samplerate),
            ("channelConfig", self.channel_config),
            ("bitrate", self.bitrate),
            ("maxGroupDuration", self.max_group_duration),
        ):
            if value is not None:
                entry[key] = value
        return entry


@dataclass(frozen=True, slots=True)
class Catalog:
    """An MSF catalog: the tracks a publisher (or a call) offers."""

    tracks: tuple[CatalogTrack, ...] = field(default_factory=tuple)
    version: str = MSF_VERSION

    def track(self, name: str, namespace: str | None = None) -> CatalogTrack | None:
        """The entry of track ``name`` (in ``namespace``, if given), or None."""
        for entry in self.tracks:
            if entry.name == name and (namespace is None or entry.namespace in (None, namespace)):
                return entry
        return None

    def format_of(self, track: VoiceTrack | str) -> AudioFormat | None:
        """The declared format of voice track ``track`` (None: not declared)."""
        entry = self.track(voice_track(track).value)
        return None if entry is None else entry.format


def _namespace_text(call_sid: str) -> str:
    return f"voice/{call_sid}"


def side_catalog(call_sid: str, track: VoiceTrack | str, fmt: AudioFormat) -> Catalog:
    """The catalog one side publishes for its track of ``call_sid``."""
    name = voice_track(track)
    return Catalog((CatalogTrack.audio(name.value, fmt, namespace=_namespace_text(call_sid)),))


def call_catalog(call_sid: str, formats: Mapping[VoiceTrack, AudioFormat]) -> Catalog:
    """A call's merged catalog: every track whose format is known."""
    namespace = _namespace_text(call_sid)
    return Catalog(
        tuple(
            CatalogTrack.audio(track.value, formats[track], namespace=namespace)
            for track in (VoiceTrack.UPLINK, VoiceTrack.DOWNLINK)
            if track in formats
        )
    )


def catalog_namespace(call_sid: str, track: VoiceTrack | str | None = None) -> Namespace:
    """Where a catalog of ``call_sid`` lives: the call's namespace (the merged
    catalog), or ``("voice", <sid>, <track>)`` (the catalog of one side's track)."""
    if track is None:
        return voice_namespace(call_sid)
    return (*voice_namespace(call_sid), voice_track(track).wire_name)


def parse_catalog_namespace(namespace: Namespace) -> tuple[str, VoiceTrack | None] | None:
    """``(call sid, track)`` of a catalog namespace (track None: the merged one), or
    None if ``namespace`` is no catalog namespace of a call."""
    if len(namespace) not in (2, 3) or namespace[0] != VOICE:
        return None
    try:
        sid = namespace[1].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not sid:
        return None
    if len(namespace) == 2:
        return sid, None
    try:
        return sid, voice_track(namespace[2])
    except ValueError:
        return None


def encode_catalog(catalog: Catalog) -> bytes:
    """The catalog as one object's payload (compact JSON, UTF-8)."""
    document = {
        "version": catalog.version,
        "tracks": [entry.to_json() for entry in catalog.tracks],
    }
    data = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError(f"the catalog is {len(data)} bytes, more than {MAX_CATALOG_BYTES}")
    return data


def _reject_constant(name: str) -> Any:
    raise CatalogError(f"{name} is not a JSON number")


def decode_catalog(data: bytes | bytearray | memoryview) -> Catalog:
    """Parse one catalog object; :class:`CatalogError` for anything malformed.

    Bounds: at most :data:`MAX_CATALOG_BYTES`, :data:`MAX_DEPTH` levels of nesting,
    :data:`MAX_CATALOG_TRACKS` tracks and :data:`MAX_STRING` characters per string.
    Delta updates (``deltaUpdate``) are refused: the voice tracks publish independent
    catalogs only.
    """
    raw = bytes(data)
    if len(raw) > MAX_CATALOG_BYTES:
        raise CatalogError(f"a catalog of {len(raw)} bytes is larger than {MAX_CATALOG_BYTES}")
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except CatalogError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CatalogError(f"the catalog is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CatalogError("a catalog must be a JSON object")
    _check_depth(document)
    version = document.get("version")
    if version == 1 and not isinstance(version, bool):
        version = "draft-00"
    if (
        not isinstance(version, str)
        or not version.startswith("draft-")
        or not _ascii_digits(version[6:])
        or len(version) > 12
    ):
        raise CatalogError(f"unsupported catalog version {version!r}")
    if "deltaUpdate" in document:
        raise CatalogError("delta updates are not supported; publish whole catalogs")
    tracks = document.get("tracks")
    if not isinstance(tracks, list):
        raise CatalogError("a catalog needs a 'tracks' array")
    if len(tracks) > MAX_CATALOG_TRACKS:
        raise CatalogError(f"a catalog of {len(tracks)} tracks has more than {MAX_CATALOG_TRACKS}")
    return Catalog(tuple(_decode_track(entry) for entry in tracks), version=version)


def _ascii_digits(text: str) -> bool:
    """Only 0-9 (``str.isdigit`` also takes other scripts' digits and superscripts)."""
    return text.isascii() and text.isdigit()


def _check_depth(document: object) -> None:
    """Refuse arrays and objects nested deeper than :data:`MAX_DEPTH` (the browser
    module's decoder has the same bound, so both refuse the same catalogs)."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise CatalogError(f"arrays and objects nest deeper than {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in children)


def _decode_track(entry: object) -> CatalogTrack:
    if not isinstance(entry, dict):
        raise CatalogError("each catalog track must be a JSON object")
    name = _string(entry, "name", required=True)
    assert name is not None
    if not name:
        raise CatalogError("a track name must not be empty")
    packaging = _string(entry, "packaging", required=True)
    assert packaging is not None
    is_live = entry.get("isLive", False)
    if not isinstance(is_live, bool):
        raise CatalogError(f"isLive of {name!r} must be true or false")
    track = CatalogTrack(
        name=name,
        namespace=_string(entry, "namespace"),
        packaging=packaging,
        is_live=is_live,
        role=_string(entry, "role"),
        codec=_string(entry, "codec"),
        samplerate=_integer(entry, "samplerate", 1, 1_000_000),
        channel_config=_string(entry, "channelConfig"),
        bitrate=_integer(entry, "bitrate", 0, 10**10),
        max_group_duration=_integer(entry, "maxGroupDuration", 1, 3_600_000),
    )
    # MSF: an audio track with a codec MUST carry its sample rate and channels.
    if (
        track.role == "audio"
        and track.packaging == "loc"
        and track.codec is not None
        and (track.samplerate is None or track.channel_config is None)
    ):
        raise CatalogError(f"audio track {name!r} needs samplerate and channelConfig")
    return track


def _string(entry: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise CatalogError(f"a catalog track needs {key!r}")
        return None
    if not isinstance(value, str):
        raise CatalogError(f"{key!r} must be a string, got {type(value).__name__}")
    if len(value) > MAX_STRING:
        raise CatalogError(f"{key!r} is longer than {MAX_STRING} characters")
    return value


def _integer(entry: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CatalogError(f"{key!r} must be an integer in {low}..{high}, got {value!r}")
    return value


def formats_of(catalog: Catalog, tracks: Iterable[VoiceTrack]) -> dict[VoiceTrack, AudioFormat]:
    """The declared formats of ``tracks`` in ``catalog`` (those it declares)."""
    found = {}
    for track in tracks:
        fmt = catalog.format_of(track)
        if fmt is not None:
            found[track] = fmt
    return found


#: Catalog objects go out ahead of the audio they describe (MSF: the catalog
#: track has a higher publisher priority; lower values are more urgent).
CATALOG_PRIORITY = 0


class CatalogPublisher(TrackPublisher):
    """Serves one catalog track to every subscriber of a session.

    Feed it every event; :meth:`handle` returns True for the events it consumed.
    :meth:`send` puts one catalog version (one object, alone in its group) on the
    streams of the given subscriptions.
    """

    def __init__(self, session: Session, namespace: Namespace) -> None:
        super().__init__(session, namespace, CATALOG_TRACK)

    def send(self, payload: bytes, group_id: int, request_ids: Iterable[int]) -> list[int]:
        """Send one catalog version to ``request_ids``; returns those that got it."""
        sent = []
        for request_id in request_ids:
            if request_id not in self.subscriptions:
                continue
            key = self.session.send_object(
                request_id, group_id, payload, publisher_priority=CATALOG_PRIORITY
            )
            if key is not None:
                sent.append(request_id)
        return sent


class CatalogSubscriber(TrackSubscriber):
    """Receives one catalog track; :meth:`handle` picks out its objects."""

    def __init__(self, session: Session, namespace: Namespace) -> None:
        super().__init__(session, namespace, CATALOG_TRACK)

    def start(self, parameters: Parameters = ()) -> int:
        """SUBSCRIBE from group 0 on (AbsoluteStart), so that a relay that holds the
        current version (moq-rs caches it) sends it too, not only later ones."""
        self.request_id = self.session.subscribe(
            self.namespace,
            CATALOG_TRACK,
            subscriber_priority=0,
            filter_type=FilterType.ABSOLUTE_START,
            start=Location(0, 0),
            parameters=parameters,
        )
        self.state = SubscriberState.PENDING
        return self.request_id
