"""The live dialect on a Twisted stream transport: moves bytes, applies backpressure."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IHandshakeListener, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.live.admission import TOO_MANY, AddressAdmission, is_loopback
from rendezvous.live.flood import ListenerPause
from rendezvous.live.output import OutputQueue
from rendezvous.live.peertls import PeerCertificates
from rendezvous.live.session import LiveDialect, LiveSession
from rendezvous.loglimit import log_refusal
from rendezvous.logs import ClientAddress, emit
from rendezvous.model import Refused, Status
from rendezvous.nodelay import no_delay
from rendezvous.peercert import PeerCertificateError
from rendezvous.twisted_internals import direct_socket, nothing_queued, send_now

try:
    from twisted.protocols.tls import TLSMemoryBIOProtocol

    _TLS_TRANSPORTS: tuple[type, ...] = (TLSMemoryBIOProtocol,)
except ImportError:  # no pyOpenSSL: no TLS transports either
    _TLS_TRANSPORTS = ()


def describe(address: IAddress) -> str:
    """``tcp 127.0.0.1:4001``, ``unix /run/rendezvous.sock`` and the like, for logs."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    kind = getattr(address, "type", "").lower() or "unix"
    if host is not None and port is not None:
        return f"{kind} {host}:{port}"
    name = getattr(address, "name", None)
    return f"unix {name.decode() if isinstance(name, bytes) else name or '-'}"


