"""Fuzz the control plane's request bodies and headers: never a 5xx, never a stall."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutchcall.dev import Engine

SID = "CA" + "0" * 32
ENDPOINTS = [
    ("POST", "/calls"),
    ("POST", f"/calls/{SID}/transfer"),
    ("POST", f"/calls/{SID}/hangup"),
    ("PUT", f"/calls/{SID}/agent"),
    ("POST", f"/calls/{SID}/bridge-tokens"),
    ("GET", f"/calls/{SID}"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(["to", "from", "trunkId", "agent", "ringTimeoutSec", "role", "x"])
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(field_names, json_values, max_size=6).map(lambda d: json.dumps(d).encode()),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/problem+json",
        "text/plain",
        "",
        "application/json; charset=latin-1",
    ]
)


@pytest.fixture(scope="module")
def client(clutchcall_engine: Engine) -> Iterator[httpx.Client]:
    engine = clutchcall_engine
    with httpx.Client(
        base_url=f"{engine.base_url}/v1/orgs/{engine.org_id}",
        headers={"Authorization": f"Bearer {engine.api_key}"},
        timeout=5,
    ) as http:
        yield http


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=bodies,
    content_type=content_types,
    idem=st.none()
    | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=300),
)
def test_random_requests_never_cause_a_server_error(
    client: httpx.Client,
    endpoint: tuple[str, str],
    body: bytes,
    content_type: str,
    idem: str | None,
) -> None:
    method, path = endpoint
    headers = {"content-type": content_type}
    if idem is not None:
        headers["idempotency-key"] = idem
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert isinstance(response.json()["code"], str)


def test_engine_keeps_serving_after_the_fuzzing(client: httpx.Client) -> None:
    created = client.post(
        "/calls", json={"to": "+15551234567", "from": "+15558675309", "trunkId": "t"}
    )
    assert created.status_code == 201
    assert client.get(f"/calls/{created.json()['sid']}").status_code == 200
