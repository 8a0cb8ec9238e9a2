"""Client settings, from arguments or environment variables."""

from __future__ import annotations

import math
import os
import re
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigurationError

DEFAULT_BASE_URL = "https://engine.clutchcall.dev"
DEFAULT_RELAY_HOST = "relay.clutchcall.dev"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2
#: Longest response body the client reads; the API's bodies are a few hundred bytes.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024

ENV_BASE_URL = "CLUTCHCALL_BASE_URL"
ENV_API_KEY = "CLUTCHCALL_CREDENTIALS"
ENV_ORG_ID = "CLUTCHCALL_ORG_ID"
ENV_RELAY_URL = "CLUTCHCALL_RELAY_URL"

_ORG_ID = re.compile(r"org_[A-Za-z0-9]{1,32}")

Verify = bool | str | ssl.SSLContext


@dataclass(frozen=True)
class ClientConfig:
    """Resolved settings of one client. The API key never appears in ``repr``."""

    base_url: str
    api_key: str = field(repr=False)
    org_id: str
    relay_host: str = DEFAULT_RELAY_HOST
    relay_url: str | None = None
    verify: Verify = True
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    #: Audio bridges to one relay share a QUIC connection (per role and event loop).
    share_bridge_connections: bool = True


def is_positive_seconds(value: object) -> bool:
    """A usable timeout: a finite number of seconds above zero (not a bool)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def is_retry_count(value: object) -> bool:
    """A usable ``max_retries``: an integer >= 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _pick(value: str | None, env: str) -> str | None:
    if value is not None:
        return value
    found = os.environ.get(env)
    return found if found else None


def resolve_config(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    org_id: str | None = None,
    relay_host: str | None = None,
    relay_url: str | None = None,
    verify: Verify = True,
    timeout: float | None = None,
    max_retries: int | None = None,
    share_bridge_connections: bool = True,
    max_response_bytes: int | None = None,
) -> ClientConfig:
    """Merge explicit arguments with ``CLUTCHCALL_*`` environment variables and check them."""
    url = _pick(base_url, ENV_BASE_URL) or DEFAULT_BASE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"base_url must be an http:// or https:// URL with a host, got {url!r}"
        )
    key = _pick(api_key, ENV_API_KEY)
    if not key:
        raise ConfigurationError(
            f"no API key: pass api_key=... or set the {ENV_API_KEY} environment variable"
        )
    if any(c.isspace() for c in key) or not key.isprintable():
        raise ConfigurationError("the API key contains whitespace or control characters")
    org = _pick(org_id, ENV_ORG_ID)
    if not org:
        raise ConfigurationError(
            f"no org id: pass org_id=... or set the {ENV_ORG_ID} environment variable"
        )
    if not _ORG_ID.fullmatch(org):
        raise ConfigurationError(f"org_id must look like 'org_abc123', got {org!r}")
    relay = _pick(relay_url, ENV_RELAY_URL)
    if relay is not None and urlsplit(relay).scheme not in ("moqt", "https"):
        raise ConfigurationError(
            f"relay_url must be a moqt://host:port or https://host:port/path URL, got {relay!r}"
        )
    resolved_timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if not is_positive_seconds(resolved_timeout):
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not isinstance(share_bridge_connections, bool):
        raise ConfigurationError(
            f"share_bridge_connections must be True or False, got {share_bridge_connections!r}"
        )
    retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
    if not is_retry_count(retries):
        raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    max_bytes = DEFAULT_MAX_RESPONSE_BYTES if max_response_bytes is None else max_response_bytes
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigurationError(
            f"max_response_bytes must be an integer >= 1, got {max_response_bytes!r}"
        )
    return ClientConfig(
        base_url=url.rstrip("/"),
        api_key=key,
        org_id=org,
        relay_host=relay_host or DEFAULT_RELAY_HOST,
        relay_url=relay,
        verify=verify,
        timeout=float(resolved_timeout),
        max_retries=retries,
        max_response_bytes=max_bytes,
        share_bridge_connections=share_bridge_connections,
    )
