"""Every aioquic internal clutchcall relies on, checked one by one.

clutchcall/transport/_quic.py subclasses aioquic's ``QuicConnection`` and reads
and writes its private state; aioquic is pinned exactly for that (pyproject.toml
says why). When aioquic is upgraded, a failure here names the private module,
attribute or hook that changed and the pin it was checked against, instead of
the transport misbehaving somewhere downstream. The checks run on a real
(sans-IO) connection: no network.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import tomllib
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aioquic import tls
from aioquic.quic import connection as quic_connection
from aioquic.quic import packet, packet_builder, recovery
from aioquic.quic import stream as quic_stream
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.rangeset import RangeSet

from clutchcall.transport._quic import FlowControlledQuicConnection

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clutchcall"
INTERNALS_MODULE = PACKAGE / "transport" / "_quic.py"


def _pin() -> str:
    """The aioquic requirement pyproject.toml pins (``aioquic==1.7.2``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return str(next(dep for dep in project["dependencies"] if dep.startswith("aioquic")))


PIN = _pin()
INSTALLED = importlib.metadata.version("aioquic")


def changed(internal: str, detail: str) -> NoReturn:
    pytest.fail(
        f"aioquic internal {internal} changed: {detail}. "
        f"clutchcall/transport/_quic.py relies on it as of the pinned {PIN} "
        f"(installed: aioquic {INSTALLED}); adapt _quic.py before moving the pin "
        "(see pyproject.toml).",
        pytrace=False,
    )


def require(condition: bool, internal: str, detail: str) -> None:
    if not condition:
        changed(internal, detail)


def attribute(obj: object, name: str, kind: Kind, owner: str) -> Any:
    """``obj.name``, which must exist and be a ``kind``."""
    internal = f"{owner}.{name}"
    if not hasattr(obj, name):
        changed(internal, "the attribute is gone")
    value = getattr(obj, name)
    require(
        isinstance(value, kind),
        internal,
        f"expected {kind}, found {type(value).__name__} ({value!r})",
    )
    return value


def parameters(function: Callable[..., Any], expected: list[str], internal: str) -> None:
    names = list(inspect.signature(function).parameters)
    require(names == expected, internal, f"parameters are now {names}, expected {expected}")


def source_has(function: Callable[..., Any], snippet: str, internal: str, why: str) -> None:
    require(snippet in inspect.getsource(function), internal, f"no longer {why} ({snippet!r})")


def connected_client() -> FlowControlledQuicConnection:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["moq-00"])
    quic = FlowControlledQuicConnection(configuration=configuration)
    quic.connect(("127.0.0.1", 4433), now=0.0)
    return quic


QC = "QuicConnection"

Kind = type | tuple[type, ...]


# -- the checks, one per internal --------------------------------------------------------


def check_buffer_module() -> None:
    """``aioquic._buffer``: Buffer and BufferReadError (the varint codec)."""
    try:
        from aioquic import _buffer
    except ImportError:
        changed("aioquic._buffer", "the module is gone")
    buffer_class = attribute(_buffer, "Buffer", type, "aioquic._buffer")
    error_class = attribute(_buffer, "BufferReadError", type, "aioquic._buffer")
    buf = buffer_class(data=b"\x40\x05abcde")
    require(buf.pull_uint_var() == 5, "aioquic._buffer.Buffer.pull_uint_var", "bad result")
    require(buf.pull_bytes(5) == b"abcde", "aioquic._buffer.Buffer.pull_bytes", "bad result")
    require(buf.tell() == 7, "aioquic._buffer.Buffer.tell", "bad result")
    try:
        buf.pull_uint_var()
    except error_class:
        pass
    else:
        changed("aioquic._buffer.BufferReadError", "reading past the end no longer raises it")


