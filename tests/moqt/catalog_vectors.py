"""The MSF catalog sections of ``wire_vectors.json``, generated from the Python code.

The inputs are listed here (formats to encode, payloads to decode, payloads to
refuse); every expected output in the file (the exact catalog text, the stream
bytes, what a payload decodes to) is what :mod:`clutchcall.moqt.catalog` makes of
them, and each payload listed as bad is checked to raise ``CatalogError``. The
browser module (``tests/web/catalog.test.mjs``) is tested against the same file.

After changing an input or the catalog code::

    .venv/bin/python tests/moqt/catalog_vectors.py          # rewrite the sections
    .venv/bin/python tests/moqt/catalog_vectors.py --check  # exit 1 if out of date

``tests/moqt/test_moqt_vectors.py`` runs the check too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from clutchcall import moqt
from clutchcall.moqt.catalog import CATALOG_PRIORITY
from clutchcall.moqt.data import SubgroupHeader, encode_subgroup_object

VECTORS_FILE = Path(__file__).parent / "wire_vectors.json"
SECTIONS = ("catalogs", "catalog_streams", "catalog_decodes", "bad_catalogs")

SID = "CA0123456789abcdef0123456789abcdef"

#: A payload is a list of parts joined: text (UTF-8), bytes, or repeat(text, times).
Part = str | bytes | dict[str, Any]


def repeat(text: str, times: int) -> dict[str, Any]:
    return {"repeat": text, "times": times}


def doc(value: object) -> str:
    """A JSON document as Python's json module writes it (with spaces)."""
    return json.dumps(value)


def catalog_of(*tracks: dict[str, Any], version: object = "draft-01") -> str:
    return doc({"version": version, "tracks": list(tracks)})


def track(name: str = "a", **fields: object) -> dict[str, Any]:
    return {"name": name, "packaging": "loc", **fields}


def audio(name: str, codec: str, rate: int, channels: str, **fields: object) -> dict[str, Any]:
    return track(name, codec=codec, samplerate=rate, channelConfig=channels, **fields)


# -- inputs ----------------------------------------------------------------------------

#: (why, call sid, track, format): a side's catalog, encoded.
FORMATS: list[tuple[str, str, str, moqt.AudioFormat]] = [
    ("the browser's default: opus 48 kHz mono 20 ms", SID, "uplink", moqt.AudioFormat()),
    ("opus stereo 60 ms", SID, "uplink", moqt.AudioFormat("opus", 48000, 2, 60)),
    ("pcm16 16 kHz", SID, "uplink", moqt.AudioFormat("pcm16", 16000)),
    (
        "pcm16 44.1 kHz stereo 30 ms, downlink",
        SID,
        "downlink",
        moqt.AudioFormat("pcm16", 44100, 2, 30),
    ),
    ("g711 mu-law 30 ms, downlink", SID, "downlink", moqt.AudioFormat("g711_ulaw", 8000, 1, 30)),
    ("g711 A-law 10 ms", SID, "uplink", moqt.AudioFormat("g711_alaw", 8000, 1, 10)),
    (
        "a sid with characters JSON escapes",
        'CAé😀\u2028\x7f"\\\n\x01/',
        "uplink",
        moqt.AudioFormat(),
    ),
]

#: (why, call sid, track, track alias, [(group, format)]): catalog versions on streams.
STREAMS: list[tuple[str, str, str, int, list[tuple[int, moqt.AudioFormat]]]] = [
    (
        "the first version (group 1), then a new one (group 2)",
        SID,
        "uplink",
        0,
        [(1, moqt.AudioFormat()), (2, moqt.AudioFormat("pcm16", 16000))],
    ),
]

_SIXTEEN = [track(str(n)) for n in range(16)]

