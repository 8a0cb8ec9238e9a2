"""The names of the published voice SDK docs, in their Python spelling, all work.

One table walks the documented surface in the order a user meets it: the client
and its three helpers (``calls``, ``audio_bridge``, ``agents``), a call's handle
and its fields, both kinds of bridge with their methods and properties, and the
end of it all. Each row names an attribute path, the arguments the docs show
(positional and keyword, as documented), whether the async client awaits it,
and what must come back. The same table runs against the dev engine with the
blocking :class:`~clutchcall.Voice`, and with :class:`~clutchcall.AsyncVoice` on
asyncio and on trio: every name must exist there, accept the documented shape
(``inspect.signature(...).bind``) and then do its job for real.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import pytest
from control_helpers import CALLER_ID, DEST, TRUNK

from clutchcall import AsyncVoice, AudioCodec, CallStatus, Voice
from clutchcall.dev import Engine

pytestmark = pytest.mark.timeout(60)

#: Seconds a ``Until`` row (or a row with ``until``) may take.
WAIT = 10.0


@dataclass(frozen=True)
class Ref:
    """A value an earlier row saved (``save=``) or the runner provided."""

    name: str


@dataclass(frozen=True)
class Read:
    """A documented property: read it (it must not be a method) and check the value."""

    path: str
    check: Callable[[Any, dict[str, Any]], bool] = lambda value, saved: True
    save: str | None = None


@dataclass(frozen=True)
class Invoke:
    """A documented method, called with the documented shape.

    ``awaited``: on the async client it returns an awaitable (it does I/O or waits
    for a shutdown); a plain call everywhere else. ``until``: repeat the call until
    the result passes (the control plane is polled: it has no events).
    """

    path: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    awaited: bool = True
    check: Callable[[Any, dict[str, Any]], bool] = lambda value, saved: True
    until: Callable[[Any], bool] | None = None
    save: str | None = None


@dataclass(frozen=True)
class Until:
    """Not a documented name: wait for what the rows before it started (a frame
    reaching a callback)."""

    what: str
    condition: Callable[[dict[str, Any]], bool]


Row = Read | Invoke | Until


class Heard:
    """A frame callback with the documented shape ``(frame, timestamp_us)``; it
    keeps what it got (callbacks may run on the bridge thread)."""

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, int]] = []
        self._lock = threading.Lock()

    def __call__(self, frame: bytes, timestamp_us: int) -> None:
        assert isinstance(frame, bytes) and isinstance(timestamp_us, int)
        with self._lock:
            self.frames.append((frame, timestamp_us))

    def got(self, frame: bytes) -> bool:
        with self._lock:
            return any(data == frame for data, _ in self.frames)


def heard(name: str, frame: bytes) -> Callable[[dict[str, Any]], bool]:
    def condition(saved: dict[str, Any]) -> bool:
        recorder: Heard = saved[name]
        return recorder.got(frame)

    return condition


def answered(call: Any) -> bool:
    return bool(call.status is CallStatus.IN_PROGRESS)


def dialing(call: Any, saved: dict[str, Any]) -> bool:
    return bool(call.status is CallStatus.DIALING and call.sid.startswith("CA"))


def equals(expected: Any) -> Callable[[Any, dict[str, Any]], bool]:
    return lambda value, saved: bool(value == expected)


def equals_saved(name: str) -> Callable[[Any, dict[str, Any]], bool]:
    return lambda value, saved: bool(value == saved[name])


def is_none(value: Any, saved: dict[str, Any]) -> bool:
    return value is None


def has(*names: str) -> Callable[[Any, dict[str, Any]], bool]:
    return lambda value, saved: all(callable(getattr(value, n, None)) for n in names)


def instance(kind: type) -> Callable[[Any, dict[str, Any]], bool]:
    return lambda value, saved: isinstance(value, kind)


PSTN = "+15557654321"
UPLINK_1, UPLINK_2 = b"seed-uplink-1", b"seed-uplink-2"
DOWNLINK_1, DOWNLINK_2, DOWNLINK_3 = b"seed-downlink-1", b"seed-downlink-2", b"seed-downlink-3"

SEED: tuple[Row, ...] = (
    # The client hands out three scoped helpers.
    Read("voice.calls", has("originate", "get")),
    Read("voice.audio_bridge", has("attach", "attach_caller")),
    Read("voice.agents", has("attach")),
    # calls.originate(...) -> a Call handle, dialing; agent and ring timeout optional.
    Invoke(
        "voice.calls.originate",
        kwargs={
            "to": DEST,
            "from_": CALLER_ID,
            "trunk_id": TRUNK,
            "agent": "healthcare-assistant",
            "ring_timeout_sec": 30,
        },
        check=dialing,
        save="call",
    ),
    # The handle's read-only fields.
    Read("call.sid", instance(str), save="sid"),
    Read("call.status", instance(CallStatus)),
    Read("call.to", equals(DEST)),
    Read("call.from_", equals(CALLER_ID)),
    Read("call.started_at", instance(datetime)),
    Read("call.trunk_id", equals(TRUNK)),
    Read("call.agent", equals("healthcare-assistant")),
    # calls.get({ sid }): by keyword (polled until answered) and positionally.
    Invoke("voice.calls.get", kwargs={"sid": Ref("sid")}, until=answered),
    Invoke("voice.calls.get", (Ref("sid"),), check=lambda c, saved: c.sid == saved["sid"]),
    # call.transfer({ to }), the bare-string shorthand, and { agent }.
    Invoke("call.transfer", kwargs={"to": PSTN}, check=is_none),
    Invoke("call.transfer", (PSTN,), check=is_none),
    Read("call.to", equals(PSTN)),
    Invoke("call.transfer", kwargs={"agent": "billing-bot"}, check=is_none),
    Read("call.agent", equals("billing-bot")),
    # agents.attach(callSid, agent).
    Invoke("voice.agents.attach", (Ref("sid"), "healthcare-assistant"), check=is_none),
    Invoke(
        "voice.calls.get",
        (Ref("sid"),),
        check=lambda c, saved: c.agent == "healthcare-assistant",
    ),
    # call.hangup().
    Invoke("call.hangup", check=is_none),
    Read("call.status", equals(CallStatus.COMPLETED)),
    # The data plane, on a call of its own (no agent on its tracks).
    Invoke(
        "voice.calls.originate",
        kwargs={"to": DEST, "from_": CALLER_ID, "trunk_id": TRUNK},
        check=dialing,
        save="talk",
    ),
    Read("talk.sid", save="talk_sid"),
    Invoke("voice.calls.get", (Ref("talk_sid"),), until=answered),
    # audio_bridge.attach(callSid, opts): the server side, every option at its default.
    Invoke(
        "voice.audio_bridge.attach",
        (Ref("talk_sid"),),
        {
            "codec": "opus",
            "sample_rate": 48000,
            "channels": 1,
            "frame_ms": 20,
            "on_uplink": Ref("server_hears"),
        },
        save="server",
    ),
    Read("server.call_sid", equals_saved("talk_sid")),
    # audio_bridge.attach_caller(callSid, opts): the softphone side.
    Invoke(
        "voice.audio_bridge.attach_caller",
        (Ref("talk_sid"),),
        {"codec": "opus", "on_downlink": Ref("caller_hears")},
        save="caller",
    ),
    Read("caller.call_sid", equals_saved("talk_sid")),
    # publish_uplink(frame, timestamp_us) reaches on_uplink; publish_downlink, with
    # and without a timestamp, reaches on_downlink.
    Invoke("caller.publish_uplink", (UPLINK_1, 1_000), check=is_none),
    Until("the server's on_uplink hears the softphone", heard("server_hears", UPLINK_1)),
    Invoke("server.publish_downlink", (DOWNLINK_1,), {"timestamp_us": 2_000}, check=is_none),
    Invoke("server.publish_downlink", (DOWNLINK_2,), check=is_none),
    Until("the softphone's on_downlink hears the server", heard("caller_hears", DOWNLINK_2)),
    # on_uplink(cb) / on_downlink(cb) swap the consumer mid-call (plain calls).
    Invoke("server.on_uplink", (Ref("server_hears_next"),), awaited=False, check=is_none),
    Invoke("caller.on_downlink", (Ref("caller_hears_next"),), awaited=False, check=is_none),
    Invoke("caller.publish_uplink", (UPLINK_2,), {"timestamp_us": 3_000}, check=is_none),
    Invoke("server.publish_downlink", (DOWNLINK_3, 4_000), check=is_none),
    Until("the new on_uplink hears the softphone", heard("server_hears_next", UPLINK_2)),
    Until("the new on_downlink hears the server", heard("caller_hears_next", DOWNLINK_3)),
    # close() tears each bridge down (awaited on the async client).
    Invoke("server.close", check=is_none),
    Read("server.closed", equals(True)),
    Invoke("caller.close", check=is_none),
    Read("caller.closed", equals(True)),
    Invoke("talk.hangup", check=is_none),
    Invoke("voice.close", check=is_none),
)


def seed_voice(cls: type[Voice] | type[AsyncVoice], engine: Engine) -> Voice | AsyncVoice:
    """The client, built with the documented keywords (plus what reaches the dev relay)."""
    options: dict[str, Any] = {
        "base_url": engine.base_url,
        "api_key": engine.api_key,
        "org_id": engine.org_id,
        "relay_host": "127.0.0.1",
    }
    inspect.signature(cls).bind(**options)
    return cls(**options, relay_url=engine.relay_url, verify=engine.relay_ca_file or False)


def start_values(voice: Voice | AsyncVoice) -> dict[str, Any]:
    names = ("server_hears", "caller_hears", "server_hears_next", "caller_hears_next")
    return {"voice": voice, **{name: Heard() for name in names}}


def lookup(path: str, saved: dict[str, Any]) -> Any:
    first, *attributes = path.split(".")
    target = saved[first]
    for name in attributes:
        assert hasattr(target, name), f"{path}: {type(target).__name__} has no {name!r}"
        target = getattr(target, name)
    return target


def resolve(value: Any, saved: dict[str, Any]) -> Any:
    return saved[value.name] if isinstance(value, Ref) else value


def prepare(row: Invoke, saved: dict[str, Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The method and its arguments, after checking that it takes the documented shape."""
    method = lookup(row.path, saved)
    assert callable(method), f"{row.path} is not callable"
    args = tuple(resolve(a, saved) for a in row.args)
    kwargs = {k: resolve(v, saved) for k, v in row.kwargs.items()}
    try:
        inspect.signature(method).bind(*args, **kwargs)
    except TypeError as exc:
        raise AssertionError(f"{row.path} does not take the documented arguments: {exc}") from exc
    return method, args, kwargs