def check_write_connection_limits() -> None:
    """The MAX_DATA hook, called while writing application packets, doubling
    the window on ``_local_max_data.used``."""
    hook = f"{QC}._write_connection_limits"
    parameters(
        quic_connection.QuicConnection._write_connection_limits, ["self", "builder", "space"], hook
    )
    source_has(
        quic_connection.QuicConnection._write_application,
        "self._write_connection_limits(",
        hook,
        "called from _write_application",
    )
    source_has(
        quic_connection.QuicConnection._write_connection_limits,
        "max_data.used * 2 > max_data.value",
        hook,
        "doubling MAX_DATA on _local_max_data.used",
    )
    limit = attribute(connected_client(), "_local_max_data", quic_connection.Limit, QC)
    attribute(limit, "used", int, f"{QC}._local_max_data")
    attribute(limit, "value", int, f"{QC}._local_max_data")


def check_write_stream_limits() -> None:
    """The MAX_STREAM_DATA hook, doubling on ``receiver.highest_offset``."""
    hook = f"{QC}._write_stream_limits"
    parameters(
        quic_connection.QuicConnection._write_stream_limits,
        ["self", "builder", "space", "stream"],
        hook,
    )
    source_has(
        quic_connection.QuicConnection._write_application,
        "self._write_stream_limits(",
        hook,
        "called from _write_application",
    )
    source_has(
        quic_connection.QuicConnection._write_stream_limits,
        "stream.receiver.highest_offset * 2 > stream.max_stream_data_local",
        hook,
        "doubling MAX_STREAM_DATA on receiver.highest_offset",
    )


def check_write_connection_close_frame() -> None:
    """The CONNECTION_CLOSE hook the closing ACK is written ahead of."""
    hook = f"{QC}._write_connection_close_frame"
    parameters(
        quic_connection.QuicConnection._write_connection_close_frame,
        ["self", "builder", "epoch", "error_code", "frame_type", "reason_phrase"],
        hook,
    )
    source_has(
        quic_connection.QuicConnection.datagrams_to_send,
        "self._write_connection_close_frame(",
        hook,
        "called from datagrams_to_send",
    )
    for name in ("ACK_FRAME_CAPACITY", "TRANSPORT_CLOSE_FRAME_CAPACITY"):
        attribute(quic_connection, name, int, "aioquic.quic.connection")
    parameters(
        packet.push_ack_frame,
        ["buf", "rangeset", "delay", "capacity"],
        "aioquic.quic.packet.push_ack_frame",
    )
    parameters(
        packet_builder.QuicPacketBuilder.start_frame,
        ["self", "frame_type", "capacity", "handler", "handler_args"],
        "QuicPacketBuilder.start_frame",
    )
    require(
        isinstance(
            inspect.getattr_static(packet_builder.QuicPacketBuilder, "remaining_buffer_space"),
            property,
        ),
        "QuicPacketBuilder.remaining_buffer_space",
        "no longer a property",
    )
    space = attribute(connected_client(), "_spaces", dict, QC).get(tls.Epoch.ONE_RTT)
    require(space is not None, f"{QC}._spaces", "no ONE_RTT packet space")
    attribute(space, "ack_queue", RangeSet, "QuicPacketSpace")
    attribute(space, "ack_at", (float, type(None)), "QuicPacketSpace")


def check_overridden_methods() -> None:
    """The public methods FlowControlledQuicConnection overrides keep their signature."""
    parameters(
        quic_connection.QuicConnection.receive_datagram,
        ["self", "data", "addr", "now"],
        f"{QC}.receive_datagram",
    )
    parameters(
        quic_connection.QuicConnection.reset_stream,
        ["self", "stream_id", "error_code"],
        f"{QC}.reset_stream",
    )


