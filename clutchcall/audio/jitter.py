"""A sans-IO jitter buffer for fixed-duration encoded frames.

No clock, no I/O, no decoding: :meth:`JitterBuffer.push` files a frame by its
timestamp, :meth:`JitterBuffer.pop` hands out the next frame period's content
whenever its owner's clock says one is due. That keeps the policy testable
byte for byte; :class:`~clutchcall.audio.AudioPlayer` adds decoding, sinks and a
real-time driver.

Policy
------
* **Slots.** The first frame's timestamp anchors a grid of one slot per frame
  duration; every timestamp is rounded to the nearest slot, so senders that
  stamp with a jittery clock still line up.
* **Prebuffering.** Playout starts once ``prebuffer`` frames are buffered, from
  the earliest buffered slot. Frames arriving out of order before that are
  simply sorted.
* **Gaps.** A missing slot while later frames are buffered is concealed: the
  slot plays as silence (``concealed``) and the cursor moves on.
* **Underruns.** When a frame is due and nothing at all is buffered, the buffer
  underruns: it plays silence, counts one underrun, and prebuffers again
  without moving its cursor, so the next frames are not treated as late (like
  the browser player's ring buffer, the added wait becomes latency).
* **Late frames** (slot already played or concealed, or before the first start
  more than ``capacity`` slots behind the newest frame) and **duplicates**
  (slot already buffered) are dropped and counted.
* **Bounded latency.** At most ``capacity`` slots are held from the cursor on; a
  frame beyond that drops the oldest buffered frames (``dropped``) and moves the
  cursor to the earliest frame kept.
* **Resync.** A timestamp more than ``capacity`` slots behind the cursor, or so
  far ahead that nothing buffered would be kept, means the sender's timeline
  restarted (a new agent, a new stream): the buffer drops what it holds,
  re-anchors on that frame and prebuffers again (``resyncs``).

Every pushed frame ends up counted exactly once: ``pushed == played + late +
duplicates + dropped + buffered``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["JitterBuffer", "JitterStats", "Playout", "PlayoutKind", "PushOutcome"]


class PushOutcome(enum.StrEnum):
    """What :meth:`JitterBuffer.push` did with a frame."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    LATE = "late"
    RESYNC = "resync"
    """Queued after dropping the buffer: the frame starts a new timeline."""


class PlayoutKind(enum.StrEnum):
    """What one frame period of output is made of."""

    FRAME = "frame"
    """A received frame."""
    GAP = "gap"
    """Silence in place of a missing frame (later frames are buffered)."""
    UNDERRUN = "underrun"
    """Silence: the buffer ran dry while playing."""
    WAITING = "waiting"
    """Silence: prebuffering (before the start or after an underrun)."""


@dataclass(frozen=True)
class Playout:
    """One frame period of output."""

    kind: PlayoutKind
    frame: bytes | None = None
    timestamp_us: int | None = None
    """Timestamp of the slot played (FRAME and GAP only)."""


@dataclass
class JitterStats:
    pushed: int = 0
    played: int = 0
    """Slots played from a received frame."""
    concealed: int = 0
    """Missing slots played as silence while later frames were buffered."""
    underruns: int = 0
    """Times the buffer ran dry while playing."""
    late: int = 0
    """Frames that arrived after their slot had been played or concealed."""
    duplicates: int = 0
    """Frames whose slot was already buffered."""
    dropped: int = 0
    """Frames discarded unplayed to bound latency or on a resync."""
    resyncs: int = 0
    """Times the sender's timeline jumped and the buffer re-anchored."""


