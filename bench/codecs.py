"""Codec speed as a multiple of real time on one core (the baseline is the audio's own
duration). Goal: Opus encode + decode >= 200x real time for 20 ms mono frames."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from clutchcall.audio import make_codec, synth_prompt

from ._report import table, write

GOAL_OPUS_X = 200.0
SECONDS = 12.0


@contextlib.contextmanager
def _one_core() -> Iterator[None]:
    """Run on one core for the duration (the other benchmarks need them all back)."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _measure(codec: str, rate: int, **options: Any) -> dict[str, float]:
    pcm = synth_prompt(rate)
    reps = int(SECONDS / (len(pcm) / rate)) + 1
    audio = np.concatenate([pcm] * reps)
    enc = make_codec(codec, sample_rate=rate, channels=1, frame_ms=20, **options)
    dec = make_codec(codec, sample_rate=rate, channels=1, frame_ms=20)
    n = enc.samples_per_frame
    frames = [audio[i : i + n] for i in range(0, len(audio) - n + 1, n)]
    duration = len(frames) * 0.020
    best_enc = best_dec = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        packets = [enc.encode(f) for f in frames]
        t1 = time.perf_counter()
        for p in packets:
            dec.decode(p)
        t2 = time.perf_counter()
        best_enc, best_dec = min(best_enc, t1 - t0), min(best_dec, t2 - t1)
    return {
        "audio_seconds": duration,
        "encode_x": duration / best_enc,
        "decode_x": duration / best_dec,
        "roundtrip_x": duration / (best_enc + best_dec),
    }


def run() -> dict[str, Any]:
    with _one_core():
        return _run()


def _run() -> dict[str, Any]:
    cases: list[tuple[str, str, int, dict[str, Any]]] = [
        ("opus 48k mono, defaults", "opus", 48000, {}),
        ("opus 48k mono, complexity 10", "opus", 48000, {"complexity": 10}),
        ("opus 48k mono, 64 kbit/s", "opus", 48000, {"bitrate": 64000}),
        ("pcm16 48k mono", "pcm16", 48000, {}),
        ("g711 mu-law 8k", "g711_ulaw", 8000, {}),
        ("g711 a-law 8k", "g711_alaw", 8000, {}),
    ]
    results: dict[str, Any] = {}
    rows = []
    for label, codec, rate, options in cases:
        r = _measure(codec, rate, **options)
        results[label] = r
        goal = ""
        if codec == "opus":
            goal = "yes" if r["roundtrip_x"] >= GOAL_OPUS_X else "NO"
        rows.append([label, r["encode_x"], r["decode_x"], r["roundtrip_x"], goal])
    print(
        table(
            "codecs: x real time on one core, 20 ms frames (baseline: the audio's duration)",
            ["codec", "encode x", "decode x", "enc+dec x", "opus goal 200x"],
            rows,
        )
    )
    path = write("codecs", {"goal_opus_roundtrip_x": GOAL_OPUS_X, "results": results})
    print(f"  -> {path}\n")
    return results
