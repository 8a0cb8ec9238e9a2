"""Bridge tokens: what verifies, and that nothing else does (decoding is strict)."""

from __future__ import annotations

import pytest

from clutchcall.dev import tokens
from clutchcall.moqt import VoiceRole, VoiceTrack

SECRET = b"s" * 32
CLAIMS = tokens.BridgeClaims("org_a", "CA" + "1" * 32, VoiceRole.SERVER, 2_000_000_000.0)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def token() -> str:
    return tokens.mint(SECRET, CLAIMS)


def test_a_minted_token_verifies() -> None:
    assert tokens.verify(SECRET, token(), now=0) == CLAIMS


@pytest.mark.parametrize("junk", ["!!", "=", "==", "\n", " ", "$x", "\x00", "é"])
def test_junk_after_the_signature_is_refused(junk: str) -> None:
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.verify(SECRET, token() + junk, now=0)


@pytest.mark.parametrize("junk", ["!", "=", "\n", " "])
def test_junk_in_the_claims_is_refused(junk: str) -> None:
    prefix, body, signature = token().split(".")
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.verify(SECRET, f"{prefix}.{body}{junk}.{signature}", now=0)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_a_signature_spelled_differently_is_refused(bits: int) -> None:
    """32 bytes take 43 base64 characters, the last one with 2 bits to spare:
    changing those decodes to the same bytes, but is not the token minted."""
    genuine = token()
    last = ALPHABET.index(genuine[-1])
    variant = genuine[:-1] + ALPHABET[last ^ bits]
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.verify(SECRET, variant, now=0)


def test_a_forged_or_expired_token_is_refused() -> None:
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify(b"another secret", token(), now=0)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(SECRET, token(), now=CLAIMS.expires_at)


def test_an_expired_token_raises_its_own_error_type() -> None:
    with pytest.raises(tokens.TokenExpiredError, match="expired"):
        tokens.verify(SECRET, token(), now=CLAIMS.expires_at)
    try:
        tokens.verify(b"x" * 32, token(), now=CLAIMS.expires_at)
    except tokens.TokenError as exc:  # forged and expired: refused as forged
        assert not isinstance(exc, tokens.TokenExpiredError)
    else:
        raise AssertionError("a forged token verified")


def test_claims_carry_the_role_enum() -> None:
    claims = tokens.verify(SECRET, token(), now=0)
    assert claims.role is VoiceRole.SERVER
    assert claims.may_subscribe(VoiceTrack.UPLINK) and claims.may_publish(VoiceTrack.DOWNLINK)
    assert not claims.may_publish(VoiceTrack.UPLINK)
    with pytest.raises(ValueError):
        tokens.mint(SECRET, tokens.BridgeClaims("org_a", "CA1", "listener", 1.0))  # type: ignore[arg-type]
