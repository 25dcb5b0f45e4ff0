"""The live dialect on a Twisted stream transport: moves bytes, applies backpressure."""

from __future__ import annotations

from collections import deque

from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.live.session import LiveDialect, LiveSession


def describe(address: IAddress) -> str:
    """``tcp 127.0.0.1:4001``, ``unix /run/rendezvous.sock`` and the like, for logs."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    kind = getattr(address, "type", "").lower() or "unix"
    if host is not None and port is not None:
        return f"{kind} {host}:{port}"
    name = getattr(address, "name", None)
    return f"unix {name.decode() if isinstance(name, bytes) else name or '-'}"


@implementer(IPushProducer)
class LiveProtocol(Protocol):
    """One client connection. Writes go straight to the transport until it pushes back;
    then they queue, up to the session's bound, and the client's input is paused."""

    log = Logger()

    def __init__(self, dialect: LiveDialect, clock: IReactorTime, abort_after: float) -> None:
        self.dialect = dialect
        self.clock = clock
        self.abort_after = abort_after
        self.max_pending = dialect.codec.limits.max_pending_bytes
        self._queue: deque[bytes] = deque()
        self._pending = 0
        self._paused = False
        self._closing = False
        self._abort: IDelayedCall | None = None
        self.session: LiveSession | None = None

    def connectionMade(self) -> None:
        self.label = describe(self.transport.getPeer())  # type: ignore[union-attr]
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.log.debug("session opened: {peer}", peer=self.label)
        session = self.dialect.session(self, self.label)
        if session.start():
            self.session = session

    def dataReceived(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._queue.clear()
        if self.session is not None:
            self.session.end()
            self.session = None
        self.log.debug("session closed: {peer}", peer=getattr(self, "label", "?"))

    # -- Channel ------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        if self._closing:
            return True
        if not self._paused:
            self.transport.write(data)  # type: ignore[union-attr]
            return True
        if self._pending + len(data) > self.max_pending:
            return False
        self._queue.append(data)
        self._pending += len(data)
        return True

    def close(self, last: bytes | None = None, *, discard_pending: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        transport = self.transport
        assert transport is not None
        if discard_pending:
            self._queue.clear()
        while self._queue:
            transport.write(self._queue.popleft())
        self._pending = 0
        if last:
            transport.write(last)
        # A registered producer would keep the transport open once its buffer drains.
        transport.unregisterProducer()  # type: ignore[attr-defined]
        transport.loseConnection()
        self._abort = self.clock.callLater(self.abort_after, self._abort_now)

    def _abort_now(self) -> None:
        self._abort = None
        self.log.info("closing {peer} that did not read its last messages", peer=self.label)
        self.transport.abortConnection()  # type: ignore[union-attr]

    # -- IPushProducer: the transport's write buffer --------------------------

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        if not self._paused or self._closing:
            return
        self._paused = False
        transport = self.transport
        assert transport is not None
        queue = self._queue
        while queue and not self._paused:
            data = queue.popleft()
            self._pending -= len(data)
            transport.write(data)
        if not self._paused:
            transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        self._queue.clear()
        self._pending = 0


class LiveFactory(Factory):
    """Builds a `LiveProtocol` per connection, all sharing one `LiveDialect`."""

    noisy = False

    def __init__(self, dialect: LiveDialect, clock: IReactorTime, abort_after: float = 10.0):
        self.dialect = dialect
        self.clock = clock
        self.abort_after = abort_after

    def buildProtocol(self, addr: IAddress | None) -> LiveProtocol:
        protocol = LiveProtocol(self.dialect, self.clock, self.abort_after)
        protocol.factory = self
        return protocol
