"""Speech in, speech out from a plain script: a bot hears the caller as PCM, finds
the end of each utterance and answers with synthesised audio.

Run it against the embedded dev engine:  .venv/bin/python examples/speech_bot.py

The bot is the server side of the call's audio (``attach``) and runs in the main
thread. The person on the phone is played by a caller-side bridge in a second
thread, as a softphone would; on a real call only the bot's half is needed. The
caller joins first, so the relay carries its voice on the uplink rather than the
dev engine's simulated callee's placeholder frames (which are not audio: a bot
would skip them).
"""

from __future__ import annotations

import threading
import time

from speech import SAMPLE_RATE, Utterances, bot_says, caller_says, level_dbfs

from clutchcall import AudioBridge, CallStatus
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


def person(bridge: AudioBridge) -> None:
    """The caller: say something, then wait for the bot to answer."""
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
        bridges = voice.audio_bridge
        with (
            bridges.attach_caller(call.sid, codec="pcm16", sample_rate=SAMPLE_RATE) as phone,
            bridges.attach(call.sid, codec="pcm16", sample_rate=SAMPLE_RATE) as bot_side,
        ):
            caller = threading.Thread(target=person, args=(phone,))
            caller.start()

            def stop() -> None:  # a bound for the demo: closing the bridges ends both loops
                bot_side.close()
                phone.close()

            deadline = threading.Timer(15, stop)
            deadline.start()
            try:
                bot(bot_side)
            finally:
                caller.join(timeout=15)
                deadline.cancel()
        call.hangup()
        print(f"{call.sid} {call.status.value}")


if __name__ == "__main__":
    main()
