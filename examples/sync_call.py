"""A call with an AI agent from a plain script: originate, listen, talk back, hang up.

Run it against the embedded dev engine:  .venv/bin/python examples/sync_call.py
(against the cloud, build Voice() from CLUTCHCALL_* environment variables instead).
"""

from __future__ import annotations

import time
from pathlib import Path

from clutchcall import CallStatus
from clutchcall.audio import AudioPlayer, AudioSource, synth_prompt
from clutchcall.dev import Engine


def main() -> None:
    with Engine(time_scale=0.2) as engine, engine.voice() as voice:
        call = voice.calls.originate(
            to="+15551234567", from_="+15558675309", trunk_id="trunk_main", agent="billing-bot"
        )
        while voice.calls.get(sid=call.sid).status is not CallStatus.IN_PROGRESS:
            time.sleep(0.05)
        print(f"{call.sid} answered; the agent is {call.agent}")
        Path("out").mkdir(exist_ok=True)
        with (
            AudioPlayer.to_wav("out/sync-agent.wav", codec="opus") as player,
            voice.audio_bridge.attach_caller(call.sid, on_downlink=player.on_frame) as caller,
        ):
            # Speak to the agent: about a second of synthetic "speech", in real time.
            AudioSource([synth_prompt(48000)], codec="opus").run_blocking(caller.publish_uplink)
            time.sleep(1.0)  # let the agent answer
            player.drain()
            print(f"heard {player.stats.played} frames from the agent; {caller.stats}")
        call.hangup()
        print(f"call {call.status.value}")


if __name__ == "__main__":
    main()
