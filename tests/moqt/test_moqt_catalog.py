"""MSF catalogs of the voice tracks: encoding, strict decoding, formats, namespaces."""

from __future__ import annotations

import itertools
import json

import pytest

from clutchcall import moqt
from clutchcall.audio import UnsupportedFormatError, make_codec
from clutchcall.moqt import AudioFormat, CatalogError, decode_catalog, encode_catalog

FOUR = [
    AudioFormat("opus", 48000, 1, 20),
    AudioFormat("pcm16", 16000, 1, 20),
    AudioFormat("g711_ulaw", 8000, 1, 20),
    AudioFormat("g711_alaw", 8000, 1, 10),
]


@pytest.mark.parametrize("fmt", FOUR, ids=str)
def test_a_side_catalog_round_trips_with_msf_field_names(fmt: AudioFormat) -> None:
    payload = encode_catalog(moqt.side_catalog("CA1", "uplink", fmt))
    document = json.loads(payload)
    assert document["version"] == "draft-01"
    (track,) = document["tracks"]
    assert track["name"] == "uplink" and track["namespace"] == "voice/CA1"
    assert track["packaging"] == "loc" and track["isLive"] is True and track["role"] == "audio"
    assert track["codec"] == {"opus": "opus", "pcm16": "pcm-s16"}.get(
        fmt.codec, fmt.codec.removeprefix("g711_")
    )
    assert track["samplerate"] == fmt.sample_rate
    assert track["channelConfig"] == str(fmt.channels)
    assert track["maxGroupDuration"] == fmt.frame_ms
    assert track["bitrate"] > 0
    assert decode_catalog(payload).format_of("uplink") == fmt


def test_the_merged_catalog_lists_each_declared_track() -> None:
    catalog = moqt.call_catalog("CA9", {moqt.UPLINK: FOUR[0], moqt.DOWNLINK: FOUR[1]})
    decoded = decode_catalog(encode_catalog(catalog))
    assert decoded.format_of("uplink") == FOUR[0]
    assert decoded.format_of("downlink") == FOUR[1]
    assert decode_catalog(encode_catalog(moqt.call_catalog("CA9", {}))).tracks == ()


def test_a_catalog_of_another_publisher_reads_with_defaults_and_unknown_fields() -> None:
    """draft-00's numeric version, fields it does not know, no maxGroupDuration
    (20 ms is assumed) and tracks of other kinds are all fine."""
    document = {
        "version": 1,
        "generatedAt": 1746104606044,
        "tracks": [
            {"name": "video", "packaging": "loc", "isLive": True, "role": "video",
             "codec": "av01.0.08M.10.0.110.09", "width": 1920, "height": 1080},
            {"name": "uplink", "packaging": "loc", "isLive": True, "role": "audio",
             "codec": "opus", "samplerate": 48000, "channelConfig": "2", "lang": "en"},
        ],
    }  # fmt: skip
    catalog = decode_catalog(json.dumps(document).encode())
    assert catalog.format_of("uplink") == AudioFormat("opus", 48000, 2, 20)
    video = catalog.track("video")
    assert video is not None and video.format is None
    assert catalog.format_of("downlink") is None


