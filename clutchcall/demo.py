"""``make demo``: one call against the embedded dev engine, start to finish."""

from __future__ import annotations

import time

from . import CallStatus, Voice
from .dev import Engine


def wait_for(call_sid: str, voice: Voice, wanted: set[CallStatus], timeout: float = 10.0) -> None:
    """Poll the call until it reaches one of ``wanted``, printing each status change."""
    last: CallStatus | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = voice.calls.get(sid=call_sid)
        if call.status != last:
            print(f"  status: {call.status.value}")
            last = call.status
        if call.status in wanted:
            return
        time.sleep(0.05)
    raise TimeoutError(f"call {call_sid} did not reach {sorted(s.value for s in wanted)}")


def main() -> None:
    with Engine(time_scale=0.5) as engine, engine.voice() as voice:
        print(f"dev engine at {engine.base_url} (org {engine.org_id})")
        call = voice.calls.originate(
            to="+15551234567", from_="+15558675309", trunk_id="trunk_main", ring_timeout_sec=30
        )
        print(f"originated {call.sid}")
        wait_for(call.sid, voice, {CallStatus.IN_PROGRESS, CallStatus.FAILED, CallStatus.NO_ANSWER})
        call.transfer(agent="billing-bot")
        print(f"  transferred to agent {call.agent}")
        call.transfer("+15557654321")
        print(f"  transferred to {call.to}")
        call.hangup()
        print(f"  status: {call.status.value} ({call.end_reason.value if call.end_reason else ''})")
    print("done")


if __name__ == "__main__":
    main()