def read(row: Read, saved: dict[str, Any]) -> None:
    first, _, name = row.path.rpartition(".")
    owner = type(lookup(first, saved))
    assert not callable(getattr(owner, name, None)), f"{row.path} should be a property"
    value = lookup(row.path, saved)
    assert row.check(value, saved), f"{row.path} = {value!r}"
    if row.save:
        saved[row.save] = value


def finish(row: Invoke, value: Any, saved: dict[str, Any]) -> None:
    assert row.check(value, saved), f"{row.path}(...) returned {value!r}"
    if row.save:
        saved[row.save] = value


def run_sync(saved: dict[str, Any]) -> None:
    for row in SEED:
        if isinstance(row, Read):
            read(row, saved)
        elif isinstance(row, Until):
            deadline = time.monotonic() + WAIT
            while not row.condition(saved):
                assert time.monotonic() < deadline, f"never: {row.what}"
                time.sleep(0.01)
        else:
            method, args, kwargs = prepare(row, saved)
            deadline = time.monotonic() + WAIT
            while True:
                value = method(*args, **kwargs)
                assert not inspect.isawaitable(value), f"{row.path} returned an awaitable"
                if row.until is None or row.until(value):
                    break
                assert time.monotonic() < deadline, f"{row.path}: never {row.until.__name__}"
                time.sleep(0.01)
            finish(row, value, saved)


