"""Processes the tests start: their ready line, waited for within a bound, and their
end (asked to stop by the test, then killed by pid if they linger)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import AnyStr

#: A moq-rs server (PyPI ``moq-rs``) on a free loopback port, for ``argv[1]`` seconds
#: at most; it prints its address and certificate fingerprints, then serves.
MOQRS_SERVER = """
import asyncio, sys, moq
async def main():
    async with moq.Server("127.0.0.1:0", tls_generate=["localhost"]) as server:
        print(server.local_addr, ",".join(server.cert_fingerprints()), flush=True)
        try:
            await asyncio.wait_for(server.serve(), float(sys.argv[1]))
        except asyncio.TimeoutError:
            pass
asyncio.run(main())
"""


def ready_line(proc: subprocess.Popen[AnyStr], timeout: float) -> AnyStr | None:
    """The first line ``proc`` prints, or None if it prints none within ``timeout``
    seconds (or ends first)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=timeout)
    line = proc.stdout.readline() if ready else None
    return line or None


def reap(proc: subprocess.Popen[AnyStr]) -> None:
    """Wait for ``proc``, already asked to stop, to exit; kill it (by its pid) if it is
    still running after 10 s; close its output pipes."""
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def moqrs_server(log_path: Path, seconds: float = 120) -> Iterator[tuple[int, tuple[str, ...]]]:
    """A moq-rs server on 127.0.0.1 for at most ``seconds``: its UDP port and its
    certificate's SHA-256 fingerprints. Its log goes to ``log_path``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", MOQRS_SERVER, str(seconds)],
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "RUST_LOG": "error"},
        )
    try:
        line = ready_line(proc, 30)
        fields = line.decode().split() if line else []
        if len(fields) != 2:
            raise RuntimeError(f"moq-rs server did not start: {log_path.read_text()!r}")
        address, fingerprints = fields
        yield int(address.rsplit(":", 1)[1]), tuple(fingerprints.split(","))
    finally:
        proc.terminate()
        reap(proc)
