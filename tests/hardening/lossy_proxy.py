"""A seeded lossy UDP proxy on loopback: drop, delay (jitter, hence reorder), duplicate.

One client address at a time is forwarded to ``upstream`` (the relay) and the
relay's answers back to the last client address seen. Conditions can change while
it runs (``proxy.loss = 1.0`` is a blackout). Runs in a thread of its own::

    with LossyProxy(("127.0.0.1", relay_port), seed=7, loss=0.05, jitter=0.02) as proxy:
        url = f"moqt://127.0.0.1:{proxy.port}"
"""

from __future__ import annotations

import heapq
import random
import selectors
import socket
import threading
import time


class LossyProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        seed: int,
        loss: float = 0.0,
        delay: float = 0.001,
        jitter: float = 0.0,
        duplicate: float = 0.0,
    ) -> None:
        self.upstream = upstream
        self.loss = loss
        self.delay = delay
        self.jitter = jitter
        self.duplicate = duplicate
        self._random = random.Random(seed)
        self._client_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._client_side.bind(("127.0.0.1", 0))
        self._relay_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._relay_side.bind(("127.0.0.1", 0))
        self.port: int = self._client_side.getsockname()[1]
        self._client: tuple[str, int] | None = None
        self._due: list[tuple[float, int, socket.socket, bytes, tuple[str, int]]] = []
        self._order = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy-proxy", daemon=True)
        self.forwarded = 0
        self.dropped = 0
        self.duplicated = 0

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._client_side.close()
        self._relay_side.close()

    def _schedule(self, sock: socket.socket, data: bytes, to: tuple[str, int]) -> None:
        rng = self._random
        if rng.random() < self.loss:
            self.dropped += 1
            return
        copies = 2 if rng.random() < self.duplicate else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            due = time.monotonic() + self.delay + rng.uniform(0, self.jitter)
            self._order += 1
            heapq.heappush(self._due, (due, self._order, sock, data, to))

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._client_side, selectors.EVENT_READ)
            selector.register(self._relay_side, selectors.EVENT_READ)
            while not self._stop.is_set():
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, _, sock, data, to = heapq.heappop(self._due)
                    try:
                        sock.sendto(data, to)
                        self.forwarded += 1
                    except OSError:
                        pass
                wait = min(0.05, self._due[0][0] - now) if self._due else 0.05
                for key, _ in selector.select(timeout=max(0.0, wait)):
                    side = key.fileobj
                    assert isinstance(side, socket.socket)
                    try:
                        data, source = side.recvfrom(65536)
                    except OSError:
                        continue
                    if side is self._client_side:
                        self._client = source
                        self._schedule(self._relay_side, data, self.upstream)
                    elif self._client is not None:
                        self._schedule(self._client_side, data, self._client)
