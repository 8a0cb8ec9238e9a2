"""The SDK's logging: ``CLUTCHCALL_LOG`` and one DEBUG line per HTTP exchange.

Every logger of the SDK sits under the ``clutchcall`` logger. The SDK adds no
handler of its own unless ``CLUTCHCALL_LOG=debug`` (or ``info``) is set when a
client is made: then one handler writing to stderr goes on the ``clutchcall``
logger, once per process, and that logger's level is set.

The line logged for each HTTP exchange names the method, the path, the status,
the time taken and the server's request id; never a header, so never the API key
(a request id that echoes the key is redacted).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import httpx

from ..errors import ConfigurationError

ENV_LOG = "CLUTCHCALL_LOG"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}

logger = logging.getLogger("clutchcall")
http_logger = logging.getLogger("clutchcall.http")

_lock = threading.Lock()
_handler: logging.Handler | None = None


def setup_logging() -> None:
    """Apply ``CLUTCHCALL_LOG``: a stderr handler on ``clutchcall`` (once) and its level."""
    global _handler
    value = os.environ.get(ENV_LOG, "").strip().lower()
    if not value:
        return
    level = LEVELS.get(value)
    if level is None:
        choices = " or ".join(repr(name) for name in LEVELS)
        raise ConfigurationError(f"{ENV_LOG} must be {choices}, got {value!r}")
    with _lock:
        if _handler is None:
            _handler = logging.StreamHandler()
            _handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            logger.addHandler(_handler)
        logger.setLevel(level)


def log_exchange(
    request: httpx.Request,
    response: httpx.Response | None,
    started: float,
    *,
    outcome: str | None = None,
) -> None:
    """One DEBUG line for one attempt of a request (``started``: its ``time.monotonic()``)."""
    if not http_logger.isEnabledFor(logging.DEBUG):
        return
    elapsed_ms = (time.monotonic() - started) * 1000
    line = f"{request.method} {request.url.path}"
    if response is not None:
        line += f" -> {response.status_code}"
    line += f" in {elapsed_ms:.1f} ms"
    if outcome:
        line += f", {outcome}"
    if response is not None:
        request_id = response.headers.get("x-request-id")
        if request_id:
            line += f" (request id {_redact(request_id[:100], request)})"
    http_logger.debug("HTTP %s", line)


def _redact(text: str, request: httpx.Request) -> str:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return text.replace(token, "<redacted>") if token else text
