"""Every operation in openapi.yaml is reachable through the facade."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from control_helpers import CALLER_ID, DEST, TRUNK, wait_status

from clutchcall import CallStatus, Voice
from clutchcall.dev import Engine

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"


def spec_operations() -> dict[str, tuple[str, re.Pattern[str]]]:
    spec = yaml.safe_load(SPEC.read_text())
    out: dict[str, tuple[str, re.Pattern[str]]] = {}
    for path, item in spec["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method, op in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                out[op["operationId"]] = (method.upper(), pattern)
    return out


def test_every_spec_operation_is_called_by_the_facade(voice: Voice, engine: Engine) -> None:
    call = voice.calls.originate(to=DEST, from_=CALLER_ID, trunk_id=TRUNK)
    voice.calls.create_bridge_token(call.sid)
    voice.agents.attach(call.sid, "echo")
    wait_status(call, {CallStatus.IN_PROGRESS})
    call.transfer("+15557654321")
    call.hangup()
    served = [(r.method, r.path) for r in engine.requests()]
    operations = spec_operations()
    assert len(operations) == 6
    for operation_id, (method, pattern) in operations.items():
        assert any(m == method and pattern.match(p) for m, p in served), operation_id
