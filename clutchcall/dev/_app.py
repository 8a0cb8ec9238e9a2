"""The dev engine's control plane: an ASGI app implementing ``openapi.yaml`` in memory.

Bounds against hostile clients: request bodies are limited to :data:`MAX_BODY`
bytes (413), a connection must deliver each whole request within
:data:`REQUEST_READ_TIMEOUT` seconds of opening or of its previous response (else
it is closed, see :class:`GuardedH11Protocol`), and the store and request log
keep a bounded number of entries (see ``_state`` and ``_faults``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import h11
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..moqt import VoiceRole
from ._faults import Faults, RequestRecord
from ._state import ApiKey, CallRecord, StateError, Store, StoreFull, iso

T = TypeVar("T")

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
TRUNK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
AGENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
#: How a validation message describes each of the patterns above.
_DESCRIBED = {
    E164: "an E.164 number like +15551234567",
    TRUNK_ID: "1..64 of A-Z a-z 0-9 _ -",
    AGENT_ID: "an agent id like echo",
}
CALL_SID = re.compile(r"CA[0-9a-f]{32}")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
MAX_BODY = 64 * 1024
#: Seconds a connection has to deliver a whole request (head and body), counted from
#: when it opened or from its previous response. Idle keep-alive connections are closed
#: after the same time.
REQUEST_READ_TIMEOUT = 5.0
#: Retry-After (seconds) sent with a 503 when the store is full of live calls.
STORE_FULL_RETRY_AFTER = 5
REQUEST_ID_KEY = "clutchcall.request_id"

PROBLEM_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
FAULT_CODES = {429: "rate_limited", 503: "unavailable", 500: "internal_error"}


class Problem(Exception):
    """Raised by handlers; rendered as an RFC 9457 problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(problem: Problem, request_id: str, instance: str) -> Response:
    body: dict[str, Any] = {
        "type": f"https://docs.clutchcall.dev/errors/{problem.code}",
        "title": PROBLEM_TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "code": problem.code,
        "detail": problem.detail,
        "instance": instance,
        "requestId": request_id,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return Response(
        json.dumps(body),
        status_code=problem.status,
        media_type="application/problem+json",
        headers=problem.headers,
    )


class _Invalid:
    """Collects per-field validation failures for one request body."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def string(
        self,
        body: dict[str, Any],
        name: str,
        pattern: re.Pattern[str],
        *,
        required: bool,
    ) -> str | None:
        what = _DESCRIBED[pattern]
        if name not in body:
            if required:
                self.add(name, "is required")
            return None
        value = body[name]
        if not isinstance(value, str):
            self.add(name, f"must be a string ({what})")
            return None
        if not pattern.fullmatch(value):
            self.add(name, f"must be {what}")
            return None
        return value

    def check(self) -> None:
        if self.errors:
            summary = "; ".join(f"{e['field']} {e['message']}" for e in self.errors)
            raise Problem(422, "validation_failed", summary, errors=self.errors)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise Problem(415, "unsupported_media_type", "send the request body as application/json")
    raw = b""
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise Problem(
                    413, "payload_too_large", f"request bodies are limited to {MAX_BODY} bytes"
                )
    except ClientDisconnect:
        # The connection was closed (by the client, or for sending too slowly): nobody
        # will read an answer, but this is not a crash of the engine either.
        raise Problem(400, "bad_request", "the request body did not arrive") from None
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Problem(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Problem(
            422,
            "validation_failed",
            "the request body must be a JSON object",
            errors=[{"field": "", "message": "must be an object"}],
        )
    return body


class ControlPlane:
    """Request handling, bound to one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- common checks ----------------------------------------------------------
    def authenticate(self, request: Request, scope: str) -> ApiKey:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        key = self.store.lookup_key(token.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            raise Problem(
                401,
                "unauthorized",
                "missing or unknown API key: send Authorization: Bearer <api key>",
                headers={"WWW-Authenticate": 'Bearer realm="clutchcall"'},
            )
        if request.path_params.get("org_id") != key.org_id:
            raise Problem(403, "org_mismatch", "this API key belongs to another org")
        if scope not in key.scopes:
            raise Problem(403, "insufficient_scope", f"this API key lacks the {scope} scope")
        return key

    def find_call(self, request: Request, key: ApiKey) -> CallRecord:
        sid = request.path_params.get("sid", "")
        call = self.store.get(key.org_id, sid) if CALL_SID.fullmatch(sid) else None
        if call is None:
            raise Problem(404, "call_not_found", f"no call {sid!r} in this org")
        return call

    async def call_and_body(
        self, request: Request, scope: str
    ) -> tuple[CallRecord, dict[str, Any]]:
        """The call a request names (its key must have ``scope``) and the request's JSON
        body, checked in that order."""
        key = self.authenticate(request, scope)
        call = self.find_call(request, key)
        return call, await _json_body(request)

    def call_response(self, call: CallRecord, status: int = 200, **headers: str) -> Response:
        return JSONResponse(call.to_json(self.store.clock()), status_code=status, headers=headers)

    def require_agent(self, agent: str) -> None:
        if agent not in self.store.agents:
            raise Problem(404, "agent_not_found", f"no agent {agent!r}")

    # -- operations ---------------------------------------------------------------
    async def originate(self, request: Request) -> Response:
        key = self.authenticate(request, "voice:calls")
        idem = request.headers.get("idempotency-key")
        if idem is not None and not IDEMPOTENCY_KEY.fullmatch(idem):
            raise Problem(
                400, "bad_request", "Idempotency-Key must be 1..255 printable ASCII characters"
            )
        body = await _json_body(request)
        v = _Invalid()
        to = v.string(body, "to", E164, required=True)
        from_ = v.string(body, "from", E164, required=True)
        trunk = v.string(body, "trunkId", TRUNK_ID, required=True)
        agent = v.string(body, "agent", AGENT_ID, required=False)
        ring: int | None = None
        if "ringTimeoutSec" in body:
            raw = body["ringTimeoutSec"]
            integral = isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer())
            if isinstance(raw, bool) or not integral:
                v.add("ringTimeoutSec", "must be an integer")
            else:
                ring = int(raw)
        v.check()
        assert to is not None and from_ is not None and trunk is not None
        if agent is not None:
            self.require_agent(agent)
        fingerprint = hashlib.sha256(
            json.dumps(
                [to, from_, trunk, agent, ring], separators=(",", ":"), ensure_ascii=True
            ).encode()
        ).hexdigest()
        try:
            call, replayed = self.store.originate(
                org_id=key.org_id,
                to=to,
                from_=from_,
                trunk_id=trunk,
                agent=agent,
                ring_timeout=ring,
                idempotency_key=idem,
                fingerprint=fingerprint,
            )
        except StateError as exc:
            raise Problem(409, exc.code, exc.detail) from None
        except StoreFull as exc:
            raise Problem(
                503,
                "unavailable",
                f"{exc}; hang up some calls",
                headers={"Retry-After": str(STORE_FULL_RETRY_AFTER)},
            ) from None
        headers = {"Location": f"/v1/orgs/{key.org_id}/calls/{call.sid}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return self.call_response(call, 201, **headers)

    async def get(self, request: Request) -> Response:
        key = self.authenticate(request, "voice:calls")
        return self.call_response(self.find_call(request, key))

    async def transfer(self, request: Request) -> Response:
        call, body = await self.call_and_body(request, "voice:calls")
        v = _Invalid()
        to = v.string(body, "to", E164, required=False)
        agent = v.string(body, "agent", AGENT_ID, required=False)
        if ("to" in body) == ("agent" in body):
            v.add("to", "give exactly one of to or agent")
        v.check()
        if agent is not None:
            self.require_agent(agent)
        self._apply(lambda: self.store.transfer(call, to=to, agent=agent))
        return self.call_response(call)

    async def hangup(self, request: Request) -> Response:
        key = self.authenticate(request, "voice:calls")
        call = self.find_call(request, key)
        self._apply(lambda: self.store.hangup(call))
        return self.call_response(call)

    async def attach_agent(self, request: Request) -> Response:
        call, body = await self.call_and_body(request, "voice:agents")
        v = _Invalid()
        agent = v.string(body, "agent", AGENT_ID, required=True)
        v.check()
        assert agent is not None
        self.require_agent(agent)
        self._apply(lambda: self.store.attach_agent(call, agent))
        return self.call_response(call)

    async def create_bridge_token(self, request: Request) -> Response:
        call, body = await self.call_and_body(request, "voice:bridge")
        try:
            role = VoiceRole(str(body.get("role")))
        except ValueError:
            raise Problem(
                422,
                "validation_failed",
                "role must be 'server' or 'caller'",
                errors=[{"field": "role", "message": "must be 'server' or 'caller'"}],
            ) from None
        grant = self._apply(lambda: self.store.mint_bridge_token(call, role))
        return JSONResponse(
            {
                "token": grant.token,
                "role": role,
                "callSid": call.sid,
                "expiresAt": iso(grant.expires_at),
                "relayUrl": self.store.relay_url,
            },
            status_code=201,
        )

    @staticmethod
    def _apply(action: Callable[[], T]) -> T:
        try:
            return action()
        except StateError as exc:
            raise Problem(409, exc.code, exc.detail) from None


class _Middleware:
    """Request ids, problem rendering for every error, injected faults and the request log."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(8)
        scope[REQUEST_ID_KEY] = request_id
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        idempotency_key = headers.get("idempotency-key")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Logged before the response leaves, so a client never sees an answer
                # to a request the log does not show yet.
                self.faults.record(RequestRecord(method, path, idempotency_key, message["status"]))
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        fault = self.faults.take(method, path)
        if fault is not None and fault.delay:
            await anyio.sleep(fault.delay)
        try:
            if fault is not None and fault.status is not None and not fault.after_processing:
                raise _fault_problem(fault.status, fault.retry_after)
            if fault is not None and fault.status is not None:
                # Serve the request, drop its response, answer with the fault instead.
                await self.app(scope, receive, _discard)
                raise _fault_problem(fault.status, fault.retry_after)
            await self.app(scope, receive, send_with_id)
        except Problem as problem:
            await problem_response(problem, request_id, path)(scope, receive, send_with_id)


async def _discard(message: Message) -> None:
    return None


def _fault_problem(status: int, retry_after: float | None) -> Problem:
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return Problem(
        status,
        FAULT_CODES.get(status, "injected_fault"),
        "injected by the dev engine for testing",
        headers=headers,
    )


def _request_id(request: Request) -> str:
    return str(request.scope.get(REQUEST_ID_KEY, ""))


async def _handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, _request_id(request), request.url.path)


async def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    detail = {
        404: f"no such endpoint: {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    problem = Problem(exc.status_code, code, detail, headers=dict(exc.headers or {}))
    return problem_response(problem, _request_id(request), request.url.path)


async def _handle_crash(request: Request, exc: Exception) -> Response:
    problem = Problem(500, "internal_error", "the dev engine failed to handle this request")
    return problem_response(problem, _request_id(request), request.url.path)


def build_app(store: Store, faults: Faults, extra_routes: Sequence[Route] = ()) -> ASGIApp:
    """The control plane; ``extra_routes`` adds dev-only endpoints (not in openapi.yaml)."""
    plane = ControlPlane(store)
    base = "/v1/orgs/{org_id}/calls"

    def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, endpoint, methods=[method])

    app = Starlette(
        routes=[
            route(base, plane.originate, "POST"),
            route(base + "/{sid}", plane.get, "GET"),
            route(base + "/{sid}/transfer", plane.transfer, "POST"),
            route(base + "/{sid}/hangup", plane.hangup, "POST"),
            route(base + "/{sid}/agent", plane.attach_agent, "PUT"),
            route(base + "/{sid}/bridge-tokens", plane.create_bridge_token, "POST"),
            *extra_routes,
        ],
        exception_handlers={
            Problem: _handle_problem,
            HTTPException: _handle_http,
            Exception: _handle_crash,
        },
    )
    return _Middleware(app, faults)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on reading each request.

    A connection that opens and stays silent, sends half a request head, or
    trickles its head or body, holds a socket and (with a body) a task for as long
    as it likes in plain uvicorn: its keep-alive timer only runs between requests
    and any byte received cancels it. Here each request must be complete within
    :data:`REQUEST_READ_TIMEOUT` seconds of the connection opening or of the
    previous response; the deadline does not move when bytes arrive. Past it the
    connection is closed (a handler waiting for the body sees a disconnect). Once
    a request is complete, the time the engine takes to answer is not limited.
    """

    read_timeout = REQUEST_READ_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_read_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._waiting_for_request():
            self._disarm_read_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_read_deadline()
            if not self._waiting_for_request():  # a pipelined request, already read
                self._disarm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def _waiting_for_request(self) -> bool:
        """True while the client has yet to send (the rest of) a request."""
        return self.conn.their_state in (h11.IDLE, h11.SEND_BODY)

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self._waiting_for_request() and not self.transport.is_closing():
            self.transport.close()