#: (why, payload): catalogs that decode; the file holds what they decode to.
DECODES: list[tuple[str, list[Part]]] = [
    (
        "draft-00's version 1, unknown fields, other kinds of tracks, no maxGroupDuration",
        [
            doc(
                {
                    "version": 1,
                    "generatedAt": 1746104606044,
                    "tracks": [
                        track(
                            "video",
                            isLive=True,
                            role="video",
                            codec="av01.0.08M.10.0.110.09",
                            width=1920,
                            height=1080,
                        ),
                        track(
                            "uplink",
                            isLive=True,
                            role="audio",
                            codec="opus",
                            samplerate=48000,
                            channelConfig="2",
                            lang="en",
                        ),
                    ],
                }
            )
        ],
    ),
    (
        "integral floats are integers",
        [
            '{"version": "draft-01", "tracks": [{"name": "uplink", "packaging": "loc", '
            '"role": "audio", "codec": "pcm-s16", "samplerate": 16000.0, "channelConfig": "1", '
            '"bitrate": 2.56e5, "maxGroupDuration": 2E1}]}'
        ],
    ),
    (
        "nulls are absent fields; no isLive is false",
        [
            catalog_of(
                {
                    "name": "uplink",
                    "namespace": None,
                    "packaging": "loc",
                    "role": None,
                    "codec": None,
                    "samplerate": None,
                    "channelConfig": None,
                    "bitrate": None,
                    "maxGroupDuration": None,
                }
            )
        ],
    ),
    (
        "prototype keys are plain data",
        [
            doc(
                {
                    "version": "draft-01",
                    "__proto__": {"deltaUpdate": True},
                    "tracks": [track("uplink", __proto__={"isLive": "yes"}, constructor=1)],
                }
            )
        ],
    ),
    (
        "codec strings that are no codec of the SDK describe no format",
        [
            catalog_of(
                audio("a", "constructor", 48000, "1"),
                audio("b", "__proto__", 48000, "1"),
                audio("c", "Opus", 48000, "1"),
                {**audio("d", "opus", 48000, "1"), "packaging": "cmaf"},
                audio("e", "pcm16", 48000, "1"),  # the SDK's name, not the MSF one
            )
        ],
    ),
    (
        "formats the SDK cannot speak describe none",
        [
            catalog_of(
                audio("a", "opus", 44100, "1"),
                audio("b", "opus", 48000, "3"),
                audio("c", "opus", 48000, "1", maxGroupDuration=25),
                audio("d", "ulaw", 8000, "mono"),
                audio("e", "ulaw", 8000, ""),
                audio("f", "ulaw", 8000, "-1"),
                audio("g", "ulaw", 8000, "99999999999999999999"),
                track("h", codec="opus", channelConfig="1"),
                audio("i", "ulaw", 8000, "1.0"),
                audio("j", "ulaw", 8000, " 1"),
            )
        ],
    ),
    ("a zero-padded channel count", [catalog_of(audio("uplink", "alaw", 8000, "001"))]),
    (
        "channel counts in other scripts' digits describe no format",
        [
            catalog_of(
                audio("a", "opus", 48000, "\u00b2"),  # superscript two
                audio("b", "opus", 48000, "\u0661"),  # Arabic-Indic one
                audio("c", "opus", 48000, "\uff11"),  # fullwidth one
            )
        ],
    ),
    (
        "the last of duplicate keys wins",
        [
            '{"version": "draft-00", "version": "draft-02", '
            '"tracks": [{"name": "x", "name": "uplink", "packaging": "loc"}]}'
        ],
    ),
    (
        "JSON whitespace and escapes",
        [
            ' \t\r\n{ "version" : "draft-\\u0030\\u0031" , "tracks" : [ { "name" : '
            '"\\u00e9\\ud83d\\ude00\\n" , "packaging" : "loc" } ] } \n'
        ],
    ),
    (
        "raw UTF-8 in strings",
        [
            '{"version": "draft-01", "tracks": [{"name": "café 😀", "packaging": "loc", '
            '"role": "audio"}]}'
        ],
    ),
    (
        "names of 256 characters, counted as code points",
        [
            '{"version": "draft-01", "tracks": [{"name": "',
            repeat("😀", 256),
            '", "packaging": "loc"}, {"name": "',
            repeat("\\ud83d\\ude00", 256),
            '", "packaging": "loc"}, {"name": "',
            repeat("x", 256),
            '", "packaging": "loc"}]}',
        ],
    ),
    (
        "the bounds of the integers",
        [
            catalog_of(
                track("a", samplerate=1, bitrate=0, maxGroupDuration=1),
                track("b", samplerate=1_000_000, bitrate=10**10, maxGroupDuration=3_600_000),
            )
        ],
    ),
    ("sixteen tracks", [catalog_of(*_SIXTEEN)]),
    (
        "an object of exactly the size limit",
        ['{"version": "draft-01", "tracks": [], "pad": "', repeat("x", 16336), '"}'],
    ),
    ("a high version number", [catalog_of(version="draft-999999")]),
    (
        "nesting 32 deep in a field it does not know",
        [
            '{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc", "x": ',
            repeat("[", 29),
            repeat("]", 29),
            "}]}",
        ],
    ),
    (
        "brackets and escaped quotes inside strings are text",
        [
            '{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc", "x": "\\\\\\"',
            repeat("[{", 3000),
            '"}]}',
        ],
    ),
]

