"""A live session's output with backpressure, whatever transport carries it.

Writes go straight to the transport until it pushes back; then they queue, up to a
bound, and the client's input is paused. Closing flushes (or discards) the queue,
sends a last message and gives the client a grace period to read it before aborting.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class OutputTransport(Protocol):
    """What an `OutputQueue` writes to: a byte stream to one client, a TCP/TLS/UNIX
    connection's transport or a libp2p stream (`LiveProtocol` and `LiveStream` adapt
    theirs)."""

    def write(self, data: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def finish(self) -> bool:
        """Close after what was written; True when already closed for good."""

    def abort(self) -> None:
        """Close at once, unsent bytes lost."""

    def idle_socket(self) -> socket.socket | None:
        """The connection's socket when the transport has nothing queued, for a push
        written directly; None for a transport that is not a plain socket."""


class _Gone:
    """The transport of a session whose connection is lost: writes go nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def finish(self) -> bool:
        return True

    def abort(self) -> None:
        pass

    def idle_socket(self) -> socket.socket | None:
        return None


_GONE = _Gone()


class OutputQueue:
    """A `rendezvous.live.session.LiveOutput` over an `OutputTransport`: what is queued
    for one client, within ``max_pending`` bytes."""

    __slots__ = (
        "_abort",
        "_clock",
        "_queue",
        "_transport",
        "abort_after",
        "closing",
        "max_pending",
        "paused",
        "pending",
    )

    def __init__(
        self, transport: OutputTransport, clock: IReactorTime, max_pending: int, abort_after: float
    ) -> None:
        self._transport = transport
        self._clock = clock
        self.max_pending = max_pending
        self.abort_after = abort_after
        self._queue: deque[bytes] | None = None
        """Made when the transport first pushes back: most sessions never need one."""
        self.pending = 0
        """Bytes queued here, not yet handed to the transport."""
        self.paused = False
        self.closing = False
        self._abort: IDelayedCall | None = None

    def idle_socket(self) -> socket.socket | None:
        if self.paused or self.closing or self._queue:
            return None
        return self._transport.idle_socket()

    def send(self, data: bytes) -> bool:
        if self.closing:
            return True
        if not self.paused:
            self._transport.write(data)
            return True
        if self.pending + len(data) > self.max_pending:
            return False
        if self._queue is None:
            self._queue = deque()
        self._queue.append(data)
        self.pending += len(data)
        return True

    def close(self, last: bytes | None = None, *, discard_pending: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        transport = self._transport
        queue, self._queue = self._queue, None
        if queue and not discard_pending:
            for data in queue:
                transport.write(data)
        self.pending = 0
        if last:
            transport.write(last)
        if not transport.finish():
            self._abort = self._clock.callLater(self.abort_after, self._abort_now)

    def _abort_now(self) -> None:
        self._abort = None
        self._transport.abort()

    def pause(self) -> None:
        """The transport pushes back: queue from now on, and stop reading the client."""
        if not self.paused:
            self.paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        """The transport drained: flush the queue, then read the client again."""
        if not self.paused or self.closing:
            return
        self.paused = False
        transport = self._transport
        queue = self._queue
        while queue and not self.paused:
            data = queue.popleft()
            self.pending -= len(data)
            transport.write(data)
        if not self.paused:
            transport.resume_reading()

    def lost(self) -> None:
        """The connection is gone: drop what is queued, forget the abort, and let go
        of the transport (which holds us: no cycle is left for the garbage collector)."""
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None
        self._queue = None
        self.pending = 0
        self._transport = _GONE
