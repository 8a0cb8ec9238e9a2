"""The dev relay alone in a process of its own, so that tests can measure its memory.

Run as ``python relay_process.py``: it creates ``CALLS`` answered calls in a fresh
store, starts the relay on a free loopback port and prints one JSON line: the
relay's URL, the CA file that trusts it, and for each call its sid and a
``server`` and a ``caller`` bridge token. Then it answers each line on stdin:
``stats`` prints the relay's :meth:`~clutchcall.dev.relay.Relay.stats` as JSON;
end of input stops the relay and the process.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import anyio

from clutchcall import transport
from clutchcall.dev._state import Store
from clutchcall.dev.relay import Relay
from clutchcall.moqt import VoiceRole

CALLS = 2
ORG = "org_hostile"


async def main() -> None:
    store = Store(time_scale=1.0, clock=time.monotonic)
    calls = []
    for n in range(CALLS):
        call, _ = store.originate(
            org_id=ORG,
            to="+15551234567",
            from_="+15558675309",
            trunk_id="trunk_main",
            agent=None,
            ring_timeout=None,
            idempotency_key=None,
            fingerprint=str(n),
        )
        calls.append(
            {
                "sid": call.sid,
                "server": store.mint_bridge_token(call, VoiceRole.SERVER).token,
                "caller": store.mint_bridge_token(call, VoiceRole.CALLER).token,
            }
        )
    certificate = transport.generate_self_signed()
    with tempfile.TemporaryDirectory(prefix="clutchcall-relay-") as directory:
        certificate.write(Path(directory))
        relay = Relay(store, certificate=certificate)
        async with anyio.create_task_group() as tg:
            await tg.start(relay.serve)
            ready = {"url": relay.url, "ca_file": str(Path(directory) / "cert.pem"), "calls": calls}
            print(json.dumps(ready), flush=True)
            async for line in anyio.wrap_file(sys.stdin):
                if line.strip() == "stats":
                    print(json.dumps(dataclasses.asdict(relay.stats())), flush=True)
            await relay.stop()


if __name__ == "__main__":
    anyio.run(main)
