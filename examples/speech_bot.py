"""Speech in, speech out from a plain script: a bot hears the caller as PCM, finds
the end of each utterance and answers with synthesised audio.

Run it against the embedded dev engine:  .venv/bin/python examples/speech_bot.py

The bot is the server side of the call's audio (``attach``) and runs in the main
thread. The person on the phone is played by a caller-side bridge in a second
thread, as a softphone would; on a real call only the bot's half is needed. Until
that caller joins, the dev engine's simulated callee speaks placeholder frames
(not audio): the bot skips them, and logs a warning about the first.
"""

from __future__ import annotations

import threading
import time

from speech import SAMPLE_RATE, Utterances, bot_says, caller_says, level_dbfs

from clutchcall import AudioBridge, CallStatus, Voice
from clutchcall.audio import PcmBridge
from clutchcall.dev import Engine


def bot(bridge: AudioBridge, *, answers: int = 1) -> None:
    """Listen on the uplink; answer each utterance (stop after ``answers`` of them)."""
    pcm = PcmBridge(bridge)
    utterances = Utterances()
    heard = pcm.uplink()
    for frame in heard:  # blocks for each frame; ends when the bridge closes
        seconds = utterances.push(frame.samples, frame.duration_us)
        if seconds is not None:
            print(f"bot: heard {seconds:.1f} s of speech; answering")
            pcm.publish_downlink(bot_says(), sample_rate=SAMPLE_RATE, flush=True)
            answers -= 1
            if not answers:
                break
    # Frames that are not audio in the bridge's format are skipped, not fatal.
    print(f"bot: {heard.frames} frames decoded, {heard.decode_errors} skipped")


def person(voice: Voice, call_sid: str) -> None:
    """The caller: join a moment later, say something, wait for the bot to answer."""
    time.sleep(0.5)
    with voice.audio_bridge.attach_caller(
        call_sid, codec="pcm16", sample_rate=SAMPLE_RATE
    ) as bridge:
        pcm = PcmBridge(bridge)
        answer = pcm.downlink()
        pcm.publish_uplink(caller_says(), sample_rate=SAMPLE_RATE, flush=True)
        for frame in answer:
            if level_dbfs(frame.samples) > -35:
                print("caller: the bot answered")
                return


def main() -> None:
    with Engine(time_scale=0.1) as engine, engine.voice() as voice:
        call = voice.calls.originate(to="+15551234567", from_="+15558675309", trunk_id="trunk_main")
        while voice.calls.get(sid=call.sid).status is not CallStatus.IN_PROGRESS:
            time.sleep(0.05)
        with voice.audio_bridge.attach(call.sid, codec="pcm16", sample_rate=SAMPLE_RATE) as bridge:
            caller = threading.Thread(target=person, args=(voice, call.sid))
            caller.start()
            # A bound for the demo: closing the bridge ends the bot's loop.
            deadline = threading.Timer(15, bridge.close)
            deadline.start()
            try:
                bot(bridge)
            finally:
                deadline.cancel()
                caller.join(timeout=15)
        call.hangup()
        print(f"{call.sid} {call.status.value}")


if __name__ == "__main__":
    main()
