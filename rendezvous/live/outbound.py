"""A session's outgoing bytes with backpressure, whatever carries them.

Writes go straight to the carrier until it pushes back; then they queue, up to a
bound, and the client's input is paused. Closing flushes (or discards) the queue,
sends a last message and gives the client a grace period to read it before aborting.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Carrier(Protocol):
    """A byte stream to one client: a TCP/TLS/UNIX transport or a libp2p stream."""

    def write(self, data: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def finish(self) -> bool:
        """Close after what was written; True when already closed for good."""

    def abort(self) -> None:
        """Close at once, unsent bytes lost."""


class _Gone:
    """The carrier of a session whose connection is lost: writes go nowhere."""

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


_GONE = _Gone()


class Outbound:
    """A `rendezvous.live.session.LiveOutput` over a `Carrier`."""

    __slots__ = (
        "_abort",
        "_carrier",
        "_clock",
        "_queue",
        "abort_after",
        "closing",
        "max_pending",
        "paused",
        "pending",
    )

    def __init__(
        self, carrier: Carrier, clock: IReactorTime, max_pending: int, abort_after: float
    ) -> None:
        self._carrier = carrier
        self._clock = clock
        self.max_pending = max_pending
        self.abort_after = abort_after
        self._queue: deque[bytes] | None = None
        """Made when the carrier first pushes back: most sessions never need one."""
        self.pending = 0
        """Bytes queued here, not yet handed to the carrier."""
        self.paused = False
        self.closing = False
        self._abort: IDelayedCall | None = None

    def send(self, data: bytes) -> bool:
        if self.closing:
            return True
        if not self.paused:
            self._carrier.write(data)
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
        carrier = self._carrier
        queue, self._queue = self._queue, None
        if queue and not discard_pending:
            for data in queue:
                carrier.write(data)
        self.pending = 0
        if last:
            carrier.write(last)
        if not carrier.finish():
            self._abort = self._clock.callLater(self.abort_after, self._abort_now)

    def _abort_now(self) -> None:
        self._abort = None
        self._carrier.abort()

    def pause(self) -> None:
        """The carrier pushes back: queue from now on, and stop reading the client."""
        if not self.paused:
            self.paused = True
            self._carrier.pause_reading()

    def resume(self) -> None:
        """The carrier drained: flush the queue, then read the client again."""
        if not self.paused or self.closing:
            return
        self.paused = False
        carrier = self._carrier
        queue = self._queue
        while queue and not self.paused:
            data = queue.popleft()
            self.pending -= len(data)
            carrier.write(data)
        if not self.paused:
            carrier.resume_reading()

    def lost(self) -> None:
        """The connection is gone: drop what is queued, forget the abort, and let go
        of the carrier (which holds us: no cycle is left for the garbage collector)."""
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None
        self._queue = None
        self.pending = 0
        self._carrier = _GONE
