"""Short-lived bridge tokens: what a client shows the relay instead of its API key.

A token names one call (org + sid), one role and an expiry, signed with the
engine's secret (HMAC-SHA256)::

    cct1.<base64url(json claims)>.<base64url(signature)>

Roles (:class:`~clutchcall.moqt.VoiceRole`): ``server`` may subscribe to the call's
uplink and publish its downlink (``attach``); ``caller`` may do the reverse
(``attach_caller``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from ..moqt import VoiceRole, VoiceTrack

PREFIX = "cct1"


class TokenError(Exception):
    """The token is malformed, forged or expired (the message says which)."""


class TokenExpiredError(TokenError):
    """The token is genuine but has expired."""


@dataclass(frozen=True)
class BridgeClaims:
    org_id: str
    call_sid: str
    role: VoiceRole
    expires_at: float  # seconds since the epoch

    def may_publish(self, track: VoiceTrack) -> bool:
        return track is self.role.publishes

    def may_subscribe(self, track: VoiceTrack) -> bool:
        return track is self.role.subscribes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unb64(text: str) -> bytes:
    """Decode unpadded base64url strictly: only its alphabet, and only the one
    spelling :func:`_b64` produces (``urlsafe_b64decode`` skips other characters
    and ignores the unused low bits of the last one, so a token with junk
    appended, or a variant of a genuine one, would decode the same)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical base64url spelling")
    return data


def mint(secret: bytes, claims: BridgeClaims) -> str:
    role = VoiceRole(claims.role)  # ValueError for anything else
    body = _b64(
        json.dumps(
            {
                "org": claims.org_id,
                "sid": claims.call_sid,
                "role": role.value,
                "exp": claims.expires_at,
            },
            separators=(",", ":"),
        ).encode()
    )
    signature = _b64(hmac.new(secret, f"{PREFIX}.{body}".encode(), hashlib.sha256).digest())
    return f"{PREFIX}.{body}.{signature}"


def verify(secret: bytes, token: str, *, now: float) -> BridgeClaims:
    """The token's claims, if it is genuine and not expired at ``now`` (epoch seconds)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TokenError("not a bridge token")
    expected = hmac.new(secret, f"{PREFIX}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        signature = _unb64(parts[2])
        data = json.loads(_unb64(parts[1]))
        org_id, call_sid = str(data["org"]), str(data["sid"])
        role, expires_at = str(data["role"]), float(data["exp"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError("malformed bridge token") from exc
    if not hmac.compare_digest(signature, expected):
        raise TokenError("bridge token signature does not match")
    try:
        claims = BridgeClaims(org_id, call_sid, VoiceRole(role), expires_at)
    except ValueError:
        raise TokenError("bridge token has an unknown role") from None
    if claims.expires_at <= now:
        raise TokenExpiredError("bridge token has expired")
    return claims
