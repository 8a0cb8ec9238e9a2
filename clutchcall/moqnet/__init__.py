"""Networked MoQT: the sans-IO session of :mod:`clutchcall.moqt` on the QUIC and
WebTransport connections of :mod:`clutchcall.transport`.

The layer that the audio bridges (:mod:`clutchcall.bridge`) and the dev engine
(:mod:`clutchcall.dev`: its relay and its simulated call members) both build on:

- :mod:`~clutchcall.moqnet.link`: :class:`MoqtLink` drives one MoQT session over
  one connection, on either side (the relay runs one per client), optionally
  bounding what a peer that stops reading may make it hold (:class:`BacklogLimit`).
- :mod:`~clutchcall.moqnet.client`: :class:`MoqtClient`, a reconnecting client for
  a call's voice tracks on any draft-14 relay: ``publish_audio`` returns an
  :class:`AudioPublication`, ``subscribe_audio`` an :class:`AudioSubscription`
  that yields :class:`AudioFrame` s (the SDK's one frame type, defined in
  :mod:`clutchcall.moqt.voice`); :class:`AudioStats` counts what went through.
- :mod:`~clutchcall.moqnet.pool`: :class:`SharedClient`, one client carrying the
  tracks of many calls (its members), closed when the last member leaves.

::

    from clutchcall.moqnet import MoqtClient

    async with MoqtClient("moqt://127.0.0.1:4443", token=token.token) as client:
        uplink = await client.publish_audio(call_sid, "uplink")
        await uplink.write(opus_frame)
"""

from ..moqt import AudioFrame
from .client import (
    AudioPublication,
    AudioStats,
    AudioSubscription,
    Credentials,
    MoqtClient,
    monotonic_us,
)
from .link import GROUP_OVERHEAD, BacklogLimit, MoqtLink
from .pool import MemberCredentials, SharedClient

__all__ = [
    "GROUP_OVERHEAD",
    "AudioFrame",
    "AudioPublication",
    "AudioStats",
    "AudioSubscription",
    "BacklogLimit",
    "Credentials",
    "MemberCredentials",
    "MoqtClient",
    "MoqtLink",
    "SharedClient",
    "monotonic_us",
]