def check_connection_state() -> None:
    """Private attributes read for limits, datagrams, the close and the peer certificate."""
    quic = connected_client()
    streams_uni = attribute(quic, "_local_max_streams_uni", quic_connection.Limit, QC)
    attribute(streams_uni, "value", int, f"{QC}._local_max_streams_uni")
    attribute(quic, "_remote_max_streams_uni", int, QC)
    attribute(quic, "_remote_max_streams_bidi", int, QC)
    attribute(quic, "_streams", dict, QC)
    attribute(quic, "_datagrams_pending", Sized, QC)
    attribute(quic, "_remote_max_datagram_frame_size", (int, type(None)), QC)
    attribute(quic, "_max_datagram_size", int, QC)
    attribute(quic, "_state", quic_connection.QuicConnectionState, QC)
    require(
        hasattr(quic_connection.QuicConnectionState, "DRAINING"),
        "QuicConnectionState.DRAINING",
        "the state is gone",
    )
    attribute(quic, "tls", tls.Context, QC)
    require(
        hasattr(quic.tls, "_peer_certificate"),
        "tls.Context._peer_certificate",
        "the attribute is gone",
    )
    require(attribute(quic, "_close_pending", bool, QC) is False, f"{QC}._close_pending", "set")
    require(attribute(quic, "_close_event", type(None), QC) is None, f"{QC}._close_event", "set")
    quic.close(error_code=7, reason_phrase="bye")
    require(quic._close_pending is True, f"{QC}._close_pending", "close() no longer sets it")
    require(quic.close_info() == (7, "bye"), f"{QC}._close_event", "close() no longer records it")


def check_logger() -> None:
    """The per-connection logger adapter, replaced to drop DEBUG lines cheaply."""
    adapter = attribute(connected_client(), "_logger", quic_connection.QuicConnectionAdapter, QC)
    require(
        isinstance(adapter.extra, dict) and "id" in adapter.extra,
        f"{QC}._logger",
        "the adapter no longer carries the connection id",
    )


def check_stream_state() -> None:
    """QuicStream's sender and receiver state behind the send-buffer accounting."""
    quic = connected_client()
    stream_id = quic.get_next_available_stream_id()
    quic.send_stream_data(stream_id, b"x" * 100)
    stream = attribute(quic, "_streams", dict, QC).get(stream_id)
    require(stream is not None, f"{QC}._streams", "send_stream_data() no longer creates the stream")
    stream_fields: tuple[tuple[str, Kind], ...] = (
        ("stream_id", int),
        ("max_stream_data_local", int),
        ("is_blocked", bool),
    )
    for name, kind in stream_fields:
        attribute(stream, name, kind, "QuicStream")
    receiver = attribute(stream, "receiver", object, "QuicStream")
    attribute(receiver, "highest_offset", int, "QuicStreamReceiver")
    attribute(receiver, "is_finished", bool, "QuicStreamReceiver")
    sender = attribute(stream, "sender", object, "QuicStream")
    sender_fields: tuple[tuple[str, Kind], ...] = (
        ("is_finished", bool),
        ("_buffer", bytearray),
        ("_buffer_start", int),
        ("_buffer_stop", int),
        ("_buffer_fin", (int, type(None))),
        ("_acked_fin", bool),
        ("_reset_error_code", (int, type(None))),
    )
    for name, kind in sender_fields:
        attribute(sender, name, kind, "QuicStreamSender")
    require(
        quic.send_buffer_size(stream_id) == 100 and quic.send_pending(stream_id),
        "QuicStreamSender._buffer_start/_buffer_stop",
        "they no longer bound the unacknowledged data",
    )
    quic.reset_stream(stream_id, 0)
    require(
        sender._reset_error_code == 0 and not sender._buffer,
        "QuicStreamSender._reset_error_code/_buffer",
        "a reset no longer records its code, or the buffer is not freed",
    )
    require(
        quic.send_buffer_size(stream_id) == 0 and not quic.send_pending(stream_id),
        "QuicStreamSender._reset_error_code",
        "a reset stream still counts as pending",
    )


