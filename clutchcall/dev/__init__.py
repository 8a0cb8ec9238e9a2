"""The local dev engine: the ClutchCall control plane (and relay) on one machine."""

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