_START = '{"version": "draft-01", "tracks": [{"name": "'
_END = '", "packaging": "loc"}]}'
_IN_TRACK = '{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc", '

#: (why, payload): catalogs that ``decode_catalog`` must refuse.
BAD: list[tuple[str, list[Part]]] = [
    ("not json", ["{nope"]),
    ("empty", [""]),
    ("not utf-8", [catalog_of(), b"\xff"]),
    ("an encoded surrogate is not utf-8", [_START, b"\xed\xa0\x80", _END]),
    ("overlong utf-8", [_START, b"\xc0\xaf", _END]),
    ("a byte order mark", [b"\xef\xbb\xbf", catalog_of()]),
    ("trailing garbage", [catalog_of() + " x"]),
    ("two documents", [catalog_of() + catalog_of()]),
    ("a trailing comma", ['{"version": "draft-01", "tracks": [],}']),
    ("single quotes", ["{'version': 'draft-01', 'tracks': []}"]),
    ("a raw control character in a string", [_START + "a\tb" + _END]),
    ("null", [doc(None)]),
    ("not an object", [doc([1, 2])]),
    ("a string", [doc("draft-01")]),
    ("no version", [doc({"tracks": []})]),
    ("a null version", [catalog_of(version=None)]),
    ("unknown version", [catalog_of(version=2)]),
    ("version 1.5", [catalog_of(version=1.5)]),
    ("bool version", [catalog_of(version=True)]),
    ("version '1'", [catalog_of(version="1")]),
    ("version without a number", [catalog_of(version="draft-")]),
    ("version with letters", [catalog_of(version="draft-1x")]),
    ("version with digits of another script", [catalog_of(version="draft-\u0661")]),
    ("version in capitals", [catalog_of(version="Draft-01")]),
    ("version too long", [catalog_of(version="draft-0000001")]),
    ("no tracks", [doc({"version": "draft-01"})]),
    ("null tracks", [doc({"version": "draft-01", "tracks": None})]),
    ("tracks not a list", [doc({"version": "draft-01", "tracks": {}})]),
    ("tracks only under __proto__", [doc({"version": "draft-01", "__proto__": {"tracks": []}})]),
    ("delta update", [doc({"version": "draft-01", "deltaUpdate": [], "tracks": []})]),
    ("a null delta update", [doc({"version": "draft-01", "deltaUpdate": None, "tracks": []})]),
    ("track not an object", [catalog_of(7)]),  # type: ignore[arg-type]
    ("track a list", [catalog_of(["name", "a"])]),  # type: ignore[arg-type]
    ("track null", [catalog_of(None)]),  # type: ignore[arg-type]
    ("nameless track", [catalog_of({"packaging": "loc"})]),
    ("null name", [catalog_of({"name": None, "packaging": "loc"})]),
    ("empty name", [catalog_of(track(""))]),
    ("name not a string", [catalog_of({"name": 1, "packaging": "loc"})]),
    ("no packaging", [catalog_of({"name": "uplink"})]),
    ("packaging not a string", [catalog_of({"name": "uplink", "packaging": ["loc"]})]),
    ("isLive not bool", [catalog_of(track(isLive=1))]),
    ("isLive a string", [catalog_of(track(isLive="true"))]),
    ("isLive null", [catalog_of(track(isLive=None))]),
    ("namespace not a string", [catalog_of(track(namespace=["voice", "CA1"]))]),
    ("role not a string", [catalog_of(track(role={}))]),
    ("codec not a string", [catalog_of(track(codec=1))]),
    (
        "channelConfig a number",
        [catalog_of(track(role="audio", codec="opus", samplerate=48000, channelConfig=1))],
    ),
    ("samplerate a string", [catalog_of(track(samplerate="48000"))]),
    ("samplerate zero", [catalog_of(track(samplerate=0))]),
    ("samplerate negative", [catalog_of(track(samplerate=-1))]),
    ("samplerate too high", [catalog_of(track(samplerate=1_000_001))]),
    ("samplerate a fraction", [catalog_of(track(samplerate=48000.5))]),
    ("samplerate NaN", [catalog_of(track(samplerate=float("nan")))]),
    ("samplerate Infinity", [catalog_of(track(samplerate=float("inf")))]),
    ("samplerate -Infinity", [catalog_of(track(samplerate=float("-inf")))]),
    ("samplerate overflowing a double", [_IN_TRACK + '"samplerate": 1e400}]}']),
    ("samplerate bool", [catalog_of(track(samplerate=True))]),
    ("bitrate negative", [catalog_of(track(bitrate=-1))]),
    ("bitrate too high", [catalog_of(track(bitrate=10**10 + 1))]),
    ("maxGroupDuration zero", [catalog_of(track(maxGroupDuration=0))]),
    ("maxGroupDuration too long", [catalog_of(track(maxGroupDuration=3_600_001))]),
    ("huge integer", [_IN_TRACK + '"bitrate": ', repeat("9", 5000), "}]}"]),
    (
        "audio without samplerate",
        [catalog_of(track(role="audio", codec="opus", channelConfig="1"))],
    ),
    (
        "audio without channelConfig",
        [catalog_of(track(role="audio", codec="opus", samplerate=48000))],
    ),
    ("too many tracks", [catalog_of(*_SIXTEEN, track("16"))]),
    ("a string of 257 characters", [_START, repeat("x", 257), _END]),
    ("a string of 257 code points", [_START, repeat("\\ud83d\\ude00", 257), _END]),
    ("a long codec string", [_IN_TRACK + '"codec": "', repeat("o", 300), '"}]}']),
    (
        "one byte over the size limit",
        ['{"version": "draft-01", "tracks": [], "pad": "', repeat("x", 16337), '"}'],
    ),
    (
        "far too large",
        ['{"version": "draft-01", "tracks": [], "pad": "', repeat("x", 1 << 20), '"}'],
    ),
    (
        "nesting 33 deep in a field it does not know",
        [_IN_TRACK + '"x": ', repeat("[", 30), repeat("]", 30), "}]}"],
    ),
    ("deep nesting", [repeat("[", 5000), repeat("]", 5000)]),
    ("deep nesting in a track", [_IN_TRACK + '"x": ', repeat("[", 5000), repeat("]", 5000), "}]}"]),
]