def check_whole_stream_path() -> None:
    """What the whole-stream shortcut in ``_handle_stream_frame`` mirrors: the
    frame handler's signature, the stream limit and flow-control state it updates,
    and that a stream opened but absent from ``_streams`` counts as discarded (a
    late copy is then ignored)."""
    hook = f"{QC}._handle_stream_frame"
    parameters(
        quic_connection.QuicConnection._handle_stream_frame,
        ["self", "context", "frame_type", "buf"],
        hook,
    )
    source_has(
        quic_connection.QuicConnection._get_or_create_stream,
        "if self._stream_is_discarded(stream_id):",
        f"{QC}._get_or_create_stream",
        "treating an opened stream missing from _streams as discarded",
    )
    source_has(
        quic_connection.QuicConnection._stream_is_discarded,
        "stream_id // 4 < self._stream_limit(stream_id).used",
        f"{QC}._stream_is_discarded",
        "counting peer streams as opened by the limit's .used",
    )
    source_has(
        quic_connection.QuicConnection._stream_limit,
        "return self._local_max_streams_uni",
        f"{QC}._stream_limit",
        "keeping the peer's unidirectional streams in _local_max_streams_uni",
    )
    source_has(
        quic_connection.QuicConnection._payload_received,
        "except StreamFinishedError:",
        f"{QC}._payload_received",
        "ignoring frames of discarded streams",
    )
    source_has(
        quic_connection.QuicConnection._write_application,
        "self._stream_limit(stream.stream_id).value += 1",
        f"{QC}._write_application",
        "giving the peer one more stream for each finished one it discards",
    )
    quic = connected_client()
    limit = attribute(quic, "_local_max_streams_uni", quic_connection.Limit, QC)
    attribute(limit, "used", int, f"{QC}._local_max_streams_uni")
    attribute(quic, "_local_max_stream_data_uni", int, QC)
    attribute(quic, "_events", Sized, QC)
    attribute(quic, "_is_client", bool, QC)
    require(
        attribute(quic, "_quic_logger", object, QC) is None,
        f"{QC}._quic_logger",
        "set without a qlog configured",
    )


def check_piggybacked_ack() -> None:
    """An ACK leaves once ``space.ack_at`` is due, which the override brings
    forward when data is written."""
    source_has(
        quic_connection.QuicConnection._write_application,
        "and space.ack_at <= now",
        f"{QC}._write_application",
        "writing the ACK once space.ack_at is due",
    )
    parameters(
        quic_connection.QuicConnection.datagrams_to_send,
        ["self", "now"],
        f"{QC}.datagrams_to_send",
    )
    parameters(
        quic_connection.QuicConnection.send_stream_data,
        ["self", "stream_id", "data", "end_stream"],
        f"{QC}.send_stream_data",
    )
    parameters(
        quic_connection.QuicConnection.send_datagram_frame,
        ["self", "data"],
        f"{QC}.send_datagram_frame",
    )


def check_probe_timeout() -> None:
    """The probe timeout goes through ``QuicPacketRecovery.reschedule_data``, whose
    ``speed_up_handshake`` keeps it from declaring application packets lost."""
    hook = "QuicPacketRecovery.reschedule_data"
    parameters(
        recovery.QuicPacketRecovery.reschedule_data, ["self", "now", "speed_up_handshake"], hook
    )
    source_has(
        recovery.QuicPacketRecovery.reschedule_data,
        "if not crypto_scheduled and not speed_up_handshake:",
        hook,
        "declaring the oldest packet lost only without speed_up_handshake",
    )
    source_has(
        recovery.QuicPacketRecovery.on_loss_detection_timeout,
        "self.reschedule_data(now=now)",
        "QuicPacketRecovery.on_loss_detection_timeout",
        "calling reschedule_data through the instance on a probe timeout",
    )
    quic = connected_client()
    attribute(quic, "_loss", recovery.QuicPacketRecovery, QC)


