"""In-memory state of the dev engine: orgs, API keys, calls and their simulated callees.

Call state is derived from time, never advanced by background tasks: a call's
status at instant ``now`` follows from when it was created, what its callee does
(chosen by the destination number) and any hangup. That keeps the simulation
exact and cheap, and makes ``time_scale`` a plain multiplier.

Memory is bounded: the store remembers at most ``max_calls`` calls
(:data:`MAX_CALLS`). When it is full, the oldest *ended* calls are forgotten (a
tenth of the capacity at a time; they then read as 404), and with them the
``Idempotency-Key`` that created them: a key is honoured as long as its call is
remembered. A store full of live calls refuses new ones (503) until some end.
"""

from __future__ import annotations

import enum
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..moqt import VoiceRole
from . import tokens

SCOPES = frozenset({"voice:calls", "voice:agents", "voice:bridge"})
BUILTIN_AGENTS = ("echo", "healthcare-assistant", "billing-bot")

DEFAULT_RING_TIMEOUT = 30
MIN_RING_TIMEOUT = 5
MAX_RING_TIMEOUT = 120

# Simulated network timings, in seconds before time_scale applies.
DIAL_SECONDS = 0.2
RING_SECONDS = 1.0
BUSY_SECONDS = 0.5
CALLEE_HANGUP_SECONDS = 2.0
BRIDGE_TOKEN_TTL = 600.0

#: Calls the store remembers, live and ended; see the module docstring.
MAX_CALLS = 10_000


class Callee(enum.Enum):
    """What the simulated far end does; chosen by the destination number."""

    ANSWER = "answer"
    INVALID = "invalid"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    ECHO = "echo"
    HANGS_UP = "hangs_up"


MAGIC_NUMBERS: dict[str, Callee] = {
    "+15005550001": Callee.INVALID,
    "+15005550002": Callee.NO_ANSWER,
    "+15005550003": Callee.BUSY,
    "+15005550004": Callee.ECHO,
    "+15005550005": Callee.HANGS_UP,
}


def callee_for(number: str) -> Callee:
    return MAGIC_NUMBERS.get(number, Callee.ANSWER)


def clamp_ring_timeout(value: int | None) -> int:
    if value is None:
        return DEFAULT_RING_TIMEOUT
    return max(MIN_RING_TIMEOUT, min(MAX_RING_TIMEOUT, value))


@dataclass(frozen=True)
class ApiKey:
    key: str = field(repr=False)
    org_id: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Ending:
    at: float
    status: str
    reason: str


@dataclass
class CallRecord:
    sid: str
    org_id: str
    to: str
    from_: str
    trunk_id: str
    agent: str | None
    ring_timeout: int
    callee: Callee
    created: float
    started_at: datetime
    time_scale: float
    hangup: Ending | None = None
    #: (org id, Idempotency-Key) this call was created with, if any.
    idempotency: tuple[str, str] | None = None

    # -- timeline -------------------------------------------------------------
    def _s(self, seconds: float) -> float:
        return seconds * self.time_scale

    @property
    def answer_at(self) -> float | None:
        if self.callee in (Callee.ANSWER, Callee.ECHO, Callee.HANGS_UP):
            return self.created + self._s(DIAL_SECONDS + RING_SECONDS)
        return None

    def natural_end(self) -> Ending | None:
        ringing = self.created + self._s(DIAL_SECONDS)
        if self.callee is Callee.INVALID:
            return Ending(self.created, "failed", "invalid_number")
        if self.callee is Callee.NO_ANSWER:
            return Ending(ringing + self._s(self.ring_timeout), "no_answer", "no_answer")
        if self.callee is Callee.BUSY:
            return Ending(ringing + self._s(BUSY_SECONDS), "failed", "busy")
        if self.callee is Callee.HANGS_UP:
            answered = self.answer_at
            assert answered is not None
            return Ending(answered + self._s(CALLEE_HANGUP_SECONDS), "completed", "callee_hangup")
        return None

    def ending(self, now: float) -> Ending | None:
        """How the call ended, if it has ended by ``now``."""
        candidates = [e for e in (self.natural_end(), self.hangup) if e is not None]
        first = min(candidates, key=lambda e: e.at, default=None)
        return first if first is not None and first.at <= now else None

    def answered(self, now: float) -> float | None:
        answer = self.answer_at
        if answer is None or answer > now:
            return None
        end = self.ending(now)
        return answer if end is None or answer <= end.at else None

    def status(self, now: float) -> str:
        end = self.ending(now)
        if end is not None:
            return end.status
        if self.answered(now) is not None:
            return "in_progress"
        if now >= self.created + self._s(DIAL_SECONDS):
            return "ringing"
        return "dialing"

    # -- presentation ---------------------------------------------------------
    def _wall(self, mono: float) -> str:
        return iso(self.started_at + timedelta(seconds=mono - self.created))

    def to_json(self, now: float) -> dict[str, Any]:
        end = self.ending(now)
        answered = self.answered(now)
        return {
            "sid": self.sid,
            "status": self.status(now),
            "to": self.to,
            "from": self.from_,
            "trunkId": self.trunk_id,
            "agent": self.agent,
            "startedAt": iso(self.started_at),
            "answeredAt": None if answered is None else self._wall(answered),
            "endedAt": None if end is None else self._wall(end.at),
            "endReason": None if end is None else end.reason,
            "ringTimeoutSec": self.ring_timeout,
        }


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class BridgeGrant:
    token: str = field(repr=False)
    expires_at: datetime


