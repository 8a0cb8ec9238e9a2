"""The byte vectors in ``wire_vectors.json``, checked against the Python codec.

The browser module's codec (``clutchcall/web/wire.js``, ``catalog.js``) is checked
against the same file by ``tests/web/wire.test.mjs`` and ``tests/web/catalog.test.mjs``,
so the two implementations cannot drift apart. The MSF catalog sections are generated
from the Python code by ``catalog_vectors.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import catalog_vectors
import pytest
from moqt_helpers import established

from clutchcall import moqt
from clutchcall.moqt import messages as m
from clutchcall.moqt.data import (
    DataStreamParser,
    ObjectDatagram,
    SubgroupHeader,
    SubgroupIdMode,
    SubgroupObject,
    encode_subgroup_object,
)
from clutchcall.moqt.errors import MoqtProtocolError
from clutchcall.moqt.events import StreamWrite, SubscribeReceived
from clutchcall.moqt.session import authorization_token
from clutchcall.moqt.wire import Location, NeedMoreData, Parameters, Reader, encode_varint

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "wire_vectors.json").read_text(encoding="utf-8")
)
MESSAGE_CLASSES = {cls.NAME: cls for cls in m.MESSAGE_TYPES.values()}


def _parameters(pairs: list[list[Any]]) -> Parameters:
    return tuple(
        (int(kind), value if kind % 2 == 0 else bytes.fromhex(value)) for kind, value in pairs
    )


def _field(name: str, value: Any) -> Any:
    """A JSON field of a vector as the Python dataclass holds it."""
    if name in ("namespace", "namespace_prefix"):
        return tuple(part.encode() for part in value)
    if name in ("track_name", "new_session_uri"):
        return value.encode()
    if name == "parameters":
        return _parameters(value)
    if name == "versions":
        return tuple(value)
    if isinstance(value, dict) and set(value) == {"group", "object"}:
        return Location(value["group"], value["object"])
    return value


def _message(vector: dict[str, Any]) -> m.Message:
    cls = MESSAGE_CLASSES[vector["name"]]
    return cls(**{name: _field(name, value) for name, value in vector["fields"].items()})


def test_every_control_message_type_has_a_vector() -> None:
    assert {v["name"] for v in VECTORS["messages"]} == set(MESSAGE_CLASSES)


@pytest.mark.parametrize("vector", VECTORS["varints"], ids=lambda v: v["hex"])
def test_varint_vectors(vector: dict[str, Any]) -> None:
    value = int(vector["value"])
    assert encode_varint(value).hex() == vector["hex"]
    assert Reader(bytes.fromhex(vector["hex"])).read_varint() == value


@pytest.mark.parametrize("vector", VECTORS["non_minimal_varints"], ids=lambda v: v["hex"])
def test_non_minimal_varint_vectors(vector: dict[str, Any]) -> None:
    assert Reader(bytes.fromhex(vector["hex"])).read_varint() == vector["value"]


@pytest.mark.parametrize("vector", VECTORS["authorization_tokens"], ids=lambda v: v["token"])
def test_authorization_token_vectors(vector: dict[str, Any]) -> None:
    kind, value = authorization_token(vector["token"].encode())
    assert kind == vector["parameter_type"]
    assert isinstance(value, bytes)
    assert value.hex() == vector["value"]


@pytest.mark.parametrize(
    "vector", VECTORS["messages"], ids=lambda v: f"{v['name']}-{v['hex'][:16]}"
)
def test_message_vectors(vector: dict[str, Any]) -> None:
    message = _message(vector)
    assert vector["type"] == message.TYPE
    assert m.encode_message(message).hex() == vector["hex"]
    decoded = m.ControlStreamParser().feed(bytes.fromhex(vector["hex"]))
    assert decoded == [message]


@pytest.mark.parametrize("vector", VECTORS["bad_messages"], ids=lambda v: v["why"])
def test_bad_message_vectors(vector: dict[str, Any]) -> None:
    with pytest.raises(MoqtProtocolError):
        m.ControlStreamParser().feed(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", VECTORS["incomplete_messages"], ids=lambda v: v["why"])
def test_incomplete_message_vectors(vector: dict[str, Any]) -> None:
    parser = m.ControlStreamParser()
    assert parser.feed(bytes.fromhex(vector["hex"])) == []
    assert parser.buffered == len(vector["hex"]) // 2


@pytest.mark.parametrize("vector", VECTORS["subgroup_streams"], ids=lambda v: v["hex"][:24])
def test_subgroup_stream_vectors(vector: dict[str, Any]) -> None:
    h = vector["header"]
    header = SubgroupHeader(
        h["track_alias"],
        h["group_id"],
        h["publisher_priority"],
        h["subgroup_id"],
        SubgroupIdMode(h["stream_type"] & 0x06),
        h["has_extensions"],
        h["end_of_group"],
    )
    assert header.stream_type == h["stream_type"]
    data = header.encode()
    last: int | None = None
    expected: list[object] = [header]
    for o in vector["objects"]:
        payload = bytes.fromhex(o["payload"])
        extensions = _parameters(o["extensions"])
        delta = o["object_id"] if last is None else o["object_id"] - last - 1
        last = o["object_id"]
        data += encode_subgroup_object(
            delta,
            payload,
            status=o["status"],
            extensions=extensions,
            has_extensions=header.has_extensions,
        )
        expected.append(SubgroupObject(o["object_id"], payload, o["status"], extensions))
    assert data.hex() == vector["hex"]
    raw = bytes.fromhex(vector["hex"])
    # Whole, and one byte at a time: the parser must not depend on chunking.
    assert DataStreamParser().feed(raw, end=True) == expected
    parser = DataStreamParser()
    items = [item for i in range(len(raw)) for item in parser.feed(raw[i : i + 1])]
    assert items + parser.feed(b"", end=True) == expected


@pytest.mark.parametrize("vector", VECTORS["datagrams"], ids=lambda v: v["hex"][:24])
def test_datagram_vectors(vector: dict[str, Any]) -> None:
    datagram = ObjectDatagram(
        vector["track_alias"],
        vector["group_id"],
        vector["object_id"],
        vector["publisher_priority"],
        bytes.fromhex(vector["payload"]),
        vector["status"],
        _parameters(vector["extensions"]),
        vector["end_of_group"],
    )
    assert datagram.datagram_type == vector["datagram_type"]
    assert datagram.encode().hex() == vector["hex"]
    assert ObjectDatagram.decode(bytes.fromhex(vector["hex"])) == datagram


def test_a_truncated_vector_needs_more_data() -> None:
    raw = bytes.fromhex(VECTORS["varints"][-1]["hex"])
    with pytest.raises(NeedMoreData):
        Reader(raw[:-1]).read_varint()


def test_vector_fields_cover_every_dataclass_field() -> None:
    for vector in VECTORS["messages"]:
        cls = MESSAGE_CLASSES[vector["name"]]
        assert set(vector["fields"]) == {f.name for f in dataclasses.fields(cls)}


# --- MSF catalogs ------------------------------------------------------------------------


def test_catalog_sections_are_generated_from_the_python_code() -> None:
    """The file's catalog vectors are what ``catalog_vectors.py`` makes of its inputs
    with the current code: run it after changing either."""
    generated = catalog_vectors.build()
    for section in catalog_vectors.SECTIONS:
        assert VECTORS[section] == generated[section], (
            f"run tests/moqt/catalog_vectors.py ({section})"
        )


def _format(fields: dict[str, int | str]) -> moqt.AudioFormat:
    return moqt.AudioFormat(**fields)  # type: ignore[arg-type]


def _catalog_stream(namespace: moqt.Namespace, versions: list[tuple[int, bytes]]) -> list[bytes]:
    """What :class:`~clutchcall.moqt.CatalogPublisher` writes for each version, on a
    real session whose peer (the relay) subscribed to the catalog."""
    link = established()
    publisher, relay = link.client.session, link.server.session
    announce = publisher.publish_namespace(namespace)
    link.pump()
    relay.accept_publish_namespace(announce)
    relay.subscribe(namespace, moqt.CATALOG_TRACK, subscriber_priority=0)
    link.pump()
    catalog = moqt.CatalogPublisher(publisher, namespace)
    (request,) = [e for e in link.take(link.client) if isinstance(e, SubscribeReceived)]
    assert catalog.handle(request)
    link.pump()
    streams = []
    for group, payload in versions:
        assert catalog.send(payload, group, [request.request_id]) == [request.request_id]
        (write,) = publisher.stream_commands_to_send()
        assert isinstance(write, StreamWrite) and write.open and write.end
        streams.append(write.data)
    return streams


@pytest.mark.parametrize("vector", VECTORS["catalogs"], ids=lambda v: v["why"])
def test_catalog_vectors(vector: dict[str, Any]) -> None:
    """A side's catalog encodes to exactly these bytes (deterministic, ASCII-only)."""
    fmt = _format(vector["format"])
    payload = moqt.encode_catalog(moqt.side_catalog(vector["call_sid"], vector["track"], fmt))
    assert payload == vector["json"].encode("ascii")
    decoded = moqt.decode_catalog(payload)
    assert decoded.format_of(vector["track"]) == fmt
    assert len(decoded.tracks) == 1 and decoded.tracks[0].namespace == f"voice/{vector['call_sid']}"


