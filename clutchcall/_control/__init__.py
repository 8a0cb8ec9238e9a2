"""Control-plane facade over the generated ``clutchcall_api`` client.

``_async_client`` is written by hand; ``_sync_client`` (and ``_sync_transport``)
are generated from their async originals by ``codegen/generate.py``. The public
names are exported from :mod:`clutchcall`.
"""

from ._async_client import AsyncAgents, AsyncCall, AsyncCalls, AsyncVoice
from ._base import BridgeToken
from ._raw import APIResponse
from ._sync_client import Agents, Call, Calls, Voice

__all__ = [
    "APIResponse",
    "Agents",
    "AsyncAgents",
    "AsyncCall",
    "AsyncCalls",
    "AsyncVoice",
    "BridgeToken",
    "Call",
    "Calls",
    "Voice",
]
