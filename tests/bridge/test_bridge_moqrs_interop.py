"""Interop with an independent relay: moq-rs 0.5.1 (Rust, from PyPI) in a subprocess.

What this proves, over raw QUIC (ALPN ``moq-00``) and WebTransport (``https://.../``):

- ``MoqtClient`` sets up a draft-14 session with moq-rs (it accepts and ignores our
  AUTHORIZATION_TOKEN parameter), announces ``voice/<sid>``, is subscribed by the
  relay when a subscriber appears, and another ``MoqtClient`` receives every frame
  through it, byte for byte and in order.
- Timestamps: moq-rs re-stamps objects with its own clock (wall-clock microseconds
  at millisecond resolution) instead of forwarding the publisher's LOC timestamp,
  so through moq-rs a subscriber sees monotonic relay timestamps, not the
  sender's. The SDK keeps frames as they are (no timestamp smuggled into the
  payload); the dev relay preserves the sender's timestamps.
- The audio bridge works through moq-rs too (tokens from the dev engine, media
  through moq-rs) once the far side has published: moq-rs answers a SUBSCRIBE for
  a track nobody announced yet with SUBSCRIBE_ERROR "unroutable" (shown below as
  :class:`BridgeTrackError`), where the dev relay accepts it and waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from bridge_fixtures import hang_up_calls_afterwards  # noqa: F401
from bridge_helpers import answered_call, until
from child_processes import moqrs_server

from clutchcall.bridge import BridgeTrackError, MoqtClient
from clutchcall.dev import Engine
from clutchcall.moqt import AudioFormat

pytest.importorskip("moq")

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

PEER = Path("/work/shared/reference/peers/moqrs_relay.py")


@dataclass(frozen=True)
class MoqRs:
    port: int
    fingerprints: tuple[str, ...]

    def url(self, kind: str) -> str:
        if kind == "quic":
            return f"moqt://127.0.0.1:{self.port}"
        return f"https://127.0.0.1:{self.port}/"

    def client(self, kind: str, **options: object) -> MoqtClient:
        return MoqtClient(
            self.url(kind),
            cert_sha256=self.fingerprints,
            server_name="localhost",
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def moqrs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoqRs]:
    with moqrs_server(tmp_path_factory.mktemp("moqrs") / "relay.log") as (port, fingerprints):
        yield MoqRs(port, fingerprints)


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
async def test_moqt_client_publishes_and_subscribes_through_moq_rs(kind: str, moqrs: MoqRs) -> None:
    sid = f"CAmoqrs{kind}"
    sent = [(b"opus-%02d" % n + bytes(range(n % 7)), 1_000 + 20_000 * n) for n in range(30)]
    with anyio.fail_after(20):
        async with moqrs.client(kind) as alice, moqrs.client(kind, token="cct1.x.y") as bob:
            uplink = await alice.publish_audio(sid, "uplink")
            frames = await bob.subscribe_audio(sid, "uplink")
            await uplink.wait_subscribed()  # moq-rs subscribed upstream for bob
            assert uplink.subscribers == 1
            for data, timestamp in sent:
                await uplink.write(data, timestamp)
                await anyio.sleep(0.003)
            got = []
            async for frame in frames:
                got.append(frame)
                if len(got) == len(sent):
                    break
            # A frame is out once moq-rs acknowledged it, which may come after bob has it.
            await until(lambda: alice.stats.frames_out == len(sent))
            assert bob.stats.frames_in == len(sent)
    assert [f.data for f in got] == [d for d, _ in sent]
    stamps = [f.timestamp_us for f in got]
    assert stamps == sorted(stamps)
    # moq-rs re-stamps with its own (wall) clock: none of the sender's values survive.
    assert all(stamp > 10**12 and stamp % 1000 == 0 for stamp in stamps)
    assert not set(stamps) & {t for _, t in sent}


async def test_moq_rs_refuses_a_subscription_before_anyone_publishes(moqrs: MoqRs) -> None:
    with anyio.fail_after(10):
        async with moqrs.client("quic") as client:
            with pytest.raises(BridgeTrackError, match="unroutable"):
                await client.subscribe_audio("CAnobody", "uplink")
            # The session itself carries on.
            await client.publish_audio("CAnobody", "downlink")


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
async def test_the_audio_bridge_talks_through_moq_rs(
    kind: str, moqrs: MoqRs, engine: Engine
) -> None:
    heard: list[bytes] = []
    async with engine.async_voice(relay_url=moqrs.url(kind), verify=False) as voice:
        sid = await answered_call(voice)
        with anyio.fail_after(20):
            # The far end (a raw MoqtClient) publishes first: moq-rs routes only
            # announced tracks.
            async with moqrs.client(kind) as phone:
                uplink = await phone.publish_audio(sid, "uplink")
                async with await voice.audio_bridge.attach(
                    sid, on_uplink=lambda frame, ts: heard.append(frame)
                ) as bridge:
                    downlink = await phone.subscribe_audio(sid, "downlink")
                    await uplink.wait_subscribed()
                    for n in range(10):
                        await uplink.write(b"caller-%d" % n)
                        await bridge.publish_downlink(b"agent-%d" % n)
                        await anyio.sleep(0.005)
                    replies = []
                    async for frame in downlink:
                        replies.append(frame.data)
                        if len(replies) == 10:
                            break
                    await until(lambda: len(heard) >= 10)
    assert heard == [b"caller-%d" % n for n in range(10)]
    assert replies == [b"agent-%d" % n for n in range(10)]


async def test_catalogs_travel_through_moq_rs_like_any_track(moqrs: MoqRs) -> None:
    """On a plain relay each side's catalog is a track of its own namespace
    (``voice/<sid>/<track>``), so a MoqtClient reads the other side's format there."""
    sid = "CAmoqrscatalog"
    fmt = AudioFormat("pcm16", 16000, 1, 20)
    with anyio.fail_after(20):
        async with moqrs.client("quic") as alice, moqrs.client("quic") as bob:
            uplink = await alice.publish_audio(sid, "uplink", format=fmt)
            assert uplink.catalog is not None and uplink.catalog.error is None
            catalog = await bob.read_catalog(sid, "uplink")
            assert catalog.format_of("uplink") == fmt
            entry = catalog.track("uplink")
            assert entry is not None and entry.namespace == f"voice/{sid}"
            # A new declaration reaches a subscriber as a new catalog version.
            subscription = await bob.subscribe_catalog(sid, "uplink")
            first = await subscription.__anext__()
            assert first.format_of("uplink") == fmt
            uplink.set_format(AudioFormat("g711_ulaw", 8000))
            second = await subscription.__anext__()
            assert second.format_of("uplink") == AudioFormat("g711_ulaw", 8000)
            await subscription.aclose()