# -- outputs ---------------------------------------------------------------------------


def payload_bytes(parts: list[Any]) -> bytes:
    """A payload as the file writes it (text, ``{"hex"}``, ``{"repeat", "times"}``), joined."""
    data = b""
    for part in parts:
        if isinstance(part, str):
            data += part.encode("utf-8")
        elif "hex" in part:
            data += bytes.fromhex(part["hex"])
        else:
            data += part["repeat"].encode("utf-8") * part["times"]
    return data


def _parts(parts: list[Part]) -> list[Any]:
    return [{"hex": part.hex()} if isinstance(part, bytes) else part for part in parts]


def format_fields(fmt: moqt.AudioFormat) -> dict[str, Any]:
    return {
        "codec": fmt.codec,
        "sample_rate": fmt.sample_rate,
        "channels": fmt.channels,
        "frame_ms": fmt.frame_ms,
    }


def track_fields(entry: moqt.CatalogTrack) -> dict[str, Any]:
    """A decoded track entry as the file writes it."""
    fmt = entry.format
    return {
        "name": entry.name,
        "namespace": entry.namespace,
        "packaging": entry.packaging,
        "isLive": entry.is_live,
        "role": entry.role,
        "codec": entry.codec,
        "samplerate": entry.samplerate,
        "channelConfig": entry.channel_config,
        "bitrate": entry.bitrate,
        "maxGroupDuration": entry.max_group_duration,
        "format": None if fmt is None else format_fields(fmt),
    }


