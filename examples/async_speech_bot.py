"""Speech in, speech out on AsyncVoice (asyncio or trio): a bot hears the caller as
PCM, finds the end of each utterance and answers with synthesised audio.

.venv/bin/python examples/async_speech_bot.py          # asyncio
.venv/bin/python examples/async_speech_bot.py trio     # trio

The bot is the server side of the call's audio (``attach``). The person on the
phone is played by a caller-side bridge in the same script, as a softphone would;
on a real call only the bot's half is needed. The caller joins first, so the
relay carries its voice on the uplink rather than the dev engine's simulated
callee's placeholder frames (which are not audio: a bot would skip them).
"""

from __future__ import annotations

import sys

import anyio
from speech import SAMPLE_RATE, Utterances, bot_says, caller_says, level_dbfs

from clutchcall import AsyncAudioBridge, AsyncVoice, CallStatus
from clutchcall.audio import AsyncPcmBridge
from clutchcall.dev import Engine


async def bot(bridge: AsyncAudioBridge, *, answers: int = 1) -> None:
    """Listen on the uplink; answer each utterance (stop after ``answers`` of them)."""
    pcm = AsyncPcmBridge(bridge)
    utterances = Utterances()
    heard = pcm.uplink()
    async for frame in heard:
        seconds = utterances.push(frame.samples, frame.duration_us)
        if seconds is not None:
            print(f"bot: heard {seconds:.1f} s of speech; answering")
            await pcm.publish_downlink(bot_says(), sample_rate=SAMPLE_RATE, flush=True)
            answers -= 1
            if not answers:
                break
    # Frames that are not audio in the bridge's format are skipped, not fatal.
    print(f"bot: {heard.frames} frames decoded, {heard.decode_errors} skipped")


async def person(bridge: AsyncAudioBridge) -> None:
    """The caller: say something, then wait for the bot to answer."""
    pcm = AsyncPcmBridge(bridge)
    answer = pcm.downlink()
    await pcm.publish_uplink(caller_says(), sample_rate=SAMPLE_RATE, flush=True)
    async for frame in answer:
        if level_dbfs(frame.samples) > -35:
            print("caller: the bot answered")
            return


async def talk(voice: AsyncVoice) -> None:
    call = await voice.calls.originate(
        to="+15551234567", from_="+15558675309", trunk_id="trunk_main"
    )
    with anyio.fail_after(10):
        while (await voice.calls.get(sid=call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    bridges = voice.audio_bridge
    with anyio.fail_after(15):
        async with (
            await bridges.attach_caller(call.sid, codec="pcm16", sample_rate=SAMPLE_RATE) as phone,
            await bridges.attach(call.sid, codec="pcm16", sample_rate=SAMPLE_RATE) as bot_side,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(bot, bot_side)
            await person(phone)
    await call.hangup()
    print(f"{call.sid} {call.status.value}")


async def main() -> None:
    with Engine(time_scale=0.1) as engine:
        async with engine.async_voice() as voice:
            await talk(voice)


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
