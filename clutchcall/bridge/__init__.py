"""The data plane: audio bridges and the raw MoQT voice client.

``voice.audio_bridge.attach(call_sid, on_uplink=...)`` returns an
:class:`AsyncAudioBridge` (on :class:`~clutchcall.AsyncVoice`) or an
:class:`AudioBridge` (on :class:`~clutchcall.Voice`): one MoQT session on the
relay that receives the caller's audio and publishes audio back, reconnecting by
itself. :class:`MoqtClient` is the raw layer under it (defined in
:mod:`clutchcall.moqnet`, the networked MoQT layer, and exported here too):
``publish_audio`` / ``subscribe_audio`` on the ``voice/<sid>/{uplink,downlink}``
tracks of any draft-14 relay. :data:`AUDIO_FORMATS` lists the formats ``attach``
accepts (those :func:`clutchcall.audio.make_codec` can encode and decode).
"""

from ..errors import (
    BridgeAuthError,
    BridgeClosedError,
    BridgeConnectError,
    BridgeError,
    BridgeTrackError,
    CallEndedError,
)
from ..moqnet import (
    AudioFrame,
    AudioPublication,
    AudioStats,
    AudioSubscription,
    MoqtClient,
    monotonic_us,
)
from ._bridge import (
    AsyncAudioBridge,
    AsyncAudioBridges,
    BridgeGrant,
    BridgeSettings,
    FrameCallback,
    FrameIterator,
)
from ._format import AUDIO_FORMATS, AudioFormatRule
from ._sync import AudioBridge, AudioBridges

__all__ = [
    "AUDIO_FORMATS",
    "AsyncAudioBridge",
    "AsyncAudioBridges",
    "AudioBridge",
    "AudioBridges",
    "AudioFormatRule",
    "AudioFrame",
    "AudioPublication",
    "AudioStats",
    "AudioSubscription",
    "BridgeAuthError",
    "BridgeClosedError",
    "BridgeConnectError",
    "BridgeError",
    "BridgeGrant",
    "BridgeSettings",
    "BridgeTrackError",
    "CallEndedError",
    "FrameCallback",
    "FrameIterator",
    "MoqtClient",
    "monotonic_us",
]
