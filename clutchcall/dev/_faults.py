"""Failures the dev engine can be told to produce, so retry paths can be tested for real."""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass

#: Requests the log keeps: the newest ones; older entries are dropped as new ones come.
MAX_REQUEST_LOG = 10_000


@dataclass
class Fault:
    """Answer the next ``times`` matching requests with ``status`` instead of serving them.

    ``after_processing=True`` serves the request first and then answers with the
    fault, like a response lost on the way back. ``delay`` seconds pass first either
    way (with ``status=None`` the request is only delayed).
    """

    status: int | None = 503
    times: int = 1
    method: str | None = None
    path: str | None = None  # a regular expression searched in the path
    retry_after: float | None = None
    delay: float = 0.0
    after_processing: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    idempotency_key: str | None
    status: int


class Faults:
    """Queue of pending faults plus a log of the requests the engine served (the
    newest ``max_log`` of them, :data:`MAX_REQUEST_LOG` by default)."""

    def __init__(self, max_log: int = MAX_REQUEST_LOG) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []
        self._log: deque[RequestRecord] = deque(maxlen=max_log)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._pending.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            self._log.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._pending:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._pending.remove(fault)
                    return fault
        return None

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._log.append(entry)

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Requests served so far (the newest :data:`MAX_REQUEST_LOG`), optionally
        filtered like :class:`Fault`."""
        probe = Fault(method=method, path=path)
        with self._lock:
            return [r for r in self._log if probe.matches(r.method, r.path)]
