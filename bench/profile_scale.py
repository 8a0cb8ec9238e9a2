"""Profile a steady step of the SDK-alone scale benchmark: ``python -m bench.profile_scale``.

Starts ``python -m bench.scale_sdk --steps ENDS --hold HOLD`` (one step, then its
frames keep flowing), waits until it holds its calls, then samples it with py-spy
(``py-spy record --pid``, so neither the start-up nor the opening of the calls is
in the profile) for DURATION seconds, and prints :mod:`bench.profile_layers`'
breakdown scaled by the step's CPU per frame. py-spy stops the process for each
sample (its non-blocking mode reads torn stacks under this load and misplaces
whole layers); ``--native`` also samples C code (crypto, system calls, the
collector), which makes each stop longer. The speedscope file is written under
``bench/results/`` (open it at speedscope.app).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import profile_layers
from ._report import RESULTS

STEP_LINE = re.compile(r"us/frame sdk ([0-9.]+)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_scale")
    parser.add_argument("--ends", type=int, default=100)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--native", action="store_true")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = "native" if args.native else "python"
    out = RESULTS / f"profile-{args.backend}-{args.ends}-{kind}.speedscope.json"
    hold = args.duration + 15
    bench = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.scale_sdk",
            "--backend",
            args.backend,
            "--steps",
            str(args.ends),
            "--hold",
            str(hold),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    per_frame = 0.0
    try:
        assert bench.stdout is not None
        deadline = time.monotonic() + 300
        for line in bench.stdout:
            print(line, end="", flush=True)
            if found := STEP_LINE.search(line):
                per_frame = float(found.group(1))
            if "holding" in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark did not reach its steady step in time")
        else:
            raise RuntimeError("the benchmark ended before holding its calls")
        time.sleep(2)  # past the switch from the measured step to the hold
        command = [
            py_spy,
            "record",
            "--pid",
            str(bench.pid),
            "--duration",
            str(args.duration),
            "--rate",
            str(args.rate),
            "--format",
            "speedscope",
            "-o",
            str(out),
        ]
        if args.native:
            command.append("--native")
        subprocess.run(command, check=True, timeout=args.duration + 60)
        for line in bench.stdout:
            print(line, end="", flush=True)
        bench.wait(timeout=120)
    finally:
        if bench.poll() is None:
            bench.terminate()
            bench.wait(timeout=30)
    print(f"profile: {out}")
    return profile_layers.main([str(out), "--per-frame", str(per_frame)])


if __name__ == "__main__":
    raise SystemExit(main())
