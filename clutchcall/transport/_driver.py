"""The loop that runs one aioquic ``QuicConnection`` on anyio.

Its owner (the client context manager or the server) feeds it received UDP
datagrams through :meth:`Driver.datagram_received` and runs :meth:`Driver.run`
in a task group; ``run`` transmits what aioquic has to send, fires its timers
and keeps a quiet connection alive. What the QUIC events mean is up to the
:class:`~clutchcall.transport.Connection` bound to it (:meth:`Driver.bind`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import anyio
from aioquic.quic import events as quic_events
from aioquic.quic.packet import QuicErrorCode

from ._quic import FlowControlledQuicConnection
from ._sockets import SendDatagram, SendDatagramNowait
from .backend import Signal, Waker, clock

logger = logging.getLogger(__name__)

TRANSMIT_COALESCE = 0.001
"""Longest a received packet waits for the transmit pass that answers it (seconds);
aioquic delays its ACKs by as much (1 ms), so the pass that sends the ACK serves all
packets received in between. Data the application sends goes out at once."""

_FOLLOWED = (quic_events.HandshakeCompleted, quic_events.ConnectionTerminated)


def _ignore(*args: Any) -> None:
    pass


class Driver:
    """Feeds one QUIC connection, transmits for it and fires its timers."""

    def __init__(
        self,
        quic: FlowControlledQuicConnection,
        send: SendDatagram,
        *,
        send_nowait: SendDatagramNowait | None = None,
        keepalive: float | None = None,
    ) -> None:
        self.quic = quic
        self._send = send
        self._send_nowait = send_nowait
        self._keepalive = keepalive
        self._now: Callable[[], float] = clock()
        #: Ends the driver's wait between passes: something to send, or a deadline.
        self._waker = Waker()
        self._transmit_count = 0
        #: A transmit pass is handing datagrams to the socket (it may await on the way).
        self._sending = False
        self._handshake_done = False
        self._terminated = anyio.Event()
        #: The connection has fully terminated: nothing more is received or sent.
        self.ended = False
        #: Notified after every transmit pass, received datagram and timer.
        self.progress = Signal()
        #: Sees every QUIC event first (the server tracks connection ids with it).
        self.event_listener: Callable[[quic_events.QuicEvent], None] | None = None
        self._on_event: Callable[[quic_events.QuicEvent], None] = _ignore
        self._after_events: Callable[[bool], None] = _ignore
        self._after_transmit: Callable[[], None] = _ignore
        self._finished: Callable[[bool], None] = _ignore

    def bind(
        self,
        *,
        on_event: Callable[[quic_events.QuicEvent], None],
        after_events: Callable[[bool], None],
        after_transmit: Callable[[], None],
        finished: Callable[[bool], None],
    ) -> None:
        """Set what handles the connection's events: ``on_event(event)`` for each,
        ``after_events(received)`` once they are all handled (``received``: they
        came from a datagram rather than a timer), ``after_transmit()`` after each
        transmit pass, ``finished(failed)`` when :meth:`run` ends."""
        self._on_event = on_event
        self._after_events = after_events
        self._after_transmit = after_transmit
        self._finished = finished

    def wakeup(self) -> None:
        """Have :meth:`run` transmit now (something was queued in aioquic)."""
        self._waker.set()

    async def flush(self) -> None:
        """Wait for one more transmit pass."""
        target = self._transmit_count + 1
        self.wakeup()
        while self._transmit_count < target and not self.ended:
            await self.progress.wait()

    async def wait_close_sent(self) -> None:
        """Wait until a requested CONNECTION_CLOSE has been handed to the socket."""
        # aioquic hands the close over before the socket has it: a send that awaits
        # (trio, or a full buffer) must finish too, else cancelling the driver loses it.
        while (self.quic.close_pending or self._sending) and not self.ended:
            await self.progress.wait()

    async def wait_terminated(self) -> None:
        await self._terminated.wait()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Feed one UDP datagram from the peer (called by the socket reader)."""
        if self.ended:
            return
        try:
            self.quic.receive_datagram(data, addr, now=self._now())
        except Exception:
            logger.debug("dropped a datagram aioquic could not handle", exc_info=True)
            return
        self._process_events(received=True)
        waker = self._waker
        if waker.waiting and (self._handshake_done or self.quic.closing):
            # What a received packet calls for (its ACK, a retransmission its ACK
            # revealed, more credit) goes out with the next transmit, at most
            # TRANSMIT_COALESCE from now: a burst of packets shares one pass.
            waker.advance(self._now() + TRANSMIT_COALESCE)
        else:
            self.wakeup()
        self.progress.notify()

    async def run(self) -> None:
        """Transmit and run timers until the connection has fully terminated."""
        quic = self.quic
        next_ping = math.inf
        if self._keepalive:
            next_ping = self._now() + self._keepalive
        failed = False
        try:
            waker = self._waker
            while not self.ended:
                waker.clear()
                await self._transmit()
                self._after_transmit()
                if self.ended:
                    break
                timer_at = quic.get_timer()
                deadline = math.inf if timer_at is None else timer_at
                await waker.wait(min(deadline, next_ping))
                now = self._now()
                if timer_at is not None and now >= timer_at:
                    quic.handle_timer(now=now)
                    self._process_events(received=False)
                    self.progress.notify()
                if self._keepalive and now >= next_ping:
                    # A PING keeps a quiet but healthy connection from idling out.
                    if self._handshake_done and not quic.closing:
                        quic.send_ping(0)
                    next_ping = now + self._keepalive
        except Exception:
            logger.exception("QUIC connection driver failed")
            failed = True
        finally:
            self.ended = True
            self._finished(failed)
            self._terminated.set()
            self.progress.notify()

    async def _transmit(self) -> None:
        datagrams = self.quic.datagrams_to_send(now=self._now())
        # Hand the datagrams to the socket without a scheduling round per datagram;
        # once the socket would block, the rest wait their turn in order.
        send_nowait = self._send_nowait
        self._sending = True
        try:
            for data, addr in datagrams:
                try:
                    if send_nowait is None or not send_nowait(data, addr):
                        send_nowait = None
                        await self._send(data, addr)
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    logger.debug("could not send a datagram to %r", addr, exc_info=True)
        finally:
            self._sending = False
        self._transmit_count += 1
        self.progress.notify()

    def _process_events(self, *, received: bool) -> None:
        quic = self.quic
        while (event := quic.next_event()) is not None:
            try:
                if self.event_listener is not None:
                    self.event_listener(event)
                if isinstance(event, _FOLLOWED):
                    if isinstance(event, quic_events.HandshakeCompleted):
                        self._handshake_done = True
                    else:
                        self.ended = True
                self._on_event(event)
            except Exception:
                logger.exception("failed to handle %s; closing the connection", event)
                quic.close(QuicErrorCode.INTERNAL_ERROR, reason_phrase="internal error")
        self._after_events(received)
