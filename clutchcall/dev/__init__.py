"""The local dev engine: the ClutchCall control plane (and relay) on one machine.

It needs the ``dev`` extra (an ASGI app served by uvicorn, and agents that decode
audio): ``pip install 'clutchcall[dev]'``; without it, importing this package raises
:class:`~clutchcall.errors.MissingExtraError` (an ``ImportError``) saying so.
"""

from .._extras import raise_missing_extra

try:
    import av  # noqa: F401
    import numpy  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ModuleNotFoundError as exc:
    raise_missing_extra(exc, feature="clutchcall.dev (the dev engine)", extra="dev")

from ._faults import Fault, RequestRecord
from ._state import BUILTIN_AGENTS, MAGIC_NUMBERS, Callee
from .engine import DEFAULT_API_KEY, DEFAULT_ORG_ID, Engine, EngineError

__all__ = [
    "BUILTIN_AGENTS",
    "DEFAULT_API_KEY",
    "DEFAULT_ORG_ID",
    "MAGIC_NUMBERS",
    "Callee",
    "Engine",
    "EngineError",
    "Fault",
    "RequestRecord",
]
