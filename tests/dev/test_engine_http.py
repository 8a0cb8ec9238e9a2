"""The dev engine as an HTTP server: problem documents, request ids, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from clutchcall.dev import Engine, EngineError


@pytest.fixture
def http(engine: Engine) -> httpx.Client:
    return httpx.Client(
        base_url=f"{engine.base_url}/v1/orgs/{engine.org_id}",
        headers={"Authorization": f"Bearer {engine.api_key}"},
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["requestId"] == response.headers["x-request-id"]
    assert isinstance(body["detail"], str) and body["detail"]
    return dict(body)


def test_bad_bodies_get_4xx_problem_documents(http: httpx.Client) -> None:
    with http:
        assert_problem(
            http.post("/calls", content=b"{nope", headers={"content-type": "application/json"}),
            400,
            "invalid_json",
        )
        assert_problem(
            http.post("/calls", content=b"to=1", headers={"content-type": "text/plain"}),
            415,
            "unsupported_media_type",
        )
        assert_problem(http.post("/calls", json=[1, 2]), 422, "validation_failed")
        assert_problem(
            http.post(
                "/calls",
                content=b'{"ringTimeoutSec": NaN}',
                headers={"content-type": "application/json"},
            ),
            400,
            "invalid_json",
        )
        body = assert_problem(
            http.post(
                "/calls",
                json={
                    "to": "+15551234567",
                    "from": "+15558675309",
                    "trunkId": "t",
                    "ringTimeoutSec": True,
                },
            ),
            422,
            "validation_failed",
        )
        assert body["errors"] == [{"field": "ringTimeoutSec", "message": "must be an integer"}]
        assert_problem(
            http.post(
                "/calls", json={"to": "+15551234567\n", "from": "+15558675309", "trunkId": "t"}
            ),
            422,
            "validation_failed",
        )


def test_unknown_routes_and_methods(http: httpx.Client, engine: Engine) -> None:
    with http:
        assert_problem(http.get("/nowhere"), 404, "not_found")
        response = http.delete("/calls")
        assert_problem(response, 405, "method_not_allowed")
        assert "POST" in response.headers["allow"]
    anonymous = httpx.get(f"{engine.base_url}/v1/orgs/{engine.org_id}/calls/CA{'0' * 32}")
    assert_problem(anonymous, 401, "unauthorized")
    assert anonymous.headers["www-authenticate"].startswith("Bearer")


def test_originate_answers_201_with_location(http: httpx.Client) -> None:
    with http:
        response = http.post(
            "/calls",
            json={
                "to": "+15551234567",
                "from": "+15558675309",
                "trunkId": "trunk_main",
                "ringTimeoutSec": 7.0,
            },
            headers={"Idempotency-Key": "abc"},
        )
        assert response.status_code == 201
        sid = response.json()["sid"]
        assert response.headers["location"].endswith(f"/calls/{sid}")
        assert response.json()["ringTimeoutSec"] == 7
        replay = http.post(
            "/calls",
            json={
                "to": "+15551234567",
                "from": "+15558675309",
                "trunkId": "trunk_main",
                "ringTimeoutSec": 7,
            },
            headers={"Idempotency-Key": "abc"},
        )
        assert replay.json()["sid"] == sid
        assert replay.headers["idempotent-replayed"] == "true"


def test_port_in_use_is_a_clear_error(engine: Engine) -> None:
    with pytest.raises(EngineError, match="cannot listen"):
        Engine(port=engine.port).start()


def test_cli_prints_one_ready_line_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clutchcall", "dev", "--port", "0", "--time-scale", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) == {
            "base_url",
            "relay_url",
            "api_key",
            "org_id",
            "relay_ca_file",
            "softphone_url",
        }
        page = httpx.get(info["softphone_url"])
        assert page.status_code == 200
        assert "clutchcall softphone" in page.text
        response = httpx.get(
            f"{info['base_url']}/v1/orgs/{info['org_id']}/calls/CA{'0' * 32}",
            headers={"Authorization": f"Bearer {info['api_key']}"},
        )
        assert response.status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


def test_cert_dir_keeps_the_relay_certificate_across_engines(tmp_path: Path) -> None:
    with Engine(cert_dir=tmp_path) as first:
        fingerprint, ca_file = first.relay_cert_sha256, first.relay_ca_file
        assert first.ready_info()["relay_ca_file"] == ca_file == str(tmp_path / "cert.pem")
    assert (tmp_path / "cert.pem").is_file()  # kept after stop
    with Engine(cert_dir=tmp_path, relay_port=first.relay_port) as second:
        assert second.relay_cert_sha256 == fingerprint
        assert second.relay_port == first.relay_port
    (tmp_path / "cert.pem").write_text("not a certificate")
    with Engine(cert_dir=tmp_path) as third:
        assert third.relay_cert_sha256 != fingerprint  # unreadable: a fresh one, written back
    assert "not a certificate" not in (tmp_path / "cert.pem").read_text()
