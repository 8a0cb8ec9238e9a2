"""Trio users: nothing changes but the event loop (see async_call.py for the call itself)."""

from __future__ import annotations

import trio
from async_call import main

if __name__ == "__main__":
    trio.run(main)
