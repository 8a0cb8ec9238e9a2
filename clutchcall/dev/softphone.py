"""The dev engine's softphone: a browser page that talks into dev-engine calls.

``clutchcall dev`` serves ``/softphone``: dial a number (with an optional agent) or
join a call by sid, then talk through the microphone and listen through the
speakers. The page uses the browser module in ``clutchcall/web`` (the same files,
served under ``/softphone/<name>.js``): Opus over MoQT over WebTransport to the
engine's relay, as the call's ``caller``.

The API key never reaches the browser. This module is the page's backend, and it
does what your own backend would do for a page of yours, with the public SDK
(:class:`~clutchcall.AsyncVoice`): it originates the call (or checks the sid),
mints a short-lived ``caller`` bridge token, and hands the page that token, the
relay's WebTransport URL and the relay certificate's SHA-256 (for WebTransport's
``serverCertificateHashes``). The page also gets a *page token*: a random bearer
credential bound to that one call, valid for :data:`SESSION_TTL` seconds, which
lets it do exactly what a softphone needs and nothing else: read the call's status
(``calls.get``), renew its bridge token, transfer the call to an agent or a
number, and hang up. Page sessions are few (:data:`MAX_SESSIONS`, oldest dropped)
and held in memory only.

The JSON endpoints refuse cross-site requests: the ``Host`` header must name this
engine (no DNS rebinding), an ``Origin`` header must be the page's own origin, and
bodies must be ``application/json`` (which a foreign page cannot send without a
CORS preflight that is never granted).

Routes (dev only, not part of ``openapi.yaml``)::

    GET  /softphone                        the page
    GET  /softphone/<module>.js            the browser modules (and softphone.css)
    GET  /softphone/api/config             agents and magic numbers, for the dial form
    POST /softphone/api/sessions           {"to": "+1...", "agent": "..."} or {"sid": "CA..."}
    GET  /softphone/api/call               the call (Authorization: Bearer <page token>)
    POST /softphone/api/bridge-token       a fresh caller bridge token
    POST /softphone/api/transfer           {"agent": "..."} or {"to": "+1..."}
    POST /softphone/api/hangup
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import APIStatusError, ClutchCallError, InvalidArgumentError
from ._state import MAGIC_NUMBERS
from .agents import AgentRegistry

if TYPE_CHECKING:
    from .. import AsyncCall, AsyncVoice

#: Seconds a page token stays valid.
SESSION_TTL = 3600.0
#: Page sessions kept at once; creating one more forgets the oldest.
MAX_SESSIONS = 64
#: Largest JSON body accepted from the page.
MAX_BODY = 4096
#: Caller id and trunk of calls the softphone places.
SOFTPHONE_FROM = "+15550100100"
SOFTPHONE_TRUNK = "softphone"

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
AGENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
CALL_SID = re.compile(r"CA[0-9a-f]{32}")
#: The files of clutchcall/web the engine serves (never node_modules or tooling).
STATIC_FILE = re.compile(r"(?:[a-z][a-z0-9-]*)\.(?:js|css)")
NOT_SERVED = frozenset({"eslint.config.js"})
CONTENT_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass
class _PageSession:
    call_sid: str
    expires_at: float


def _web_file(name: str) -> bytes | None:
    """A file of the browser module, or None if it is not one the engine serves."""
    if name in NOT_SERVED or (name != "softphone.html" and not STATIC_FILE.fullmatch(name)):
        return None
    resource = resources.files("clutchcall").joinpath("web", name)
    return resource.read_bytes() if resource.is_file() else None


def _call_json(call: AsyncCall) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return None if value is None else str(value.isoformat())

    return {
        "sid": call.sid,
        "status": str(call.status),
        "to": call.to,
        "from": call.from_,
        "agent": call.agent,
        "startedAt": iso(call.started_at),
        "answeredAt": iso(call.answered_at),
        "endedAt": iso(call.ended_at),
        "endReason": None if call.end_reason is None else str(call.end_reason),
        "ended": call.ended,
    }


class SoftphoneHost(Protocol):
    """What the softphone needs from the engine that serves it (an :class:`Engine`)."""

    host: str
    port: int
    agents: AgentRegistry

    @property
    def relay_webtransport_url(self) -> str | None: ...

    @property
    def relay_cert_sha256(self) -> str: ...

    def async_voice(self, **options: Any) -> AsyncVoice: ...


class Softphone:
    """The softphone page's backend, bound to one running engine."""

    def __init__(self, engine: SoftphoneHost) -> None:
        self._engine = engine
        self._sessions: OrderedDict[str, _PageSession] = OrderedDict()

    # -- routes ------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        api = "/softphone/api"
        return [
            Route("/softphone", self._page, methods=["GET"]),
            Route(api + "/config", self._json(self._config), methods=["GET"]),
            Route(api + "/sessions", self._json(self._create), methods=["POST"]),
            Route(api + "/call", self._json(self._call), methods=["GET"]),
            Route(api + "/bridge-token", self._json(self._bridge_token), methods=["POST"]),
            Route(api + "/transfer", self._json(self._transfer), methods=["POST"]),
            Route(api + "/hangup", self._json(self._hangup), methods=["POST"]),
            Route("/softphone/{name:str}", self._static, methods=["GET"]),
        ]

    async def _page(self, request: Request) -> Response:
        return self._file("softphone.html", "text/html; charset=utf-8")

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        response = self._file(name, CONTENT_TYPES.get(name.rsplit(".", 1)[-1], "text/plain"))
        # Public files: a page on another origin may import the modules from here
        # (module scripts and worklets are fetched in CORS mode).
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    @staticmethod
    def _file(name: str, media_type: str) -> Response:
        body = _web_file(name)
        if body is None:
            return JSONResponse({"code": "not_found", "detail": f"no file {name!r}"}, 404)
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})

    def _json(
        self, handler: Callable[[Request], Awaitable[dict[str, Any]]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                self._check_origin(request)
                return JSONResponse(await handler(request), headers={"Cache-Control": "no-store"})
            except _Refused as exc:
                return JSONResponse({"code": exc.code, "detail": exc.detail}, exc.status)
            except APIStatusError as exc:
                status = exc.status_code if exc.status_code in (404, 409, 422) else 502
                return JSONResponse({"code": exc.code or "error", "detail": exc.message}, status)
            except InvalidArgumentError as exc:
                return JSONResponse({"code": "validation_failed", "detail": str(exc)}, 422)
            except ClutchCallError as exc:
                return JSONResponse({"code": "engine_unreachable", "detail": str(exc)}, 502)

        return endpoint

    # -- checks ------------------------------------------------------------------------

    def _check_origin(self, request: Request) -> None:
        engine = self._engine
        host = request.headers.get("host", "")
        port = engine.port
        allowed = {
            f"{engine.host}:{port}",
            f"[{engine.host}]:{port}",
            f"localhost:{port}",
            f"127.0.0.1:{port}",
            f"[::1]:{port}",
        }
        if host not in allowed:
            raise _Refused(
                403, "forbidden_host", "the softphone only answers requests to its own host"
            )
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            raise _Refused(403, "cross_origin", "cross-origin requests are refused")
        if request.method == "POST":
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type != "application/json":
                raise _Refused(415, "unsupported_media_type", "send application/json")

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise _Refused(413, "payload_too_large", f"bodies are limited to {MAX_BODY} bytes")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _Refused(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _Refused(422, "validation_failed", "the body must be a JSON object")
        return body

    def _session(self, request: Request) -> _PageSession:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        session = self._sessions.get(token.strip()) if scheme.lower() == "bearer" else None
        if session is None or session.expires_at < time.monotonic():
            raise _Refused(401, "unauthorized", "missing, unknown or expired page token")
        return session

    @staticmethod
    def _string(body: dict[str, Any], name: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = body.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise _Refused(422, "validation_failed", f"{name} must be {what}")
        return value

    def _voice(self) -> AsyncVoice:
        # One short-lived client per request: the page's requests are few, and nothing
        # is left open between them.
        return self._engine.async_voice(max_retries=0, timeout=10)

    async def _bridge(self, voice: AsyncVoice, sid: str) -> dict[str, Any]:
        token = await voice.calls.create_bridge_token(sid, role="caller")
        return {
            "token": token.token,
            "expiresAt": token.expires_at.isoformat(),
            "relayUrl": self._engine.relay_webtransport_url,
            "certificateHash": self._engine.relay_cert_sha256,
        }

    # -- handlers ----------------------------------------------------------------------

    async def _config(self, request: Request) -> dict[str, Any]:
        return {
            "agents": sorted(self._engine.agents.names()),
            "magicNumbers": {number: callee.value for number, callee in MAGIC_NUMBERS.items()},
        }

    async def _create(self, request: Request) -> dict[str, Any]:
        body = await self._body(request)
        sid = self._string(body, "sid", CALL_SID, "a call sid (CA and 32 hex digits)")
        to = self._string(body, "to", E164, "an E.164 number like +15551234567")
        agent = self._string(body, "agent", AGENT_ID, "an agent id like echo")
        if (sid is None) == (to is None):
            raise _Refused(422, "validation_failed", "give exactly one of to or sid")
        async with self._voice() as voice:
            if sid is not None:
                call = await voice.calls.get(sid)
                if agent is not None:
                    await voice.agents.attach(sid, agent)
                    call = await voice.calls.get(sid)
            else:
                assert to is not None
                call = await voice.calls.originate(
                    to=to, from_=SOFTPHONE_FROM, trunk_id=SOFTPHONE_TRUNK, agent=agent
                )
            bridge = await self._bridge(voice, call.sid)
        page_token = secrets.token_urlsafe(24)
        self._sessions[page_token] = _PageSession(call.sid, time.monotonic() + SESSION_TTL)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return {"pageToken": page_token, "call": _call_json(call), "bridge": bridge}

    async def _call(self, request: Request) -> dict[str, Any]:
        session = self._session(request)
        async with self._voice() as voice:
            return _call_json(await voice.calls.get(session.call_sid))

    async def _bridge_token(self, request: Request) -> dict[str, Any]:
        session = self._session(request)
        async with self._voice() as voice:
            return await self._bridge(voice, session.call_sid)

    async def _transfer(self, request: Request) -> dict[str, Any]:
        session = self._session(request)
        body = await self._body(request)
        to = self._string(body, "to", E164, "an E.164 number like +15551234567")
        agent = self._string(body, "agent", AGENT_ID, "an agent id like echo")
        if (to is None) == (agent is None):
            raise _Refused(422, "validation_failed", "give exactly one of to or agent")
        async with self._voice() as voice:
            return _call_json(await voice.calls.transfer(session.call_sid, to, agent=agent))

    async def _hangup(self, request: Request) -> dict[str, Any]:
        session = self._session(request)
        async with self._voice() as voice:
            return _call_json(await voice.calls.hangup(session.call_sid))


def softphone_routes(engine: SoftphoneHost) -> list[Route]:
    """The softphone's routes, for the engine's app."""
    return Softphone(engine).routes()