async def run_async(saved: dict[str, Any]) -> None:
    for row in SEED:
        if isinstance(row, Read):
            read(row, saved)
            continue
        with anyio.fail_after(WAIT):
            if isinstance(row, Until):
                while not row.condition(saved):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                continue
            method, args, kwargs = prepare(row, saved)
            while True:
                value = method(*args, **kwargs)
                if row.awaited:
                    assert inspect.isawaitable(value), f"{row.path} is not awaitable"
                    value = await value
                else:
                    assert not inspect.isawaitable(value), f"{row.path} returned an awaitable"
                if row.until is None or row.until(value):
                    break
                await anyio.sleep(0.01)
        finish(row, value, saved)


def test_the_documented_names_work_on_the_blocking_client(engine: Engine) -> None:
    voice = seed_voice(Voice, engine)
    assert isinstance(voice, Voice)
    try:
        run_sync(start_values(voice))
    finally:
        voice.close()


@pytest.mark.anyio
async def test_the_documented_names_work_on_the_async_client(engine: Engine) -> None:
    voice = seed_voice(AsyncVoice, engine)
    assert isinstance(voice, AsyncVoice)
    try:
        await run_async(start_values(voice))
    finally:
        await voice.close()


def test_the_documented_enumerations_have_the_documented_values() -> None:
    assert {s.value for s in CallStatus} == {
        "dialing",
        "ringing",
        "in_progress",
        "completed",
        "failed",
        "no_answer",
    }
    assert {c.value for c in AudioCodec} == {"opus", "pcm16", "g711_ulaw", "g711_alaw"}
