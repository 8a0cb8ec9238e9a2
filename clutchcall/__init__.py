"""ClutchCall: the Python SDK for the ClutchCall voice platform.

The names below are loaded on first use (PEP 562), so that importing one layer
(``import clutchcall.moqt``, the sans-IO protocol core) does not import the others
(the control plane's HTTP client, the QUIC transport, the event loops).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it (imported on first use).
_EXPORTS: dict[str, str] = {
    "AudioCodec": "clutchcall_api.models",
    "CallStatus": "clutchcall_api.models",
    "EndReason": "clutchcall_api.models",
    "AsyncAgents": "clutchcall._control",
    "AsyncCall": "clutchcall._control",
    "AsyncCalls": "clutchcall._control",
    "AsyncVoice": "clutchcall._control",
    "Agents": "clutchcall._control",
    "Call": "clutchcall._control",
    "Calls": "clutchcall._control",
    "Voice": "clutchcall._control",
    "APIResponse": "clutchcall._control",
    "BridgeToken": "clutchcall._control",
    "AsyncAudioBridge": "clutchcall.bridge",
    "AsyncAudioBridges": "clutchcall.bridge",
    "AudioBridge": "clutchcall.bridge",
    "AudioBridges": "clutchcall.bridge",
    "APIConnectionError": "clutchcall.errors",
    "APIError": "clutchcall.errors",
    "APIResponseValidationError": "clutchcall.errors",
    "APIStatusError": "clutchcall.errors",
    "APITimeoutError": "clutchcall.errors",
    "AudioError": "clutchcall.errors",
    "AuthenticationError": "clutchcall.errors",
    "BadRequestError": "clutchcall.errors",
    "BridgeAuthError": "clutchcall.errors",
    "BridgeClosedError": "clutchcall.errors",
    "BridgeConnectError": "clutchcall.errors",
    "BridgeError": "clutchcall.errors",
    "BridgeFormatError": "clutchcall.errors",
    "BridgeTrackError": "clutchcall.errors",
    "CallEndedError": "clutchcall.errors",
    "ClientClosedError": "clutchcall.errors",
    "ClutchCallError": "clutchcall.errors",
    "ConfigurationError": "clutchcall.errors",
    "ConflictError": "clutchcall.errors",
    "DecodeError": "clutchcall.errors",
    "FieldError": "clutchcall.errors",
    "FrameSizeError": "clutchcall.errors",
    "InternalServerError": "clutchcall.errors",
    "InvalidArgumentError": "clutchcall.errors",
    "MissingExtraError": "clutchcall.errors",
    "NotFoundError": "clutchcall.errors",
    "PermissionDeniedError": "clutchcall.errors",
    "RateLimitError": "clutchcall.errors",
    "ResponseTooLargeError": "clutchcall.errors",
    "UnprocessableEntityError": "clutchcall.errors",
    "UnsupportedFormatError": "clutchcall.errors",
    "WavFormatError": "clutchcall.errors",
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponse",
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
    "AudioError",
    "AuthenticationError",
    "BadRequestError",
    "BridgeAuthError",
    "BridgeClosedError",
    "BridgeConnectError",
    "BridgeError",
    "BridgeFormatError",
    "BridgeToken",
    "BridgeTrackError",
    "Call",
    "CallEndedError",
    "CallStatus",
    "Calls",
    "ClientClosedError",
    "ClutchCallError",
    "ConfigurationError",
    "ConflictError",
    "DecodeError",
    "EndReason",
    "FieldError",
    "FrameSizeError",
    "InternalServerError",
    "InvalidArgumentError",
    "MissingExtraError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
    "UnsupportedFormatError",
    "Voice",
    "WavFormatError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from clutchcall_api.models import AudioCodec, CallStatus, EndReason

    from ._control import (
        Agents,
        APIResponse,
        AsyncAgents,
        AsyncCall,
        AsyncCalls,
        AsyncVoice,
        BridgeToken,
        Call,
        Calls,
        Voice,
    )
    from .bridge import AsyncAudioBridge, AsyncAudioBridges, AudioBridge, AudioBridges
    from .errors import (
        APIConnectionError,
        APIError,
        APIResponseValidationError,
        APIStatusError,
        APITimeoutError,
        AudioError,
        AuthenticationError,
        BadRequestError,
        BridgeAuthError,
        BridgeClosedError,
        BridgeConnectError,
        BridgeError,
        BridgeFormatError,
        BridgeTrackError,
        CallEndedError,
        ClientClosedError,
        ClutchCallError,
        ConfigurationError,
        ConflictError,
        DecodeError,
        FieldError,
        FrameSizeError,
        InternalServerError,
        InvalidArgumentError,
        MissingExtraError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        ResponseTooLargeError,
        UnprocessableEntityError,
        UnsupportedFormatError,
        WavFormatError,
    )
