"""Errors of the audio bridge and the raw MoQT client.

They are defined with the rest of the SDK's error tree, in :mod:`clutchcall.errors`
(also exported from :mod:`clutchcall`), and named here too::

    ClutchCallError
    └── BridgeError                 the data plane could not do what was asked
        ├── BridgeConnectError      the relay could not be reached or set up
        ├── BridgeAuthError         the relay refused the session or a track (unauthorized)
        ├── BridgeTrackError        the relay refused a track for another reason
        └── BridgeClosedError       the bridge or client was closed, or ended
            └── CallEndedError      the bridge's call ended (a hang-up)

Attaching to an unknown, ended or foreign call fails earlier, when the bridge
token is requested: with the control plane's ``NotFoundError`` / ``ConflictError``.
"""

from __future__ import annotations

from ..errors import (
    BridgeAuthError,
    BridgeClosedError,
    BridgeConnectError,
    BridgeError,
    BridgeTrackError,
    CallEndedError,
)

__all__ = [
    "BridgeAuthError",
    "BridgeClosedError",
    "BridgeConnectError",
    "BridgeError",
    "BridgeTrackError",
    "CallEndedError",
]