class JitterBuffer:
    """Orders encoded frames by timestamp and releases one per frame period.

    ``prebuffer`` and ``capacity`` are counted in frames; ``capacity`` must
    exceed ``prebuffer``.
    """

    def __init__(self, *, frame_us: int, prebuffer: int = 3, capacity: int = 50) -> None:
        if frame_us <= 0:
            raise ValueError(f"frame_us must be positive, got {frame_us}")
        if prebuffer < 1:
            raise ValueError(f"prebuffer must be at least 1 frame, got {prebuffer}")
        if capacity <= prebuffer:
            raise ValueError(f"capacity ({capacity}) must exceed prebuffer ({prebuffer})")
        self.frame_us = frame_us
        self.prebuffer = prebuffer
        self.capacity = capacity
        self.stats = JitterStats()
        self._frames: dict[int, bytes] = {}
        self._base_us: int | None = None
        self._next: int | None = None  # first slot not yet played; None before the first start
        self._playing = False

    @property
    def buffered(self) -> int:
        """Frames waiting to be played."""
        return len(self._frames)

    @property
    def playing(self) -> bool:
        """False while prebuffering."""
        return self._playing

    def next_timestamp_us(self) -> int | None:
        """Timestamp of the slot after the latest one buffered or played (None before any)."""
        if self._base_us is None:
            return None
        slots = list(self._frames)
        if self._next is not None:
            slots.append(self._next - 1)
        return self._timestamp(max(slots) + 1) if slots else self._base_us

    def _slot(self, timestamp_us: int) -> int:
        assert self._base_us is not None
        return (timestamp_us - self._base_us + self.frame_us // 2) // self.frame_us

    def _timestamp(self, slot: int) -> int:
        assert self._base_us is not None
        return self._base_us + slot * self.frame_us

    def _resync(self, timestamp_us: int, frame: bytes) -> PushOutcome:
        self.stats.dropped += len(self._frames)
        self.stats.resyncs += 1
        self._frames = {0: frame}
        self._base_us = timestamp_us
        self._next = None
        self._playing = False
        return PushOutcome.RESYNC

    def push(self, timestamp_us: int, frame: bytes) -> PushOutcome:
        """File one encoded frame under its timestamp (microseconds)."""
        self.stats.pushed += 1
        if self._base_us is None:
            self._base_us = timestamp_us
        slot = self._slot(timestamp_us)
        if self._next is not None and slot < self._next:
            if self._next - slot > self.capacity:
                return self._resync(timestamp_us, frame)
            self.stats.late += 1
            return PushOutcome.LATE
        if slot in self._frames:
            self.stats.duplicates += 1
            return PushOutcome.DUPLICATE
        if self._next is None and self._frames and slot <= max(self._frames) - self.capacity:
            # Before the first start: too far behind the newest frame to fit the window.
            self.stats.late += 1
            return PushOutcome.LATE
        if self._frames or self._next is not None:
            low = self._next if self._next is not None else min(self._frames)
            if slot >= low + self.capacity:
                keep_from = slot - self.capacity + 1
                kept = {s: f for s, f in self._frames.items() if s >= keep_from}
                if not kept:
                    return self._resync(timestamp_us, frame)
                self.stats.dropped += len(self._frames) - len(kept)
                self._frames = kept
                if self._next is not None:
                    self._next = max(self._next, min(min(kept), slot))
        self._frames[slot] = frame
        return PushOutcome.QUEUED

    def pop(self, *, force: bool = False) -> Playout:
        """The next frame period's content. ``force`` skips the prebuffering wait."""
        if not self._playing:
            if not self._frames or (len(self._frames) < self.prebuffer and not force):
                return Playout(PlayoutKind.WAITING)
            self._playing = True
            first = min(self._frames)
            if self._next is None or first > self._next:
                self._next = first
        if not self._frames:
            self.stats.underruns += 1
            self._playing = False
            return Playout(PlayoutKind.UNDERRUN)
        assert self._next is not None
        slot = self._next
        self._next += 1
        frame = self._frames.pop(slot, None)
        if frame is None:
            self.stats.concealed += 1
            return Playout(PlayoutKind.GAP, None, self._timestamp(slot))
        self.stats.played += 1
        return Playout(PlayoutKind.FRAME, frame, self._timestamp(slot))

    def drain(self) -> list[Playout]:
        """Play out everything buffered now, gaps included (end of stream)."""
        out: list[Playout] = []
        while self._frames:
            out.append(self.pop(force=True))
        return out
