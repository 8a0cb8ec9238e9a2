"""publish_audio / subscribe_audio on voice/<sid>/{uplink,downlink}."""

from __future__ import annotations

import pytest
from moqt_helpers import established

from clutchcall.moqt import messages as m
from clutchcall.moqt.events import (
    PublishDoneReceived,
    PublishNamespaceAccepted,
    SubscribeAccepted,
    SubscribeNamespaceAccepted,
    SubscribeRejected,
)
from clutchcall.moqt.voice import (
    DOWNLINK,
    UPLINK,
    AudioPublisher,
    AudioSubscriber,
    SubscriberState,
    VoiceRole,
    VoiceTrack,
    answer_unclaimed,
    voice_namespace,
    voice_track,
)


def state(subscriber: AudioSubscriber) -> SubscriberState:
    return subscriber.state


def test_voice_namespace() -> None:
    assert voice_namespace("CA123") == (b"voice", b"CA123")
    assert (UPLINK, DOWNLINK) == (VoiceTrack.UPLINK, VoiceTrack.DOWNLINK) == ("uplink", "downlink")
    assert (UPLINK.wire_name, DOWNLINK.wire_name) == (b"uplink", b"downlink")


def test_one_check_for_track_names() -> None:
    assert voice_track("uplink") is voice_track(b"uplink") is VoiceTrack.UPLINK
    assert voice_track(VoiceTrack.DOWNLINK) is VoiceTrack.DOWNLINK
    for bad in ("sideways", b"Uplink", b"\xff", ""):
        with pytest.raises(ValueError, match="must be 'uplink' or 'downlink'"):
            voice_track(bad)


def test_each_role_publishes_one_track_and_subscribes_the_other() -> None:
    assert (VoiceRole.SERVER.subscribes, VoiceRole.SERVER.publishes) == (UPLINK, DOWNLINK)
    assert (VoiceRole.CALLER.subscribes, VoiceRole.CALLER.publishes) == (DOWNLINK, UPLINK)
    assert VoiceRole("caller") is VoiceRole.CALLER and f"{VoiceRole.SERVER}" == "server"


@pytest.mark.parametrize("use_datagrams", [False, True])
def test_downlink_from_server_to_client(use_datagrams: bool) -> None:
    link = established()
    server, client = link.server.session, link.client.session
    publisher = AudioPublisher(server, "CA1", "downlink", use_datagrams=use_datagrams)
    assert publisher.start() == 1
    link.pump()
    for event in link.take(link.client):
        assert answer_unclaimed(client, event)

    subscriber = AudioSubscriber(client, "CA1", DOWNLINK)
    assert subscriber.start() == 0
    assert state(subscriber) is SubscriberState.PENDING
    link.pump()
    for event in link.take(link.server):
        if not isinstance(event, PublishNamespaceAccepted):
            assert publisher.handle(event)
    link.pump()
    assert publisher.send_frame(b"opus-0", 0) == 1
    assert publisher.send_frame(b"opus-1", 20_000) == 1
    link.pump()
    frames = []
    for event in link.take(link.client):
        frame = subscriber.handle(event)
        if frame is not None:
            frames.append(frame)
        if isinstance(event, SubscribeAccepted):
            assert state(subscriber) is SubscriberState.ACTIVE
    assert [(f.payload, f.timestamp_us, f.group_id) for f in frames] == [
        (b"opus-0", 0, 0),
        (b"opus-1", 20_000, 1),
    ]

    publisher.finish()
    link.pump()
    events = link.take(link.client)
    assert any(isinstance(e, PublishDoneReceived) for e in events)
    for event in events:
        subscriber.handle(event)
    assert state(subscriber) is SubscriberState.DONE
    assert publisher.subscriptions == set()
    subscriber.stop()


def test_unsubscribe_and_unclaimed_requests() -> None:
    link = established()
    server, client = link.server.session, link.client.session
    publisher = AudioPublisher(client, "CA1", "uplink", announce=False)
    assert publisher.start() is None
    subscriber = AudioSubscriber(server, "CA1", "uplink")
    other = AudioSubscriber(server, "CA1", "downlink")
    subscriber.start()
    other.start()
    link.pump()
    handled = [publisher.handle(e) or answer_unclaimed(client, e) for e in link.take(link.client)]
    assert handled == [True, True]
    link.pump()
    for event in link.take(link.server):
        subscriber.handle(event)
        other.handle(event)
        assert not isinstance(event, SubscribeAccepted) or event.request_id == subscriber.request_id
    assert subscriber.state == "active"
    assert other.state == "rejected"

    subscriber.stop()
    link.pump()
    assert [publisher.handle(e) for e in link.take(link.client)] == [True]
    assert publisher.send_frame(b"x", 1) == 0
    assert not publisher.handle(SubscribeRejected(5, 0, ""))


def test_answer_unclaimed_namespace_subscription() -> None:
    link = established()
    link.client.session.subscribe_namespace(["voice"])
    link.pump()
    (event,) = link.take(link.server)
    assert answer_unclaimed(link.server.session, event)
    link.pump()
    assert link.take(link.client) == [SubscribeNamespaceAccepted(0, (b"voice",))]
    assert not answer_unclaimed(link.server.session, SubscribeRejected(0, 0, ""))


def test_publisher_ignores_other_tracks() -> None:
    link = established()
    publisher = AudioPublisher(link.client.session, "CA1", "uplink")
    events = link.client.session.receive_control(
        m.encode_message(m.Subscribe(1, voice_namespace("CA2"), b"uplink"))
    )
    assert [publisher.handle(e) for e in events] == [False]


def test_bad_track_name() -> None:
    link = established()
    with pytest.raises(ValueError):
        AudioPublisher(link.client.session, "CA1", "sideways")