def test_catalog_stream_vectors() -> None:
    """Each version is object 0, alone in its group, on a type 0x18 stream at priority 0,
    exactly as CatalogPublisher sends it on a session."""
    for vector in VECTORS["catalog_streams"]:
        namespace = moqt.catalog_namespace(vector["call_sid"], vector["track"])
        versions = [(v["group_id"], v["payload"].encode("ascii")) for v in vector["versions"]]
        streams = _catalog_stream(namespace, versions)
        assert [data.hex() for data in streams] == [v["hex"] for v in vector["versions"]]
        for version, data in zip(vector["versions"], streams, strict=True):
            items = DataStreamParser().feed(data, end=True)
            assert items == [
                SubgroupHeader(vector["track_alias"], version["group_id"], 0, end_of_group=True),
                SubgroupObject(0, version["payload"].encode("ascii"), 0, ()),
            ]


@pytest.mark.parametrize("vector", VECTORS["catalog_decodes"], ids=lambda v: v["why"])
def test_catalog_decode_vectors(vector: dict[str, Any]) -> None:
    catalog = moqt.decode_catalog(catalog_vectors.payload_bytes(vector["payload"]))
    assert catalog.version == vector["version"]
    assert [catalog_vectors.track_fields(t) for t in catalog.tracks] == vector["tracks"]


@pytest.mark.parametrize("vector", VECTORS["bad_catalogs"], ids=lambda v: v["why"])
def test_bad_catalog_vectors(vector: dict[str, Any]) -> None:
    with pytest.raises(moqt.CatalogError):
        moqt.decode_catalog(catalog_vectors.payload_bytes(vector["payload"]))


def test_catalog_vector_generator_check_mode(tmp_path: Path) -> None:
    """``--check`` passes on the committed file and fails on a stale copy."""
    assert catalog_vectors.main(["--check"]) == 0
    stale = json.loads(catalog_vectors.VECTORS_FILE.read_text(encoding="utf-8"))
    stale["catalogs"][0]["json"] = stale["catalogs"][0]["json"].replace("48000", "44100")
    copy = tmp_path / "wire_vectors.json"
    copy.write_text(catalog_vectors.render(stale), encoding="utf-8")
    assert catalog_vectors.main(["--check"], copy) == 1
    assert catalog_vectors.main([], copy) == 0
    assert catalog_vectors.main(["--check"], copy) == 0
    assert copy.read_text(encoding="utf-8") == catalog_vectors.VECTORS_FILE.read_text("utf-8")
