"""Errors of the audio bridge and the raw MoQT client.

They extend the SDK's error tree::

    ClutchCallError
    └── BridgeError                 the data plane could not do what was asked
        ├── BridgeConnectError      the relay could not be reached or set up
        ├── BridgeAuthError         the relay refused the session or a track (unauthorized)
        ├── BridgeTrackError        the relay refused a track for another reason
        └── BridgeClosedError       the bridge or client was already closed

Attaching to an unknown, ended or foreign call fails earlier, when the bridge
token is requested: with the control plane's ``NotFoundError`` / ``ConflictError``.
"""

from __future__ import annotations

from ..errors import ClutchCallError


class BridgeError(ClutchCallError):
    """The data plane (relay session, tracks) failed."""


class BridgeConnectError(BridgeError):
    """The relay could not be reached, or the MoQT session could not be set up."""


class BridgeAuthError(BridgeError):
    """The relay refused the session (bad, expired or missing token) or a track.

    ``code`` is the MoQT error code the relay sent (a session termination code
    such as UNAUTHORIZED 0x2 / EXPIRED_AUTH_TOKEN 0x18, or a SUBSCRIBE_ERROR /
    PUBLISH_NAMESPACE_ERROR code such as UNAUTHORIZED 0x1); ``reason`` its text.
    """

    def __init__(self, message: str, *, code: int, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class BridgeTrackError(BridgeError):
    """The relay refused a SUBSCRIBE or PUBLISH_NAMESPACE for a reason other than
    authorization (e.g. moq-rs answers "unroutable" for a track nobody publishes yet).
    """

    def __init__(self, message: str, *, code: int, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class BridgeClosedError(BridgeError):
    """The bridge (or client) was closed; it cannot be used any more."""


__all__ = [
    "BridgeAuthError",
    "BridgeClosedError",
    "BridgeConnectError",
    "BridgeError",
    "BridgeTrackError",
]
