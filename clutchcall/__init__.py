"""ClutchCall: the Python SDK for the ClutchCall voice platform."""

from __future__ import annotations

__version__ = "0.1.0"

from clutchcall_api.models import AudioCodec, CallStatus, EndReason

from ._control._async_client import AsyncAgents, AsyncCall, AsyncCalls, AsyncVoice
from ._control._base import BridgeToken
from ._control._sync_client import Agents, Call, Calls, Voice
from .bridge import (
    AsyncAudioBridge,
    AsyncAudioBridges,
    AudioBridge,
    AudioBridges,
    BridgeAuthError,
    BridgeClosedError,
    BridgeConnectError,
    BridgeError,
)
from .errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClutchCallError,
    ConfigurationError,
    ConflictError,
    FieldError,
    InternalServerError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "Agents",
    "AsyncAgents",
    "AsyncAudioBridge",
    "AsyncAudioBridges",
    "AsyncCall",
    "AsyncCalls",
    "AsyncVoice",
    "AudioBridge",
    "AudioBridges",
    "AudioCodec",
    "AuthenticationError",
    "BadRequestError",
    "BridgeAuthError",
    "BridgeClosedError",
    "BridgeConnectError",
    "BridgeError",
    "BridgeToken",
    "Call",
    "CallStatus",
    "Calls",
    "ClutchCallError",
    "ConfigurationError",
    "ConflictError",
    "EndReason",
    "FieldError",
    "InternalServerError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "UnprocessableEntityError",
    "Voice",
    "__version__",
]
