"""``calls.get`` through Voice / AsyncVoice against a raw httpx GET of the same URL.

Both sides talk to the same dev engine over loopback, interleaved in blocks so
drift in the machine's load hits them alike. Goal: SDK p50 <= 1.05x raw httpx.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx

from clutchcall.dev import Engine

from ._report import summarize, table, write

GOAL_P50_RATIO = 1.05


def _sync(engine: Engine, sid: str, rounds: int, block: int) -> dict[str, list[float]]:
    url = f"{engine.base_url}/v1/orgs/{engine.org_id}/calls/{sid}"
    headers = {"Authorization": f"Bearer {engine.api_key}"}
    out: dict[str, list[float]] = {"sdk": [], "httpx": []}
    with engine.voice() as voice, httpx.Client(headers=headers) as raw:
        for _ in range(20):  # warm both connection pools
            voice.calls.get(sid=sid)
            raw.get(url).json()
        for _ in range(rounds // block):
            for _ in range(block):
                t = time.perf_counter()
                voice.calls.get(sid=sid)
                out["sdk"].append(time.perf_counter() - t)
            for _ in range(block):
                t = time.perf_counter()
                raw.get(url).json()
                out["httpx"].append(time.perf_counter() - t)
    return out


async def _async(engine: Engine, sid: str, rounds: int, block: int) -> dict[str, list[float]]:
    url = f"{engine.base_url}/v1/orgs/{engine.org_id}/calls/{sid}"
    headers = {"Authorization": f"Bearer {engine.api_key}"}
    out: dict[str, list[float]] = {"sdk": [], "httpx": []}
    async with engine.async_voice() as voice, httpx.AsyncClient(headers=headers) as raw:
        for _ in range(20):
            await voice.calls.get(sid=sid)
            (await raw.get(url)).json()
        for _ in range(rounds // block):
            for _ in range(block):
                t = time.perf_counter()
                await voice.calls.get(sid=sid)
                out["sdk"].append(time.perf_counter() - t)
            for _ in range(block):
                t = time.perf_counter()
                (await raw.get(url)).json()
                out["httpx"].append(time.perf_counter() - t)
    return out


def run(rounds: int = 2000, block: int = 100) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with Engine(time_scale=0.01) as engine, engine.voice() as setup:
        sid = setup.calls.originate(to="+15551234567", from_="+15558675309", trunk_id="t").sid
        runs = {
            "Voice (sync)": _sync(engine, sid, rounds, block),
            "AsyncVoice (asyncio)": anyio.run(_async, engine, sid, rounds, block),
            "AsyncVoice (trio)": anyio.run(_async, engine, sid, rounds, block, backend="trio"),
        }
    rows = []
    for name, samples in runs.items():
        sdk, raw = summarize(samples["sdk"]), summarize(samples["httpx"])
        ratio50, ratio99 = sdk["p50"] / raw["p50"], sdk["p99"] / raw["p99"]
        results[name] = {"sdk": sdk, "httpx": raw, "p50_ratio": ratio50, "p99_ratio": ratio99}
        rows.append(
            [
                name,
                sdk["p50"] * 1e3,
                raw["p50"] * 1e3,
                ratio50,
                sdk["p99"] * 1e3,
                raw["p99"] * 1e3,
                ratio99,
                "yes" if ratio50 <= GOAL_P50_RATIO else "NO",
            ]
        )
    print(
        table(
            f"control plane: calls.get vs raw httpx GET, {rounds} requests each (ms)",
            ["client", "p50", "httpx p50", "ratio", "p99", "httpx p99", "ratio", "p50 goal"],
            rows,
        )
    )
    path = write("control_plane", {"goal_p50_ratio": GOAL_P50_RATIO, "results": results})
    print(f"  -> {path}\n")
    return results
