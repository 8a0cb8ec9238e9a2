"""Trio users: the speech bot of async_speech_bot.py in trio's own terms (a nursery,
trio.fail_after), with the same bridges.

.venv/bin/python examples/trio_speech_bot.py
"""

from __future__ import annotations

import trio
from async_speech_bot import bot, person
from speech import SAMPLE_RATE

from clutchcall import CallStatus
from clutchcall.dev import Engine


async def main() -> None:
    with Engine(time_scale=0.1) as engine:
        async with engine.async_voice() as voice:
            call = await voice.calls.originate(
                to="+15551234567", from_="+15558675309", trunk_id="trunk_main"
            )
            with trio.fail_after(10):
                while (await voice.calls.get(sid=call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            bridges = voice.audio_bridge
            with trio.fail_after(15):
                async with (
                    await bridges.attach_caller(
                        call.sid, codec="pcm16", sample_rate=SAMPLE_RATE
                    ) as phone,
                    await bridges.attach(call.sid, codec="pcm16", sample_rate=SAMPLE_RATE) as b,
                    trio.open_nursery() as nursery,
                ):
                    nursery.start_soon(bot, b)
                    await person(phone)
            await call.hangup()
            print(f"{call.sid} {call.status.value}")


if __name__ == "__main__":
    trio.run(main)