def check_pacing() -> None:
    """Pacing is off by replacing ``QuicPacketPacer.update_rate`` on the instance:
    without a rate (``packet_time`` None) ``next_send_time`` holds nothing back."""
    hook = "QuicPacketPacer.update_rate"
    parameters(
        recovery.QuicPacketPacer.update_rate, ["self", "congestion_window", "smoothed_rtt"], hook
    )
    source_has(
        recovery.QuicPacketPacer.next_send_time,
        "if self.packet_time is not None:",
        "QuicPacketPacer.next_send_time",
        "pacing only once a rate was set",
    )
    source_has(
        recovery.QuicPacketRecovery.on_ack_received,
        "self._pacer.update_rate(",
        hook,
        "the rate set through the instance's pacer",
    )
    pacer = attribute(connected_client()._loss, "_pacer", recovery.QuicPacketPacer, "_loss")
    require(pacer.packet_time is None, f"{hook}", "a rate is set before any ACK")


def check_full_packet_exit() -> None:
    """A full packet ends the stream visit: ``_write_stream_frame`` is called with
    keywords from a loop in ``_write_application`` that only a ``finally`` wraps
    (so an exception leaves it with the stream order updated), and the queue of
    streams it visits is ``_streams_queue``."""
    hook = f"{QC}._write_stream_frame"
    parameters(
        quic_connection.QuicConnection._write_stream_frame,
        ["self", "builder", "space", "stream", "max_offset"],
        hook,
    )
    for needle, what in [
        ("used = self._write_stream_frame(", "called from _write_application"),
        ("for stream in self._streams_queue:", "visiting _streams_queue"),
        ("self._streams_queue.extend(sent)", "served streams moved to the end"),
    ]:
        source_has(quic_connection.QuicConnection._write_application, needle, hook, what)
    source_has(
        quic_connection.QuicConnection.datagrams_to_send,
        "self._write_application(builder, network_path, now)",
        f"{QC}._write_application",
        "called positionally from datagrams_to_send",
    )


def check_whole_stream_send() -> None:
    """What ``send_whole_uni_stream`` relies on: the next local stream ID and the
    peer's limits it reads, a hook called once per application packet ahead of the
    stream queue (``_write_connection_limits``), delivery handlers called with the
    state first, a local stream ID below the next one and absent from ``_streams``
    counting as discarded, and the sender state behind the eager "nothing left"."""
    quic = connected_client()
    for name in (
        "_local_next_stream_id_uni",
        "_remote_max_data",
        "_remote_max_data_used",
        "_remote_max_stream_data_uni",
        "_remote_max_streams_uni",
    ):
        attribute(quic, name, int, QC)
    write_application = inspect.getsource(quic_connection.QuicConnection._write_application)
    limits = write_application.find("self._write_connection_limits(")
    queue = write_application.find("for stream in self._streams_queue:")
    loop = write_application.find("while True:")
    require(
        0 <= loop < limits < queue,
        f"{QC}._write_application",
        "no longer calling _write_connection_limits in its packet loop before the streams",
    )
    source_has(
        quic_connection.QuicConnection._stream_is_discarded,
        "is_opened = stream_id < self._local_next_stream_id_uni",
        f"{QC}._stream_is_discarded",
        "counting local unidirectional streams below the next ID as opened",
    )
    source_has(
        recovery.QuicPacketRecovery.on_ack_received,
        "handler(QuicDeliveryState.ACKED, *args)",
        "QuicPacketRecovery.on_ack_received",
        "calling delivery handlers with the state first",
    )
    parameters(
        quic_stream.QuicStream.__init__,
        [
            "self",
            "stream_id",
            "max_stream_data_local",
            "max_stream_data_remote",
            "readable",
            "writable",
        ],
        "QuicStream.__init__",
    )
    source_has(
        quic_stream.QuicStreamSender.get_reset_frame,
        "final_size=self.highest_offset",
        "QuicStreamSender.get_reset_frame",
        "resetting with the highest offset sent as the final size",
    )
    stream_id = quic.get_next_available_stream_id()
    quic.send_stream_data(stream_id, b"x" * 10, end_stream=True)
    sender = attribute(quic, "_streams", dict, QC)[stream_id].sender
    attribute(sender, "_pending", RangeSet, "QuicStreamSender")
    attribute(sender, "_pending_eof", bool, "QuicStreamSender")
    attribute(sender, "buffer_is_empty", bool, "QuicStreamSender")
    source_has(
        quic_stream.QuicStreamSender.get_frame,
        "self.buffer_is_empty = True",
        "QuicStreamSender.get_frame",
        "setting buffer_is_empty once nothing is pending",
    )


