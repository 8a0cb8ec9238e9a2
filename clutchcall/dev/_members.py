"""How the engine's own call members (simulated callees, agents) join the relay."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..bridge._client import MoqtClient
from . import tokens
from ._state import CallRecord, Store

#: Lifetime of the tokens the engine mints for its own members.
MEMBER_TOKEN_SECONDS = 3600.0


def member_client(
    store: Store,
    call: CallRecord,
    role: str,
    *,
    relay_url: Callable[[], str],
    cert_sha256: str,
    implementation: str,
    **options: Any,
) -> MoqtClient:
    """A MoqtClient for ``call`` in ``role``, holding tokens the engine mints itself."""
    secret = store.bridge_secret

    async def credentials(fresh: bool) -> tuple[str, str | None]:
        expires = time.time() + MEMBER_TOKEN_SECONDS
        claims = tokens.BridgeClaims(call.org_id, call.sid, role, expires)
        return relay_url(), tokens.mint(secret, claims)

    return MoqtClient(
        credentials=credentials,
        cert_sha256=cert_sha256,
        implementation=implementation,
        backoff=(0.05, 0.5),
        **options,
    )
