"""Voice and AsyncVoice expose the same surface (the sync side is generated from the async)."""

from __future__ import annotations

import inspect

import pytest

import clutchcall

PAIRS = [
    (clutchcall.Voice, clutchcall.AsyncVoice),
    (clutchcall.Calls, clutchcall.AsyncCalls),
    (clutchcall.Call, clutchcall.AsyncCall),
    (clutchcall.Agents, clutchcall.AsyncAgents),
]


def public(cls: type) -> dict[str, object]:
    return {n: getattr(cls, n) for n in dir(cls) if not n.startswith("_")}


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_same_public_names_and_signatures(sync_cls: type, async_cls: type) -> None:
    sync_members, async_members = public(sync_cls), public(async_cls)
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


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_async_methods_are_coroutines(sync_cls: type, async_cls: type) -> None:
    for name, member in public(async_cls).items():
        if inspect.isfunction(member) and name not in ("with_options", "to_dict"):
            assert inspect.iscoroutinefunction(member), f"{async_cls.__name__}.{name}"


def test_documented_names_exist() -> None:
    for name in ("originate", "get", "transfer", "hangup", "create_bridge_token"):
        assert hasattr(clutchcall.Calls, name)
    for name in ("sid", "status", "to", "from_", "started_at", "trunk_id", "agent"):
        assert isinstance(getattr(clutchcall.Call, name), property)
    assert {s.value for s in clutchcall.CallStatus} == {
        "dialing",
        "ringing",
        "in_progress",
        "completed",
        "failed",
        "no_answer",
    }
    assert {c.value for c in clutchcall.AudioCodec} == {"opus", "pcm16", "g711_ulaw", "g711_alaw"}
