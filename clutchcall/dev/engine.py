"""The embedded dev engine: the control plane and the MoQT relay on localhost."""

from __future__ import annotations

import contextlib
import datetime
import hmac
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import uvicorn
from anyio.from_thread import BlockingPortal
from cryptography import x509
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..moqnet import AudioFrame
from ..moqt import VoiceRole
from ..transport import generate_self_signed
from ..transport.certs import SelfSignedCertificate, fingerprint_sha256
from ._app import GuardedH11Protocol, Problem, build_app, problem_response
from ._faults import Fault, Faults, RequestRecord
from ._members import MemberRelay
from ._state import SCOPES, Store
from .agent_host import AGENT_IMPLEMENTATION, AgentHost, AgentRecord
from .agents import BUILTIN_AGENT_CLASSES, Agent, AgentRegistry
from .callees import CALLEE_IMPLEMENTATION, Callees
from .relay import HANDSHAKE_TIMEOUT, SETUP_TIMEOUT, Relay, RelayStats
from .softphone import softphone_routes

if TYPE_CHECKING:
    from .. import AsyncVoice, Voice

DEFAULT_ORG_ID = "org_dev"
DEFAULT_API_KEY = "cc_dev_local_key"

logger = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The dev engine could not start (for example, its port is taken), or is not
    running."""


class EngineFailed(EngineError):
    """A part of the running engine died (the relay's serving task, say): the engine
    no longer works, and every use of it raises this until :meth:`Engine.stop`."""


def _load_or_create_certificate(directory: Path) -> SelfSignedCertificate:
    """The certificate kept in ``directory``; a new one (written there) if it has none
    or the one it has expires within a day."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            cert = None
        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        if cert is not None and cert.not_valid_after_utc > soon:
            return SelfSignedCertificate(cert_pem, key_pem, fingerprint_sha256(cert))
    certificate = generate_self_signed()
    directory.mkdir(parents=True, exist_ok=True)
    certificate.write(directory)
    return certificate


class Engine:
    """Run the dev engine in a background thread, on free loopback ports by default.

    ::

        with Engine(time_scale=0.05) as engine:
            voice = engine.voice()
            call = voice.calls.originate(to="+15551234567", from_="+15558675309",
                                         trunk_id="trunk_main")

    ``time_scale`` multiplies every simulated delay (ringing, answering...).

    The MoQT relay listens on ``relay_port`` (UDP, 0: a free one) of the same host
    with a self-signed certificate; :meth:`voice` / :meth:`async_voice` clients
    trust it through ``verify=engine.relay_ca_file``. The relay and the simulated
    callees run on an event loop in a second background thread.

    ``cert_dir``: keep the relay's certificate there (``cert.pem``, ``key.pem``),
    reusing the pair found in it, so that an engine restarted on the same
    ``relay_port`` is trusted by clients that trusted the previous one. Without
    it, each engine makes a fresh certificate in a temporary directory.

    ``callee_markers`` (dev only, for tests of frame order and loss): answering
    callees send numbered marker frames instead of audio; also settable on a
    running engine (:attr:`callee_markers`), for calls whose callee joins later.

    ``relay_handshake_timeout``: the relay drops a QUIC connection that has no
    session this many seconds after its first packet. ``relay_setup_timeout``: it
    closes a session that has not completed MoQT SETUP this long after its
    handshake.

    If a part of the running engine dies (the relay's serving task, the simulated
    callees, the agent host or the control plane), the engine is *failed*:
    :attr:`failure` says why, its methods raise :class:`EngineFailed`, and the
    control plane answers 503 to bridge-token requests, until :meth:`stop`.
    ``POST /_dev/relay/fail`` (dev only, with the API key as bearer token) closes
    the relay's UDP socket under it, as a fatal socket error would: a fault for
    testing that a dead relay is noticed.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        api_key: str = DEFAULT_API_KEY,
        org_id: str = DEFAULT_ORG_ID,
        clock: Callable[[], float] = time.monotonic,
        relay_port: int = 0,
        agents: Sequence[type[Agent]] = (),
        cert_dir: str | os.PathLike[str] | None = None,
        relay_handshake_timeout: float = HANDSHAKE_TIMEOUT,
        relay_setup_timeout: float = SETUP_TIMEOUT,
        callee_markers: bool = False,
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        self.host = host
        self._requested_port = port
        self.api_key = api_key
        self.org_id = org_id
        self.store = Store(time_scale=time_scale, clock=clock)
        self.store.add_key(org_id, SCOPES, key=api_key)
        self.agents = AgentRegistry([*BUILTIN_AGENT_CLASSES, *agents])
        self.store.agents = self.agents.names()
        self.faults = Faults()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0
        self.relay_port = relay_port
        self._kept_cert_dir = None if cert_dir is None else Path(cert_dir)
        self._certificate = (
            generate_self_signed()
            if self._kept_cert_dir is None
            else _load_or_create_certificate(self._kept_cert_dir)
        )
        self._cert_dir: Path | None = None
        self._portal_cm: contextlib.AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._relay: Relay | None = None
        self._relay_task: Future[None] | None = None
        self._callees: Callees | None = None
        self._callees_task: Future[None] | None = None
        self._agent_host: AgentHost | None = None
        self._agent_host_task: Future[None] | None = None
        #: Answering callees send numbered marker frames, not audio (dev only).
        self.callee_markers = callee_markers
        self._relay_handshake_timeout = relay_handshake_timeout
        self._relay_setup_timeout = relay_setup_timeout
        self._stopping = False
        self._failure_lock = threading.Lock()
        self._failure: str | None = None
        self._failure_cause: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> Engine:
        if self._thread is not None:
            raise EngineError("the engine is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every response waits out a delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise EngineError(
                f"cannot listen on {self.host}:{self._requested_port}: {exc.strerror}"
            ) from None
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stopping = False
        self._failure = self._failure_cause = None
        try:
            self._start_media()
        except BaseException:
            self.stop()
            raise
        media_route = Route("/_dev/calls/{sid}/media", self._media_endpoint, methods=["GET"])
        fault_route = Route("/_dev/relay/fail", self._fail_relay_endpoint, methods=["POST"])
        config = uvicorn.Config(
            _FailedGuard(
                build_app(
                    self.store,
                    self.faults,
                    extra_routes=[media_route, fault_route, *softphone_routes(self)],
                ),
                lambda: self._failure,
            ),
            log_level="error",
            access_log=False,
            lifespan="off",
            http=GuardedH11Protocol,  # HTTP/1.1 with a deadline on reading requests
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="clutchcall-dev", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise EngineError("the dev engine did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None
        self._stop_media()
        self._failure = self._failure_cause = None

    def _start_media(self) -> None:
        if self._kept_cert_dir is not None:
            self._cert_dir = self._kept_cert_dir
        else:
            self._cert_dir = Path(tempfile.mkdtemp(prefix="clutchcall-relay-"))
            self._certificate.write(self._cert_dir)
        self._portal_cm = anyio.from_thread.start_blocking_portal(name="clutchcall-relay")
        self._portal = self._portal_cm.__enter__()
        self._relay = Relay(
            self.store,
            host=self.host,
            port=self.relay_port,
            certificate=self._certificate,
            background_implementation=CALLEE_IMPLEMENTATION,
            handshake_timeout=self._relay_handshake_timeout,
            setup_timeout=self._relay_setup_timeout,
        )
        relay = self._relay
        # The engine's own call members; only other clients make a call worth joining.
        members = (CALLEE_IMPLEMENTATION, AGENT_IMPLEMENTATION)
        member_relay = MemberRelay(
            url=lambda: relay.url,
            cert_sha256=self._certificate.fingerprint,
            others_present=lambda sid: relay.sessions(sid, exclude=members) > 0,
        )
        self._callees = Callees(
            self.store,
            member_relay,
            callers_present=lambda sid: (
                relay.sessions(sid, exclude=members, role=VoiceRole.CALLER) > 0
            ),
            markers=lambda: self.callee_markers,
        )
        self._relay.on_peer = self._callees.peer_joined
        self._agent_host = AgentHost(self.store, self.agents, member_relay)
        self.start_relay()
        self._callees_task, _ = self._portal.start_task(self._callees.run)
        self._watch(self._callees_task, "the simulated callees stopped")
        self._agent_host_task, _ = self._portal.start_task(self._agent_host.run)
        self._watch(self._agent_host_task, "the agent host stopped")

    def _stop_media(self) -> None:
        portal, relay = self._portal, self._relay
        if portal is not None:
            if self._callees_task is not None:
                self._callees_task.cancel()
            if self._agent_host_task is not None:
                self._agent_host_task.cancel()
            if relay is not None:
                portal.call(relay.stop)
        if self._portal_cm is not None:
            self._portal_cm.__exit__(None, None, None)
        if self._cert_dir is not None and self._cert_dir != self._kept_cert_dir:
            shutil.rmtree(self._cert_dir, ignore_errors=True)
        self._portal_cm = self._portal = self._relay = self._callees = None
        self._relay_task = self._callees_task = self._agent_host_task = None
        self._agent_host = None
        self._cert_dir = None
        self.store.relay_url = None

    # -- failure ------------------------------------------------------------------
    @property
    def failure(self) -> str | None:
        """Why the running engine stopped working (None while it works)."""
        thread = self._thread
        if self._failure is None and thread is not None and not thread.is_alive():
            self._fail("the control plane stopped", None)
        return self._failure

    def _check(self) -> None:
        """Raise :class:`EngineFailed` if a part of the engine has died."""
        failure = self.failure
        if failure is not None:
            raise EngineFailed(f"the dev engine failed: {failure}") from self._failure_cause

    def _fail(self, what: str, cause: BaseException | None) -> None:
        """Record the first failure (called from any thread)."""
        with self._failure_lock:
            if self._failure is not None or self._stopping:
                return
            self._failure_cause = cause
            self._failure = what if cause is None else f"{what}: {cause}"
        logger.error("the dev engine failed: %s", self._failure)

    def _watch(self, task: Future[None], what: str) -> None:
        """Fail the engine if ``task`` (a task that runs until stopped) raises."""

        def done(future: Future[None]) -> None:
            if future.cancelled():
                return
            exc = future.exception()
            if exc is not None:
                self._fail(what, exc)

        task.add_done_callback(done)

    def _fail_relay(self) -> None:
        """Close the relay's UDP socket under its serving task, as a fatal socket
        error would (a fault for testing that a dead relay is noticed)."""
        portal, relay = self._portal, self._relay
        server = None if relay is None else relay.server
        if portal is None or server is None:
            raise EngineError("the relay is not running")
        portal.call(server._close_socket_under_reader)

    async def _fail_relay_endpoint(self, request: Request) -> Response:
        expected = f"Bearer {self.api_key}".encode()
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return JSONResponse(
                {"code": "unauthorized", "detail": "send Authorization: Bearer <api key>"},
                status_code=401,
            )
        try:
            await anyio.to_thread.run_sync(self._fail_relay)
        except EngineError as exc:
            return JSONResponse({"code": "not_running", "detail": str(exc)}, status_code=409)
        return Response(status_code=204)

    # -- the relay ------------------------------------------------------------------
    def start_relay(self) -> None:
        """Start the relay (again), on the port it had before if it ran already."""
        if self._portal is None or self._relay is None:
            raise EngineError("the engine is not running")
        self._check()
        if self._relay_task is not None and not self._relay_task.done():
            raise EngineError("the relay is already running")
        try:
            self._relay_task, port = self._portal.start_task(self._relay.serve)
        except OSError as exc:
            raise EngineError(
                f"cannot listen on UDP {self.host}:{self._relay.port}: {exc.strerror}"
            ) from None
        self._watch(self._relay_task, "the relay stopped serving")
        self.relay_port = self._relay.port = port
        self.store.relay_url = self._relay.url

    def stop_relay(self) -> None:
        """Stop the relay (its sessions are closed); :meth:`start_relay` brings it back."""
        if self._portal is not None and self._relay is not None:
            self._portal.call(self._relay.stop)
            task, self._relay_task = self._relay_task, None
            if task is not None and self._failure is None:
                task.result(timeout=10)

    def relay_goaway(self, new_session_uri: str = "") -> int:
        """Send GOAWAY to every relay session; returns how many got it."""
        if self._portal is None or self._relay is None:
            raise EngineError("the engine is not running")
        self._check()
        relay = self._relay
        return self._portal.call(lambda: relay.goaway(new_session_uri))

    def relay_sessions(self, call_sid: str | None = None) -> int:
        """Authenticated relay sessions (of one call), simulated callees included."""
        self._check()
        if self._portal is None or self._relay is None:
            return 0
        relay = self._relay
        return self._portal.call(lambda: relay.sessions(call_sid))

    def relay_stats(self) -> RelayStats:
        """The relay's counters (sessions, backlog, transcoding, catalogs)."""
        self._check()
        if self._portal is None or self._relay is None:
            raise EngineError("the engine is not running")
        relay = self._relay
        return self._portal.call(relay.stats)

    def relay_client_sessions(self) -> list[frozenset[str]]:
        """The calls each relay session of a client carries, one set per session
        (the engine's own simulated callees and agents left out)."""
        self._check()
        if self._portal is None or self._relay is None:
            return []
        relay = self._relay
        members = (CALLEE_IMPLEMENTATION, AGENT_IMPLEMENTATION)
        return self._portal.call(lambda: relay.session_calls(exclude=members))

    # -- what the far end saw --------------------------------------------------------
    def media_counters(self, call_sid: str) -> dict[str, Any] | None:
        """Frames and bytes the simulated callee sent (uplink) and received (downlink).

        None until the callee has joined the call's media. The same JSON is served
        at ``GET /_dev/calls/{sid}/media`` (dev only, not part of the API).
        """
        self._check()
        return self._media_counters(call_sid)

    def _media_counters(self, call_sid: str) -> dict[str, Any] | None:
        media = self._callees.media(call_sid) if self._callees is not None else None
        return None if media is None else media.to_json()

    def register_agent(self, cls: type[Agent]) -> None:
        """Make another :class:`~clutchcall.dev.agents.Agent` attachable by its ``name``."""
        self._check()
        self.agents.register(cls)
        with self.store.lock:
            self.store.agents = self.agents.names()

    def agent_record(self, call_sid: str) -> AgentRecord | None:
        """The agents that have run on a call, with what each heard and said."""
        self._check()
        return None if self._agent_host is None else self._agent_host.record(call_sid)

    def received_downlink(self, call_sid: str) -> list[AudioFrame]:
        """The downlink frames the simulated callee received (the last few thousand)."""
        self._check()
        media = self._callees.media(call_sid) if self._callees is not None else None
        return [] if media is None else media.downlink_frames()

    async def _media_endpoint(self, request: Request) -> Response:
        counters = self._media_counters(request.path_params["sid"])
        if counters is None:
            return JSONResponse(
                {"code": "no_media", "detail": "no simulated callee has joined this call"},
                status_code=404,
            )
        return JSONResponse(counters)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what clients need --------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def relay_url(self) -> str | None:
        """Raw QUIC URL of the MoQT relay (``moqt://host:port``); None when stopped."""
        return self.store.relay_url

    @property
    def relay_webtransport_url(self) -> str | None:
        """WebTransport URL of the relay (``https://host:port/``); None when stopped."""
        return None if self._relay is None else self._relay.webtransport_url

    @property
    def softphone_url(self) -> str:
        """The browser softphone page (see :mod:`clutchcall.dev.softphone`)."""
        return f"{self.base_url}/softphone"

    @property
    def relay_ca_file(self) -> str | None:
        """PEM file of the relay's self-signed certificate: pass it as ``verify=``."""
        return None if self._cert_dir is None else str(self._cert_dir / "cert.pem")

    @property
    def relay_cert_sha256(self) -> str:
        """SHA-256 fingerprint of the relay's certificate (for ``cert_sha256=`` pinning)."""
        return self._certificate.fingerprint

    def ready_info(self) -> dict[str, Any]:
        """What a client needs: URLs, API key, org and the relay's CA file."""
        self._check()
        return {
            "base_url": self.base_url,
            "relay_url": self.relay_url,
            "api_key": self.api_key,
            "org_id": self.org_id,
            "relay_ca_file": self.relay_ca_file,
            "softphone_url": self.softphone_url,
        }

    def voice(self, **options: Any) -> Voice:
        """A :class:`~clutchcall.Voice` client for this engine (close it when done)."""
        from .. import Voice

        self._check()
        return Voice(**{**self._client_options(), **options})

    def async_voice(self, **options: Any) -> AsyncVoice:
        """An :class:`~clutchcall.AsyncVoice` client for this engine."""
        from .. import AsyncVoice

        self._check()
        return AsyncVoice(**{**self._client_options(), **options})

    def _client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "org_id": self.org_id,
        }
        if self.relay_url is not None:
            options["relay_url"] = self.relay_url
        if self.relay_ca_file is not None:
            options["verify"] = self.relay_ca_file
        return options

    # -- test helpers -------------------------------------------------------------
    def add_api_key(
        self, org_id: str | None = None, scopes: frozenset[str] | set[str] = SCOPES
    ) -> str:
        """Create another API key (for another org, or with fewer scopes)."""
        self._check()
        return self.store.add_key(org_id or self.org_id, frozenset(scopes))

    def inject_fault(self, fault: Fault) -> Fault:
        """Make upcoming requests fail (see :class:`Fault`)."""
        self._check()
        return self.faults.add(fault)

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Requests the engine has served, optionally filtered by method and path regex."""
        self._check()
        return self.faults.requests(method, path)

    def __repr__(self) -> str:
        return f"Engine(base_url={self.base_url!r}, org_id={self.org_id!r})"


class _FailedGuard:
    """Answers bridge-token requests with 503 once the engine has failed: a token for
    a relay that no longer serves would only send clients into a dead end."""

    def __init__(self, app: ASGIApp, failure: Callable[[], str | None]) -> None:
        self.app = app
        self.failure = failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        failure = self.failure() if scope["type"] == "http" else None
        if failure is None or not str(scope["path"]).endswith("/bridge-tokens"):
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(8)
        problem = Problem(
            503,
            "unavailable",
            f"the dev engine failed: {failure}",
            headers={"x-request-id": request_id},
        )
        await problem_response(problem, request_id, str(scope["path"]))(scope, receive, send)
