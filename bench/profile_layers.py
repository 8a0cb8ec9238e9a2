"""Where a profiled process spends its CPU, by layer: ``python -m bench.profile_layers FILE``.

FILE is a py-spy speedscope profile (``py-spy record --format speedscope``), for
example of ``python -m bench.scale_sdk --steps 100 --hold 40`` while it holds its
calls (``py-spy record --pid PID --duration 25``; add ``--native`` to split the C
code: crypto, socket calls, the collector). Only the busiest thread (the event
loop's) is read; idle samples are not in the file unless py-spy recorded with
``--idle``.

Each sample is charged to one layer, that of its innermost frame, except:
Python-level helpers (dataclass ``__init__`` s, ``<string>`` code, the
interpreter's own C functions) are charged to the nearest caller with a layer,
and native code that names itself (OpenSSL, the socket system calls, the
garbage collector) gets a layer of its own. ``--per-frame US`` also prints each
layer's share of US microseconds (the benchmark's CPU per frame, measured
without the profiler, which slows the process down).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

#: (layer, substrings of a frame's file or name), most specific first.
NATIVE_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("crypto (AEAD, header protection)", ("libcrypto", "_crypto", "EVP_", "aes_", "gcm_")),
    ("socket send/recv (syscalls)", ("sendto", "recvfrom", "sendmsg", "recvmsg", "__libc_send")),
    ("event loop: waiting in epoll", ("epoll_wait",)),
    ("garbage collector", ("gc_collect", "gc_collect_main", "visit_decref", "visit_reachable")),
)
FILE_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("crypto (AEAD, header protection)", ("aioquic/_crypto", "aioquic/quic/crypto.py")),
    ("aioquic: packet parse/build, streams, ACKs", ("aioquic/",)),
    ("clutchcall.transport (driver, sockets)", ("clutchcall/transport/",)),
    ("clutchcall.moqt (MoQT wire + session, sans-IO)", ("clutchcall/moqt/",)),
    ("clutchcall.moqnet (MoqtClient, link, tracks)", ("clutchcall/moqnet/",)),
    ("clutchcall.bridge (bridge dispatch)", ("clutchcall/bridge/",)),
    ("benchmark harness (pacing, callbacks, probe)", ("bench/",)),
    ("logging", ("logging/",)),
    ("timers (arm, cancel, fire; cancel-scope deadlines)", ("heapq",)),
    ("event loop (asyncio / trio / anyio)", ("asyncio/", "/trio/", "/anyio/", "selectors.py")),
    ("socket module (Python side)", ("socket.py",)),
)
UNCHARGED = (
    "<string>",
    "dataclasses.py",
    "libpython",
    "python3",
    "<frozen",
    "typing.py",
    "enum.py",
)


def _layer_of(frame: dict[str, Any]) -> str | None:
    name, path = frame.get("name", ""), frame.get("file", "") or ""
    if not path.endswith(".py"):  # native code: a shared library's function
        where = f"{path} {name}"
        for layer, marks in NATIVE_LAYERS:
            if any(mark in where for mark in marks):
                return layer
    for layer, marks in FILE_LAYERS:
        if any(mark in path for mark in marks):
            return layer
    return None


#: Event-loop functions that arm, cancel or fire timers (deadlines included).
TIMER_FUNCTIONS = (
    "call_at",
    "call_later",
    "TimerHandle",
    "_timer_handle_cancelled",
    "CancelScope._timeout",
    "CancelScope.deadline",
    "heappush",
    "heappop",
    "sleep_until",
    "current_time",
    "BaseEventLoop.time",
)
#: Per layer, (sub-layer, function names one of which is on the stack), first match wins.
SUBLAYERS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "aioquic: packet parse/build, streams, ACKs": (
        ("aioquic: per-stream limit scan of each packet", ("_write_stream_limits",)),
        ("aioquic: packet build (send)", ("QuicConnection.datagrams_to_send",)),
        ("aioquic: packet parse (receive)", ("QuicConnection.receive_datagram",)),
        ("aioquic: stream writes (send_stream_data)", ("QuicConnection.send_stream_data",)),
    ),
    "clutchcall.transport (driver, sockets)": (
        ("aioquic: per-stream limit scan of each packet", ("_write_stream_limits",)),
    ),
    "clutchcall.moqt (MoQT wire + session, sans-IO)": (
        ("clutchcall.moqt: parse objects in", ("Session.receive_stream",)),
        ("clutchcall.moqt: encode objects out", ("Session.send_object",)),
    ),
}


def _charged(stack: Sequence[int], frames: list[dict[str, Any]]) -> str:
    """The layer of a sample: its innermost frame with one, skipping helpers."""
    for index in reversed(stack):
        frame = frames[index]
        layer = _layer_of(frame)
        if layer is not None:
            return _refined(layer, frame, stack, frames)
        path = frame.get("file", "") or ""
        if not any(mark in path for mark in UNCHARGED) and path.endswith(".py"):
            return "other Python"
    return "other (native, unattributed)"


def _refined(
    layer: str, frame: dict[str, Any], stack: Sequence[int], frames: list[dict[str, Any]]
) -> str:
    """Split a layer by what its frame is doing (timers) or where it was called from."""
    name = frame.get("name", "")
    if layer.startswith("event loop (") and any(timer in name for timer in TIMER_FUNCTIONS):
        return "timers (arm, cancel, fire; cancel-scope deadlines)"
    rules = SUBLAYERS.get(layer)
    if rules:
        on_stack = [frames[i].get("name", "") for i in stack]
        for sublayer, names in rules:
            if any(f.endswith(name) for f in on_stack for name in names):
                return sublayer
    return layer


def layers(profile_path: str) -> tuple[Counter[str], Counter[str], int]:
    """Sampled seconds per layer and per innermost function, and in all."""
    with open(profile_path) as file:
        data = json.load(file)
    frames: list[dict[str, Any]] = data["shared"]["frames"]
    busiest = max(data["profiles"], key=lambda p: len(p["samples"]))
    by_layer: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    for stack, weight in zip(busiest["samples"], busiest["weights"], strict=True):
        if not stack:
            continue
        by_layer[_charged(stack, frames)] += weight
        leaf = frames[stack[-1]]
        path = (leaf.get("file", "") or "").split("site-packages/")[-1]
        by_function[f"{leaf.get('name')} ({path.rsplit('/', 2)[-2:][-1]})"] += weight
    return by_layer, by_function, sum(by_layer.values())


def inclusive(profile_path: str, names: Sequence[str]) -> dict[str, float]:
    """The share of samples with a frame of each function name on the stack."""
    with open(profile_path) as file:
        data = json.load(file)
    frames: list[dict[str, Any]] = data["shared"]["frames"]
    busiest = max(data["profiles"], key=lambda p: len(p["samples"]))
    found: Counter[str] = Counter()
    total = 0
    for stack, weight in zip(busiest["samples"], busiest["weights"], strict=True):
        total += weight
        on_stack = {frames[i].get("name", "") for i in stack}
        for name in names:
            if name in on_stack:
                found[name] += weight
    return {name: found[name] / max(1, total) for name in names}


#: Entry points whose inclusive share tells the receive and send paths apart.
ENTRY_POINTS = (
    "QuicConnection.receive_datagram",
    "QuicConnection.datagrams_to_send",
    "Driver.run",
    "MoqtClient._on_events",
    "Session.receive_stream",
    "AudioPublication._flush",
    "BridgeCore._on_frame",
    "Pairs.talk",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_layers")
    parser.add_argument("profile")
    parser.add_argument("--per-frame", type=float, default=0.0, metavar="US")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    by_layer, by_function, total = layers(args.profile)
    print(f"{total:.1f} s sampled in the busiest thread")
    for layer, weight in by_layer.most_common():
        share = weight / max(1, total)
        us = f"  {share * args.per_frame:6.1f} us/frame" if args.per_frame else ""
        print(f"  {share:6.1%}{us}  {layer}")
    print("innermost functions:")
    for function, weight in by_function.most_common(args.top):
        print(f"  {weight / max(1, total):6.1%}  {function}")
    print("inclusive (on the stack):")
    for name, share in inclusive(args.profile, ENTRY_POINTS).items():
        print(f"  {share:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
