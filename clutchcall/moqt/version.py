"""The one place that names the MoQT drafts this package speaks.

Adding a later draft means adding its number here and teaching the codec the
differences; nothing else in the package hard-codes a version.
"""

from __future__ import annotations

#: draft-ietf-moq-transport-14: 0xff000000 + the draft number.
DRAFT_14 = 0xFF00000E

#: Versions offered in CLIENT_SETUP / accepted in SERVER_SETUP, most preferred first.
SUPPORTED_VERSIONS: tuple[int, ...] = (DRAFT_14,)

#: ALPN for MoQT directly over QUIC (draft-14 section 3.1.2). WebTransport uses "h3".
ALPN = "moq-00"

#: Draft number per version, for messages and logs.
VERSION_NAMES: dict[int, str] = {DRAFT_14: "draft-ietf-moq-transport-14"}