class StreamTransport(TypingProtocol):
    """What a live connection's transport does for it: every stream transport it runs
    on (TCP, UNIX, TLS, a PROXY-protocol wrapper) has these."""

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def getPeer(self) -> IAddress: ...
    def registerProducer(self, producer: object, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...


@implementer(IPushProducer, IHandshakeListener)
class LiveProtocol(Protocol):
    """One client connection: bytes in to its `LiveSession`, frames out through an
    `OutputQueue` that applies backpressure (this protocol is its `OutputTransport`,
    over the connection's transport).

    Over TLS the session starts once the handshake is done: a client that presented a
    libp2p certificate is then authenticated as its peer id (see
    `rendezvous.live.peertls`)."""

    log = Logger()
    # Twisted's Protocol types it Optional[ITransport]; a live connection's transport is
    # set before any method here runs, and is a StreamTransport (one ignore, not one per
    # use).
    transport: StreamTransport  # type: ignore[assignment]

    def __init__(self, dialect: LiveDialect, clock: IReactorTime, abort_after: float) -> None:
        self.dialect = dialect
        self.output = OutputQueue(self, clock, dialect.codec.limits.max_pending_bytes, abort_after)
        self.session: LiveSession | None = None
        self._socket: socket.socket | None = None
        self._address: str | None = None
        """The IP address this session counts against, once admitted."""
        self._admitting = False
        """Admission waits for the first bytes (see `connectionMade`)."""
        self._handshaking = False
        """A TLS session waits for the end of the handshake."""
        self._peer_id = ""
        """The peer id a TLS client's certificate proved, for logs."""
        self._opened = False
        """Admitted and started: only such a session's close is logged (a flood of
        refused ones costs no log line each)."""

    def connectionMade(self) -> None:
        self.factory.opened()
        if isinstance(self.transport, _TLS_TRANSPORTS):
            # Its address and certificate are known once the handshake is done.
            self._handshaking = True
            return
        # Behind another wrapper (a PROXY protocol header: ``haproxy:``) the client's
        # address is known for sure once its first bytes arrive: it is admitted then.
        self._admitting = isinstance(self.transport, ProtocolWrapper)
        if not self._admitting and not self._admit():
            return
        self._start(None)

    def handshakeCompleted(self) -> None:
        if not self._handshaking:
            return
        self._handshaking = False
        if not self._admit():
            return
        try:
            key = self.factory.peer_certificates.identity(self.transport)
        except PeerCertificateError as e:
            self._refuse_certificate(e)
            return
        if key is None:
            self._start(None)
        else:
            self._peer_id = key.peer_id_text()
            self._start(key.peer_id())

    def _start(self, identity: bytes | None) -> None:
        """Open the session, as the authenticated ``identity`` if not None."""
        self._opened = True
        no_delay(self.transport)
        self._socket = direct_socket(self.transport)
        self.transport.registerProducer(self, True)
        address = ClientAddress(self)
        emit(
            self.log,
            LogLevel.debug,
            "session opened: {peer}",
            peer=address,
            event="session.opened",
            dialect="live",
        )
        session = self.dialect.session(self.output, address, identity)
        if session.start():
            self.session = session

    def __str__(self) -> str:
        """The client's address (and proven peer id), for logs (made when a line needs
        it, not kept)."""
        transport = self.transport
        if transport is None:
            return "?"
        address = describe(transport.getPeer())
        return f"{address} {self._peer_id}" if self._peer_id else address

    def dataReceived(self, data: bytes) -> None:
        if self._admitting:
            self._admitting = False
            if not self._admit():
                return
        if self.session is not None:
            self.session.feed(data)

    def _admit(self) -> bool:
        """Count this session against its IP address (loopback and UNIX sockets are
        not counted); False, after telling the client, when the address is over its
        limits."""
        address = getattr(self.transport.getPeer(), "host", None)
        if not isinstance(address, str) or is_loopback(address):
            return True
        refusal = self.factory.admission.admit(address)
        if refusal is not None:
            self._refuse(refusal)
            return False
        self._address = address
        return True

    def _refuse(self, reason: str) -> None:
        """Too many sessions, or too fast, from this address: say so and close."""
        dialect = self.dialect
        text = (
            f"too many sessions from {self._peer_host()}"
            if reason == TOO_MANY
            else f"sessions opened too fast from {self._peer_host()}"
        )
        self.factory.refused(reason)
        logged = "too many sessions" if reason == TOO_MANY else "sessions opened too fast"
        log_refusal(
            dialect.log,
            dialect.limiter,
            ClientAddress(self),
            Refused(Status.LIMIT_EXCEEDED, f"{logged} from its address"),
            dialect="live",
        )
        frame = dialect.codec.error_frame(Status.LIMIT_EXCEEDED, text, None)
        session, self.session = self.session, None
        if session is not None:  # admitted late: it had started
            session.leave(frame)
            return
        self.transport.write(frame)
        self.transport.loseConnection()

    def _refuse_certificate(self, error: PeerCertificateError) -> None:
        """A TLS client's certificate proves no identity (or it has none where one is
        required): ERROR 200 saying why, and close."""
        dialect = self.dialect
        dialect.metrics.refused(f"peer_certificate_{error.reason}")
        refusal = Refused(Status.NOT_AUTHORIZED, f"peer certificate refused: {error}")
        log_refusal(dialect.log, dialect.limiter, ClientAddress(self), refusal, dialect="live")
        frame = dialect.codec.error_frame(refusal.status, refusal.text, None)
        self.transport.write(frame)
        self.transport.loseConnection()

    def _peer_host(self) -> str:
        return str(getattr(self.transport.getPeer(), "host", "?"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.closed()
        if self._address is not None:
            self.factory.admission.release(self._address)
            self._address = None
        self._socket = None
        self.output.lost()
        if self.session is not None:
            self.session.end()
            self.session = None
        if not self._opened:
            return
        emit(
            self.log,
            LogLevel.debug,
            "session closed: {peer}",
            peer=ClientAddress(self),
            event="session.closed",
            dialect="live",
        )

    # -- OutputTransport: what the OutputQueue writes through -----------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        sock = self._socket
        # With nothing queued, send at once: a buffered write costs the poller two changes.
        if sock is not None:
            data = send_now(transport, sock, data)
            if not data:
                return
        transport.write(data)

    def idle_socket(self) -> socket.socket | None:
        sock = self._socket
        if sock is None or not nothing_queued(self.transport):
            return None
        return sock

    def pause_reading(self) -> None:
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        self.transport.resumeProducing()

    def finish(self) -> bool:
        self._socket = None
        transport = self.transport
        assert transport is not None
        # A registered producer would keep the transport open once its buffer drains.
        transport.unregisterProducer()
        transport.loseConnection()
        return False

    def abort(self) -> None:
        emit(
            self.log,
            LogLevel.info,
            "closing {peer} that did not read its last messages",
            peer=ClientAddress(self),
            event="session.aborted",
            dialect="live",
        )
        self.transport.abortConnection()

    # -- IPushProducer: the transport's write buffer --------------------------

    def pauseProducing(self) -> None:
        self.output.pause()

    def resumeProducing(self) -> None:
        self.output.resume()

    def stopProducing(self) -> None:
        self.output.lost()


class _Dropped(Protocol):
    """A connection refused before a session was built, on a listener whose transport
    wraps ours (TLS, a PROXY-protocol header) and so needs a protocol: closed at once."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]  # every stream's


class WrappedLiveFactory(Factory):
    """`LiveFactory` behind a wrapping transport (``ssl:``, ``haproxy:``): Twisted's
    wrapping factories build their protocol around ours whatever it is, so a connection
    refused early gets a `_Dropped` rather than None."""

    noisy = False

    def __init__(self, live: LiveFactory) -> None:
        self.live = live

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self.live.buildProtocol(addr) or _Dropped()


class LiveFactory(Factory):
    """Builds a `LiveProtocol` per connection, all sharing one `LiveDialect`."""

    noisy = False

    def __init__(
        self,
        dialect: LiveDialect,
        clock: IReactorTime,
        abort_after: float = 10.0,
        peer_certificates: PeerCertificates | None = None,
    ):
        self.dialect = dialect
        self.clock = clock
        self.abort_after = abort_after
        self.peer_certificates = peer_certificates or PeerCertificates(clock.seconds)
        """What TLS clients' certificates prove, and whether one is required."""
        self.connections = 0
        """Connections open now."""
        limits = dialect.codec.limits
        self.admission = AddressAdmission(
            clock.seconds, limits.max_sessions_per_ip, limits.session_rate_per_ip
        )
        self._drained: list[Callable[[], None]] = []
        self.flood: ListenerPause | None = None
        """Pauses the live listeners when refused connections pour in (set by the
        service, which knows the ports)."""

    def opened(self) -> None:
        self.connections += 1

    def closed(self) -> None:
        self.connections -= 1
        if not self.connections:
            drained, self._drained = self._drained, []
            for fire in drained:
                fire()

    def drained(self, grace: float) -> Deferred[None]:
        """Fires once every connection has closed, or after ``grace`` seconds."""
        done: Deferred[None] = Deferred()

        def fire() -> None:
            if not done.called:
                if timeout.active():
                    timeout.cancel()
                done.callback(None)

        timeout = self.clock.callLater(grace, fire)
        if self.connections:
            self._drained.append(fire)
        else:
            fire()
        return done

    def refused(self, reason: str) -> None:
        """A connection was refused (``reason``): count it, and tell the flood guard."""
        self.dialect.metrics.refused(reason)
        if self.flood is not None:
            self.flood.refused()

    def buildProtocol(self, addr: IAddress | None) -> LiveProtocol | None:
        host = getattr(addr, "host", None)
        if isinstance(host, str):
            reason = self.admission.refuse_early(host)
            if reason is not None:
                # Told less than a second ago: closed without a word (no session, no
                # ERROR, no log line), as cheaply as the reactor allows.
                self.refused(reason)
                return None
        protocol = LiveProtocol(self.dialect, self.clock, self.abort_after)
        protocol.factory = self
        return protocol