class StateError(Exception):
    """A request conflicts with a call's state (maps to 409)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class StoreFull(Exception):
    """The store holds ``max_calls`` calls and none has ended (maps to 503)."""


class Store:
    """All engine state, guarded by one lock (the HTTP server and tests touch it
    from different threads)."""

    def __init__(
        self, *, time_scale: float, clock: Callable[[], float], max_calls: int = MAX_CALLS
    ) -> None:
        self.time_scale = time_scale
        self.clock = clock
        self.lock = threading.RLock()
        self.keys: dict[str, ApiKey] = {}
        #: Oldest first (dicts keep insertion order), which is the order of forgetting.
        self.calls: dict[str, CallRecord] = {}
        self.max_calls = max_calls
        #: (org id, key) -> (request fingerprint, sid); one entry per remembered call at most.
        self.idempotency: dict[tuple[str, str], tuple[str, str]] = {}
        self.agents: set[str] = set(BUILTIN_AGENTS)
        self.bridge_secret = secrets.token_bytes(32)
        self.bridge_token_ttl = BRIDGE_TOKEN_TTL
        self.relay_url: str | None = None

    def add_key(self, org_id: str, scopes: frozenset[str] = SCOPES, key: str | None = None) -> str:
        key = key or f"cc_dev_{secrets.token_hex(16)}"
        with self.lock:
            self.keys[key] = ApiKey(key=key, org_id=org_id, scopes=frozenset(scopes))
        return key

    def lookup_key(self, key: str) -> ApiKey | None:
        with self.lock:
            return self.keys.get(key)

    def originate(
        self,
        *,
        org_id: str,
        to: str,
        from_: str,
        trunk_id: str,
        agent: str | None,
        ring_timeout: int | None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> tuple[CallRecord, bool]:
        """Create a call (or return the one an idempotency key already created).

        Returns (call, replayed). Raises StateError if the key was used with another
        body, StoreFull if the store is full of live calls.
        """
        with self.lock:
            if idempotency_key is not None:
                seen = self.idempotency.get((org_id, idempotency_key))
                if seen is not None:
                    if seen[0] != fingerprint:
                        raise StateError(
                            "idempotency_key_reused",
                            "this Idempotency-Key was already used with a different request body",
                        )
                    return self.calls[seen[1]], True
            now = self.clock()
            if len(self.calls) >= self.max_calls:
                self._forget_ended(now)
                if len(self.calls) >= self.max_calls:
                    raise StoreFull(
                        f"the dev engine holds {self.max_calls} calls and none has ended"
                    )
            sid = "CA" + secrets.token_hex(16)
            record = CallRecord(
                sid=sid,
                org_id=org_id,
                to=to,
                from_=from_,
                trunk_id=trunk_id,
                agent=agent,
                ring_timeout=clamp_ring_timeout(ring_timeout),
                callee=callee_for(to),
                created=now,
                started_at=datetime.now(UTC),
                time_scale=self.time_scale,
            )
            self.calls[sid] = record
            if idempotency_key is not None:
                record.idempotency = (org_id, idempotency_key)
                self.idempotency[record.idempotency] = (fingerprint, sid)
            return record, False

    def _forget_ended(self, now: float) -> None:
        """Drop the oldest ended calls, a tenth of the capacity at a time (so the scan
        is paid once per that many originates), with their idempotency keys."""
        batch = max(1, self.max_calls // 10)
        ended = list(
            itertools.islice((s for s, c in self.calls.items() if c.ending(now) is not None), batch)
        )
        for sid in ended:
            record = self.calls.pop(sid)
            if record.idempotency is not None:
                self.idempotency.pop(record.idempotency, None)

    def get(self, org_id: str, sid: str) -> CallRecord | None:
        with self.lock:
            call = self.calls.get(sid)
            return call if call is not None and call.org_id == org_id else None

    def transfer(self, call: CallRecord, *, to: str | None, agent: str | None) -> None:
        with self.lock:
            status = self._require_live(call)
            if status != "in_progress":
                raise StateError(
                    "call_not_answered", f"the call is {status}: only answered calls transfer"
                )
            if to is not None:
                call.to = to
                call.agent = None
            else:
                call.agent = agent

    def attach_agent(self, call: CallRecord, agent: str) -> None:
        with self.lock:
            self._require_live(call)
            call.agent = agent

    def hangup(self, call: CallRecord) -> None:
        with self.lock:
            now = self.clock()
            self._require_live(call)
            reason = "hangup" if call.answered(now) is not None else "canceled"
            call.hangup = Ending(now, "completed", reason)

    def mint_bridge_token(self, call: CallRecord, role: VoiceRole) -> BridgeGrant:
        with self.lock:
            self._require_live(call)
        expires = time.time() + self.bridge_token_ttl
        claims = tokens.BridgeClaims(call.org_id, call.sid, role, expires)
        return BridgeGrant(
            tokens.mint(self.bridge_secret, claims), datetime.fromtimestamp(expires, UTC)
        )

    def _require_live(self, call: CallRecord) -> str:
        now = self.clock()
        status = call.status(now)
        if call.ending(now) is not None:
            raise StateError("call_ended", f"the call has already ended ({status})")
        return status
