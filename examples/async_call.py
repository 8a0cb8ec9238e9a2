"""The same call with AsyncVoice; runs on asyncio or trio unchanged.

.venv/bin/python examples/async_call.py          # asyncio
.venv/bin/python examples/async_call.py trio     # trio
"""

from __future__ import annotations

import sys

import anyio

from clutchcall import AsyncVoice, CallStatus
from clutchcall.audio import AudioSource, DecodeError, make_codec, synth_prompt
from clutchcall.dev import Engine


async def talk(voice: AsyncVoice) -> None:
    call = await voice.calls.originate(
        to="+15551234567", from_="+15558675309", trunk_id="trunk_main", agent="echo"
    )
    with anyio.fail_after(10):
        while (await voice.calls.get(sid=call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    decoder = make_codec("opus")
    async with (
        await voice.audio_bridge.attach_caller(call.sid) as caller,
        anyio.create_task_group() as tg,
    ):

        async def listen() -> None:
            heard = 0
            async for frame in caller.downlink():  # the echo agent repeats us
                try:
                    decoder.decode(frame.data)
                except DecodeError:
                    # Before we speak, the agent hears (and repeats) the dev engine's
                    # simulated callee, whose placeholder frames are not Opus.
                    continue
                heard += 1
                if heard == 40:
                    print(f"heard our own voice back: {heard} frames")
                    tg.cancel_scope.cancel()

        tg.start_soon(listen)
        await AudioSource([synth_prompt(48000)], codec="opus").run(caller.publish_uplink)
        await anyio.sleep(2)
        tg.cancel_scope.cancel()
    await call.hangup()
    print(f"{call.sid} {call.status.value}")


async def main() -> None:
    with Engine(time_scale=0.2) as engine:
        async with engine.async_voice() as voice:
            await talk(voice)


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
