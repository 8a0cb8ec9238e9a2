"""The embedded dev engine: the control plane (and, later, the MoQT relay) on localhost."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from ._app import build_app
from ._faults import Fault, Faults, RequestRecord
from ._state import SCOPES, Store

if TYPE_CHECKING:
    from .._control._async_client import AsyncVoice
    from .._control._sync_client import Voice

DEFAULT_ORG_ID = "org_dev"
DEFAULT_API_KEY = "cc_dev_local_key"


class EngineError(RuntimeError):
    """The dev engine could not start (for example, its port is taken)."""


class Engine:
    """Run the dev engine in a background thread, on free loopback ports by default.

    ::

        with Engine(time_scale=0.05) as engine:
            voice = engine.voice()
            call = voice.calls.originate(to="+15551234567", from_="+15558675309",
                                         trunk_id="trunk_main")

    ``time_scale`` multiplies every simulated delay (ringing, answering...).
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
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        self.host = host
        self._requested_port = port
        self.api_key = api_key
        self.org_id = org_id
        self.store = Store(time_scale=time_scale, clock=clock)
        self.store.add_key(org_id, SCOPES, key=api_key)
        self.faults = Faults()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0

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
        config = uvicorn.Config(
            build_app(self.store, self.faults),
            log_level="error",
            access_log=False,
            lifespan="off",
            http="h11",
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
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what clients need --------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def relay_url(self) -> str | None:
        """URL of the MoQT relay; None while the engine has no relay."""
        return None

    def ready_info(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "relay_url": self.relay_url,
            "api_key": self.api_key,
            "org_id": self.org_id,
        }

    def voice(self, **options: Any) -> Voice:
        """A :class:`~clutchcall.Voice` client for this engine (close it when done)."""
        from .._control._sync_client import Voice

        return Voice(**{**self._client_options(), **options})

    def async_voice(self, **options: Any) -> AsyncVoice:
        """An :class:`~clutchcall.AsyncVoice` client for this engine."""
        from .._control._async_client import AsyncVoice

        return AsyncVoice(**{**self._client_options(), **options})

    def _client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "org_id": self.org_id,
        }
        if self.relay_url is not None:
            options["relay_url"] = self.relay_url
        return options

    # -- test helpers -------------------------------------------------------------
    def add_api_key(
        self, org_id: str | None = None, scopes: frozenset[str] | set[str] = SCOPES
    ) -> str:
        """Create another API key (for another org, or with fewer scopes)."""
        return self.store.add_key(org_id or self.org_id, frozenset(scopes))

    def inject_fault(self, fault: Fault) -> Fault:
        """Make upcoming requests fail (see :class:`Fault`)."""
        return self.faults.add(fault)

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Requests the engine has served, optionally filtered by method and path regex."""
        return self.faults.requests(method, path)

    def __repr__(self) -> str:
        return f"Engine(base_url={self.base_url!r}, org_id={self.org_id!r})"