HOSTILE = {
    "not json": b"{nope",
    "not utf-8": b'{"version": "draft-01", "tracks": []}\xff',
    "not an object": b"[1, 2]",
    "no version": b'{"tracks": []}',
    "unknown version": b'{"version": 2, "tracks": []}',
    "bool version": b'{"version": true, "tracks": []}',
    "no tracks": b'{"version": "draft-01"}',
    "tracks not a list": b'{"version": "draft-01", "tracks": {}}',
    "track not an object": b'{"version": "draft-01", "tracks": [7]}',
    "nameless track": b'{"version": "draft-01", "tracks": [{"packaging": "loc"}]}',
    "empty name": b'{"version": "draft-01", "tracks": [{"name": "", "packaging": "loc"}]}',
    "name not a string": b'{"version": "draft-01", "tracks": [{"name": 1, "packaging": "loc"}]}',
    "no packaging": b'{"version": "draft-01", "tracks": [{"name": "uplink"}]}',
    "isLive not bool": (
        b'{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc", "isLive": 1}]}'
    ),
    "samplerate a string": (
        b'{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc",'
        b' "samplerate": "48000"}]}'
    ),
    "samplerate negative": (
        b'{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc", "samplerate": -1}]}'
    ),
    "samplerate NaN": (
        b'{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc", "samplerate": NaN}]}'
    ),
    "samplerate bool": (
        b'{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc",'
        b' "samplerate": true}]}'
    ),
    "huge integer": (
        b'{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc", "bitrate": '
        + b"9" * 5000
        + b"}]}"
    ),
    "audio without samplerate": (
        b'{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc",'
        b' "role": "audio", "codec": "opus", "channelConfig": "1"}]}'
    ),
    "delta update": b'{"version": "draft-01", "deltaUpdate": [], "tracks": []}',
    "too many tracks": json.dumps(
        {"version": "draft-01", "tracks": [{"name": str(n), "packaging": "loc"} for n in range(17)]}
    ).encode(),
    "long string": json.dumps(
        {"version": "draft-01", "tracks": [{"name": "x" * 300, "packaging": "loc"}]}
    ).encode(),
    "too large": b'{"version": "draft-01", "tracks": [], "pad": "' + b"x" * 17000 + b'"}',
    "deep nesting": b"[" * 5000 + b"]" * 5000,
}


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_catalog_raises_catalog_error(payload: bytes) -> None:
    with pytest.raises(CatalogError):
        decode_catalog(payload)


def test_catalog_error_is_a_moqt_error_and_a_value_error() -> None:
    assert issubclass(CatalogError, moqt.MoqtError) and issubclass(CatalogError, ValueError)


def test_audio_format_accepts_exactly_what_make_codec_accepts() -> None:
    rates = (8000, 11025, 12000, 16000, 24000, 32000, 44100, 48000)
    for codec, rate, channels, frame_ms in itertools.product(
        ("opus", "pcm16", "g711_ulaw", "g711_alaw"), rates, (1, 2, 3), (10, 20, 25, 30, 40, 60)
    ):
        try:
            make_codec(codec, sample_rate=rate, channels=channels, frame_ms=frame_ms)
        except UnsupportedFormatError:
            codec_ok = False
        else:
            codec_ok = True
        try:
            AudioFormat(codec, rate, channels, frame_ms)
        except CatalogError:
            format_ok = False
        else:
            format_ok = True
        assert codec_ok == format_ok, (codec, rate, channels, frame_ms)
    with pytest.raises(CatalogError, match="codec must be one of"):
        AudioFormat("mp3")


def test_catalog_namespaces_name_the_call_and_the_side() -> None:
    assert moqt.catalog_namespace("CA1") == (b"voice", b"CA1")
    assert moqt.catalog_namespace("CA1", "uplink") == (b"voice", b"CA1", b"uplink")
    assert moqt.parse_catalog_namespace((b"voice", b"CA1")) == ("CA1", None)
    assert moqt.parse_catalog_namespace((b"voice", b"CA1", b"downlink")) == (
        "CA1",
        moqt.DOWNLINK,
    )
    for bad in [(b"voice",), (b"audio", b"CA1"), (b"voice", b""), (b"voice", b"CA1", b"x"),
                (b"voice", b"\xff"), (b"voice", b"CA1", b"uplink", b"more")]:  # fmt: skip
        assert moqt.parse_catalog_namespace(bad) is None, bad


def test_format_arithmetic() -> None:
    pcm = AudioFormat("pcm16", 16000, 2, 20)
    assert pcm.samples_per_frame == 320 and pcm.max_frame_bytes == 1280
    assert pcm.bitrate == 16000 * 2 * 16 and pcm.msf_codec == "pcm-s16"
    assert AudioFormat("g711_ulaw", 8000).max_frame_bytes == 160
    assert AudioFormat().max_frame_bytes > 1275 and str(AudioFormat()) == "opus 48000 Hz 1 ch 20 ms"