def check_pass_end() -> None:
    """A pass ends from the pacer's ``next_send_time``, which ``_write_application``
    asks at the top of each packet, before starting it, and outside any handler
    (the exception leaves the loop, the packet before still open in the builder,
    whose ``_packet`` is the open one); MAX_STREAMS is announced under the batching
    rule the check mirrors."""
    source = inspect.getsource(quic_connection.QuicConnection._write_application)
    loop = source.find("while True:")
    ask = source.find("self._pacing_at = self._loss._pacer.next_send_time(now=now)")
    start = source.find("builder.start_packet(")
    require(
        0 <= loop < ask < start and source.find("try:", loop, ask) < 0,
        f"{QC}._write_application",
        "no longer asking the pacer at the top of each packet, before starting it",
    )
    source_has(
        packet_builder.QuicPacketBuilder.start_packet,
        "self._packet = QuicSentPacket(",
        "QuicPacketBuilder._packet",
        "holding the open packet",
    )
    source_has(
        quic_connection.QuicConnection._write_connection_limits,
        "limit.sent - limit.used >= limit.value - limit.sent",
        f"{QC}._write_connection_limits",
        "batching MAX_STREAMS by the limit's sent, used and value",
    )
    limit = attribute(connected_client(), "_local_max_streams_uni", quic_connection.Limit, QC)
    attribute(limit, "sent", int, f"{QC}._local_max_streams_uni")


CHECKS: dict[str, Callable[[], None]] = {
    "pass_end": check_pass_end,
    "whole_stream_send": check_whole_stream_send,
    "pacing": check_pacing,
    "full_packet_exit": check_full_packet_exit,
    "probe_timeout": check_probe_timeout,
    "whole_stream_path": check_whole_stream_path,
    "piggybacked_ack": check_piggybacked_ack,
    "aioquic._buffer": check_buffer_module,
    "_write_connection_limits": check_write_connection_limits,
    "_write_stream_limits": check_write_stream_limits,
    "_write_connection_close_frame": check_write_connection_close_frame,
    "overridden_methods": check_overridden_methods,
    "connection_state": check_connection_state,
    "stream_state": check_stream_state,
    "logger": check_logger,
}


@pytest.mark.parametrize("internal", list(CHECKS))
def test_aioquic_internal_still_has_the_expected_shape(internal: str) -> None:
    CHECKS[internal]()


def test_a_changed_internal_fails_naming_it_and_the_pin() -> None:
    class Renamed:
        _buffer_begin = 0

    with pytest.raises(pytest.fail.Exception) as info:
        attribute(Renamed(), "_buffer_start", int, "QuicStreamSender")
    message = str(info.value)
    assert "QuicStreamSender._buffer_start" in message
    assert PIN in message
    assert PIN.startswith("aioquic==")


def _private_aioquic_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found += [
            name
            for name in names
            if name.split(".")[0] == "aioquic"
            and any(part.startswith("_") for part in name.split(".")[1:])
        ]
    return found


def test_only_the_internals_module_imports_private_aioquic_names() -> None:
    offenders = {
        str(path.relative_to(ROOT)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != INTERNALS_MODULE and (names := _private_aioquic_imports(path))
    }
    assert offenders == {}, "aioquic internals belong in clutchcall/transport/_quic.py"
    assert _private_aioquic_imports(INTERNALS_MODULE)  # the check does see them
