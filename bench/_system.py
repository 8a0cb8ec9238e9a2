"""What the scale benchmarks read about processes and cores (Linux ``/proc``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) clock ticks since boot, from /proc/stat."""
    ticks: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(v) for v in fields]
                idle = values[3] + values[4]  # idle + iowait
                ticks[int(name[3:])] = (sum(values) - idle, sum(values))
    return ticks


def core_load(before: dict[int, tuple[int, int]]) -> dict[int, float]:
    """Each core's busy fraction since ``before`` (a :func:`core_busy` reading)."""
    now = core_busy()
    return {
        core: (now[core][0] - busy) / max(1, now[core][1] - total)
        for core, (busy, total) in before.items()
        if core in now
    }


class CoreSplit:
    """Keep one core for this process and the others for the processes it starts.

    ``with split.others():`` around starting subprocesses gives them (they inherit
    the affinity) every core but this process's; ``with split.mine():`` then pins
    this process to its core, so the figure is what one core sustains with nothing
    else of the benchmark scheduled on it.
    """

    def __init__(self) -> None:
        self.available = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else set()
        self.core = max(self.available) if len(self.available) > 1 else -1

    @contextlib.contextmanager
    def others(self) -> Iterator[None]:
        if self.core < 0:
            yield
            return
        os.sched_setaffinity(0, self.available - {self.core})
        try:
            yield
        finally:
            os.sched_setaffinity(0, self.available)

    @contextlib.contextmanager
    def mine(self) -> Iterator[None]:
        if self.core < 0:
            yield
            return
        os.sched_setaffinity(0, {self.core})
        try:
            yield
        finally:
            os.sched_setaffinity(0, self.available)
