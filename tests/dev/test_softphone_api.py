"""The softphone page's backend (clutchcall.dev.softphone) over HTTP.

The page itself runs in a browser in tests/web/test_softphone_browser.py.
"""

from __future__ import annotations

import httpx
import pytest

from clutchcall.dev import Engine

ECHO_NUMBER = "+15005550004"
pytestmark = pytest.mark.timeout(30)


def test_page_requests_need_the_page_token_and_the_same_origin(engine: Engine) -> None:
    """The page session API refuses other origins and requests without its token."""
    base = engine.base_url
    with httpx.Client(base_url=base, timeout=5) as http:
        assert http.get("/softphone/api/call").status_code == 401
        wrong = http.get("/softphone/api/call", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        foreign = http.post(
            "/softphone/api/sessions",
            json={"to": ECHO_NUMBER},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        form = http.post(
            "/softphone/api/sessions", content=b"to=1", headers={"Content-Type": "text/plain"}
        )
        assert form.status_code == 415
        created = http.post("/softphone/api/sessions", json={"to": ECHO_NUMBER})
        assert created.status_code == 200
        body = created.json()
        assert "api_key" not in created.text and engine.api_key not in created.text
        assert body["bridge"]["relayUrl"] == engine.relay_webtransport_url
        assert body["bridge"]["certificateHash"] == engine.relay_cert_sha256
        auth = {"Authorization": f"Bearer {body['pageToken']}"}
        assert http.get("/softphone/api/call", headers=auth).json()["sid"] == body["call"]["sid"]
        assert (
            http.post("/softphone/api/hangup", json={}, headers=auth).json()["status"]
            == "completed"
        )
        assert http.get("/softphone/eslint.config.js").status_code == 404
        assert http.get("/softphone/node_modules").status_code == 404
        module = http.get("/softphone/clutchcall.js")
        assert module.headers["content-type"].startswith("text/javascript")
        assert module.headers["access-control-allow-origin"] == "*"
        assert "attachCaller" in module.text
