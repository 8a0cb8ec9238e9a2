"""Each blocking class has the surface of its async twin: Voice and AsyncVoice (the sync
side is generated from the async), and the audio bridges (written by hand twice)."""

from __future__ import annotations

import inspect

import pytest

import clutchcall
from clutchcall._control import _async_client, _sync_client

PAIRS = [
    (clutchcall.Voice, clutchcall.AsyncVoice),
    (clutchcall.Calls, clutchcall.AsyncCalls),
    (clutchcall.Call, clutchcall.AsyncCall),
    (clutchcall.Agents, clutchcall.AsyncAgents),
    (_sync_client.CallsWithRawResponse, _async_client.AsyncCallsWithRawResponse),
    (_sync_client.AgentsWithRawResponse, _async_client.AsyncAgentsWithRawResponse),
]
BRIDGE_PAIRS = [
    (clutchcall.AudioBridge, clutchcall.AsyncAudioBridge),
    (clutchcall.AudioBridges, clutchcall.AsyncAudioBridges),
]
#: Async-only aliases, and the method each one is: ``aclose`` is ``close`` under the
#: name ``contextlib.aclosing`` and anyio look for (the blocking twin has ``close``).
ASYNC_ALIASES = {"aclose": "close"}
#: Methods of the async classes that are plain functions: they return at once.
NOT_AWAITED = {"with_options", "to_dict", "on_uplink", "on_downlink", "uplink", "downlink"}
#: Every method that sends a request, on the plain and the raw-response classes.
REQUEST_METHODS = [
    *(
        (cls, name)
        for cls in (clutchcall.Calls, clutchcall.AsyncCalls)
        for name in ("originate", "get", "transfer", "hangup", "create_bridge_token")
    ),
    *(
        (cls, name)
        for cls in (_sync_client.CallsWithRawResponse, _async_client.AsyncCallsWithRawResponse)
        for name in ("originate", "get", "transfer", "hangup", "create_bridge_token")
    ),
    *(
        (cls, "attach")
        for cls in (
            clutchcall.Agents,
            clutchcall.AsyncAgents,
            _sync_client.AgentsWithRawResponse,
            _async_client.AsyncAgentsWithRawResponse,
        )
    ),
    *(
        (cls, name)
        for cls in (clutchcall.Call, clutchcall.AsyncCall)
        for name in ("refresh", "transfer", "hangup")
    ),
]


def public(cls: type) -> dict[str, object]:
    return {n: getattr(cls, n) for n in dir(cls) if not n.startswith("_")}


def public_as_sync(cls: type) -> dict[str, object]:
    """The public members of an async class that have a blocking twin (of the same name)."""
    return {n: member for n, member in public(cls).items() if n not in ASYNC_ALIASES}


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS + BRIDGE_PAIRS)
def test_same_public_names_and_signatures(sync_cls: type, async_cls: type) -> None:
    sync_members, async_members = public(sync_cls), public_as_sync(async_cls)
    assert sync_members.keys() == async_members.keys()
    for name, member in sync_members.items():
        other = async_members[name]
        if callable(member):
            assert not inspect.iscoroutinefunction(member), name
            sync_params = list(inspect.signature(member).parameters.values())
            async_params = list(inspect.signature(other).parameters.values())  # type: ignore[arg-type]
            assert [(p.name, p.kind, p.default) for p in sync_params] == [
                (p.name, p.kind, p.default) for p in async_params
            ], name


@pytest.mark.parametrize(("sync_cls", "async_cls"), BRIDGE_PAIRS)
def test_bridge_twins_share_their_docstrings(sync_cls: type, async_cls: type) -> None:
    """The blocking bridge classes are written by hand: each public member documents
    the same thing as its async twin, in the same words."""
    sync_members, async_members = public(sync_cls), public_as_sync(async_cls)
    for name, member in sync_members.items():
        doc = inspect.getdoc(member)
        assert doc == inspect.getdoc(async_members[name]), f"{sync_cls.__name__}.{name}"
        if callable(member):
            assert doc, f"{sync_cls.__name__}.{name} has no docstring"


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS + BRIDGE_PAIRS)
def test_async_aliases_are_awaitable_twins_of_what_they_alias(
    sync_cls: type, async_cls: type
) -> None:
    """``await bridge.close()`` (the documented name) and ``await bridge.aclose()``
    both exist and take the same arguments; the blocking class has only ``close``."""
    for alias, name in ASYNC_ALIASES.items():
        if not hasattr(async_cls, alias):
            continue
        assert not hasattr(sync_cls, alias), f"{sync_cls.__name__}.{alias}"
        aliased, original = getattr(async_cls, alias), getattr(async_cls, name)
        assert inspect.iscoroutinefunction(aliased), f"{async_cls.__name__}.{alias}"
        assert inspect.iscoroutinefunction(original), f"{async_cls.__name__}.{name}"
        assert inspect.signature(aliased) == inspect.signature(original)
        assert inspect.getdoc(aliased), f"{async_cls.__name__}.{alias} has no docstring"


@pytest.mark.parametrize(("sync_cls", "async_cls"), BRIDGE_PAIRS)
def test_bridges_close_by_the_documented_name(sync_cls: type, async_cls: type) -> None:
    assert {"close", "aclose"} <= set(public(async_cls))
    assert "close" in public(sync_cls)


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS + BRIDGE_PAIRS)
def test_async_methods_are_coroutines(sync_cls: type, async_cls: type) -> None:
    for name, member in public(async_cls).items():
        if inspect.isfunction(member) and name not in NOT_AWAITED:
            assert inspect.iscoroutinefunction(member), f"{async_cls.__name__}.{name}"


@pytest.mark.parametrize(("cls", "name"), REQUEST_METHODS)
def test_every_request_method_takes_timeout_and_max_retries_by_keyword(
    cls: type, name: str
) -> None:
    params = inspect.signature(getattr(cls, name)).parameters
    for option in ("timeout", "max_retries"):
        assert params[option].kind is inspect.Parameter.KEYWORD_ONLY, (cls, name, option)
        assert params[option].default is None


@pytest.mark.parametrize(
    ("plain", "raw"),
    [
        (clutchcall.Calls, _sync_client.CallsWithRawResponse),
        (clutchcall.AsyncCalls, _async_client.AsyncCallsWithRawResponse),
        (clutchcall.Agents, _sync_client.AgentsWithRawResponse),
        (clutchcall.AsyncAgents, _async_client.AsyncAgentsWithRawResponse),
    ],
)
def test_with_raw_response_has_every_method_with_the_same_signature(plain: type, raw: type) -> None:
    assert isinstance(vars(plain)["with_raw_response"], property)
    methods = {n for n, m in public(plain).items() if inspect.isfunction(m)}
    assert methods and methods == {n for n, m in public(raw).items() if inspect.isfunction(m)}
    for name in methods:
        want = inspect.signature(getattr(plain, name)).parameters
        got = inspect.signature(getattr(raw, name)).parameters
        assert [(p.name, p.kind, p.default) for p in want.values()] == [
            (p.name, p.kind, p.default) for p in got.values()
        ], name


def test_documented_names_exist() -> None:
    for name in ("originate", "get", "transfer", "hangup", "create_bridge_token"):
        assert hasattr(clutchcall.Calls, name)
    for name in ("sid", "status", "to", "from_", "started_at", "trunk_id", "agent"):
        assert isinstance(getattr(clutchcall.Call, name), property)
    # The enumerations' documented values: test_seed_names.