def catalog_stream(track_alias: int, group_id: int, payload: bytes) -> bytes:
    """One catalog version on its subgroup stream (type 0x18, object 0, priority 0)."""
    header = SubgroupHeader(
        track_alias, group_id, CATALOG_PRIORITY, has_extensions=False, end_of_group=True
    )
    return header.encode() + encode_subgroup_object(0, payload, has_extensions=False)


def build() -> dict[str, list[dict[str, Any]]]:
    """The four catalog sections, computed from the inputs above."""
    catalogs = [
        {
            "why": why,
            "call_sid": sid,
            "track": side,
            "format": format_fields(fmt),
            "json": moqt.encode_catalog(moqt.side_catalog(sid, side, fmt)).decode("ascii"),
        }
        for why, sid, side, fmt in FORMATS
    ]
    streams = []
    for why, sid, side, alias, versions in STREAMS:
        written = []
        for group, fmt in versions:
            payload = moqt.encode_catalog(moqt.side_catalog(sid, side, fmt))
            written.append(
                {
                    "group_id": group,
                    "payload": payload.decode("ascii"),
                    "hex": catalog_stream(alias, group, payload).hex(),
                }
            )
        streams.append(
            {"why": why, "call_sid": sid, "track": side, "track_alias": alias, "versions": written}
        )
    decodes = []
    for why, parts in DECODES:
        catalog = moqt.decode_catalog(payload_bytes(_parts(parts)))
        decodes.append(
            {
                "why": why,
                "payload": _parts(parts),
                "version": catalog.version,
                "tracks": [track_fields(entry) for entry in catalog.tracks],
            }
        )
    bad = []
    for why, parts in BAD:
        try:
            moqt.decode_catalog(payload_bytes(_parts(parts)))
        except moqt.CatalogError:
            bad.append({"why": why, "payload": _parts(parts)})
        else:
            raise AssertionError(f"bad catalog vector {why!r} decodes")
    return {
        "catalogs": catalogs,
        "catalog_streams": streams,
        "catalog_decodes": decodes,
        "bad_catalogs": bad,
    }


def render(vectors: dict[str, Any]) -> str:
    """The vectors file's text (the layout it has always had)."""
    return json.dumps(vectors, indent=1)


def main(argv: list[str], path: Path = VECTORS_FILE) -> int:
    text = path.read_text(encoding="utf-8")
    vectors = json.loads(text)
    vectors.update(build())
    wanted = render(vectors)
    if "--check" in argv:
        if wanted != text:
            print(f"{path} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    path.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
