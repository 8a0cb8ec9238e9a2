"""``python -m bench [name ...]``: run the benchmarks (all by default)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from . import audio_latency, codecs, control_plane, scale

BENCHMARKS: dict[str, Callable[[], Any]] = {
    "control_plane": control_plane.run,
    "codecs": codecs.run,
    "audio_latency": audio_latency.run,
    "scale": scale.run,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    for name in names:
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
