"""A Twisted client for the live dialect, over a raw stream or a libp2p stream.

The live dialect answers only DISCOVER and refusals, so to learn that a REGISTER,
UNREGISTER or RENDEZVOUS succeeded the client follows it with a DISCOVER carrying the
same request id: the server answers in order, so the DISCOVER's reply means success
(and, for RENDEZVOUS, that the snapshot has been delivered) and an ERROR with the id
means refusal.

`LiveClient` is the byte-level session, without I/O of its own; `LiveClientProtocol`
runs it over a Twisted transport, `rendezvous.client.p2p.LiveClientStream` over a
libp2p stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.internet.interfaces import IReactorCore, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous.client.errors import ConnectionClosed, RendezvousError, error_for
from rendezvous.client.peertls import identity_endpoint, is_tls_target
from rendezvous.framing import FrameDecoder, FramingError, frame
from rendezvous.model import Status
from rendezvous.p2p.envelope import Signer
from rendezvous.pb.live_pb2 import Message


@dataclass(frozen=True, slots=True)
class PeerEntry:
    """A registration as the server reports it."""

    namespace: str
    peer_id: str
    addrs: tuple[bytes, ...]
    signed_peer_record: bytes | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A REGISTER or UNREGISTER delivered to a subscription."""

    kind: str
    """``register`` or ``unregister``."""
    entry: PeerEntry


EventHandler = Callable[[Event], None]


def _entry(item: Message.Register | Message.Unregister) -> PeerEntry:
    peer = item.peer
    record = peer.signed_peer_record if peer.HasField("signed_peer_record") else None
    return PeerEntry(item.ns, peer.id, tuple(peer.addrs), record)


class LiveClient:
    """One session with a rendezvous server; subclasses move its bytes."""

    log = Logger()

    def __init__(self, max_frame: int = 16 * 1024 * 1024) -> None:
        self._decoder = FrameDecoder(max_frame)
        self._pending: dict[int, tuple[Deferred[list[PeerEntry]], list[PeerEntry]]] = {}
        self._next_id = 1
        self._handlers: dict[str, list[EventHandler]] = {}
        self.closed: Deferred[None] = Deferred()
        self.connected = False
        self.close_reason: str | None = None
        """Why the session ended, once it has."""
        self.going_away: str | None = None
        """The server's words when it said it is shutting down (an unsolicited ERROR
        400): a client should reconnect elsewhere at once."""

    # -- requests ---------------------------------------------------------------

    def register(
        self,
        namespace: str,
        peer_id: str,
        addrs: list[bytes] | tuple[bytes, ...] = (),
        signed_peer_record: bytes | None = None,
    ) -> Deferred[None]:
        """Register ``peer_id`` in ``namespace``; fires once the server has accepted it."""
        message = Message(type=Message.REGISTER)
        item = message.register.add(ns=namespace)
        item.peer.id = peer_id
        item.peer.addrs.extend(addrs)
        if signed_peer_record is not None:
            item.peer.signed_peer_record = signed_peer_record
        return self._confirmed(message, namespace)

    def unregister(self, namespace: str, peer_id: str) -> Deferred[None]:
        message = Message(type=Message.UNREGISTER)
        message.unregister.add(ns=namespace).peer.id = peer_id
        return self._confirmed(message, namespace)

    def rendezvous(self, namespace: str, handler: EventHandler) -> Deferred[None]:
        """Subscribe: ``handler`` gets the current registrations, then every change.

        Fires once the current registrations have all been handed to ``handler``.
        """
        self._handlers.setdefault(namespace, []).append(handler)
        message = Message(type=Message.RENDEZVOUS)
        message.rendezvous.add(ns=namespace)
        return self._confirmed(message, namespace)

    def discover(self, namespace: str, limit: int = 0) -> Deferred[list[PeerEntry]]:
        """At most ``limit`` registrations (0: the server's default)."""
        message = Message(type=Message.DISCOVER)
        message.discovery.add(ns=namespace, limit=limit)
        request_id = self._new_request()
        message.request_id = request_id
        self._send(message)
        return self._pending[request_id][0]

    def _confirmed(self, message: Message, namespace: str) -> Deferred[None]:
        request_id = self._new_request()
        message.request_id = request_id
        self._send(message)
        barrier = Message(type=Message.DISCOVER, request_id=request_id)
        barrier.discovery.add(ns=namespace, limit=1)
        self._send(barrier)
        d = self._pending[request_id][0]
        return d.addCallback(lambda _: None)

    def _new_request(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        d: Deferred[list[PeerEntry]] = Deferred()
        if not self.connected:
            d.errback(ConnectionClosed("not connected"))
        self._pending[request_id] = (d, [])
        return request_id

    def _send(self, message: Message) -> None:
        if self.connected:
            self._write(frame(message.SerializeToString()))

    # -- what a subclass provides and calls -----------------------------------------

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def disconnect(self) -> None:
        """Close the session (the server then removes what it registered)."""
        raise NotImplementedError

    def _opened(self) -> None:
        self.connected = True

    def _lost(self, reason: str) -> None:
        self.connected = False
        if self.close_reason is None:
            self.close_reason = reason
        self._fail_all(ConnectionClosed(reason))
        if not self.closed.called:
            self.closed.callback(None)

    # -- replies and pushes -------------------------------------------------------

    def _bytes_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FramingError as e:
            self.log.error("unframeable data from the server: {error}", error=e)
            self.disconnect()
            return
        for payload in frames:
            message = Message()
            try:
                message.ParseFromString(payload)
            except Exception:
                self.log.error("malformed message from the server")
                continue
            self._received(message)

    def _received(self, message: Message) -> None:
        request_id = message.request_id if message.HasField("request_id") else None
        if message.type == Message.ERROR:
            error = error_for(message.error.status, message.error.text)
            if request_id is not None:
                pending = self._pending.pop(request_id, None)
                if pending is not None:
                    pending[0].errback(error)
            else:
                if message.error.status == Status.UNAVAILABLE:
                    self.going_away = message.error.text or "the server is going away"
                self.log.warn("server: {error}", error=error)
                self._fail_all(error)
        elif message.type == Message.REGISTER and request_id is not None:
            pending = self._pending.pop(request_id, None)
            if pending is not None:
                pending[0].callback([_entry(item) for item in message.register])
        elif message.type == Message.REGISTER:
            for item in message.register:
                self._dispatch(Event("register", _entry(item)))
        elif message.type == Message.UNREGISTER:
            for unregister in message.unregister:
                self._dispatch(Event("unregister", _entry(unregister)))

    def _dispatch(self, event: Event) -> None:
        for handler in self._handlers.get(event.entry.namespace, ()):
            handler(event)

    def _fail_all(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for d, _ in pending.values():
            d.errback(error)


# ``connected`` is a bool here, an int in Twisted's BaseProtocol.
class LiveClientProtocol(LiveClient, Protocol):  # type: ignore[misc]
    """A session over a Twisted transport (TCP, TLS, UNIX socket)."""

    def connectionMade(self) -> None:
        self._opened()

    def dataReceived(self, data: bytes) -> None:
        self._bytes_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost(reason.getErrorMessage())

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def disconnect(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


def _host_port(target: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``) split, or None for a strport or anything else."""
    if ":" in target and target.split(":", 1)[0] in {"tcp", "tls", "ssl", "unix"}:
        return None
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit():
        return host.strip("[]"), int(port)
    return None


def endpoint_description(target: str) -> str:
    """A client strport for ``target``; ``host:port`` is shorthand for TCP."""
    split = _host_port(target)
    return target if split is None else f"tcp:host={split[0]}:port={split[1]}"


class _SessionFactory(Factory):
    """A `LiveClientProtocol` per connection, without a log line for each."""

    protocol = LiveClientProtocol
    noisy = False


def connect(
    reactor: IReactorCore, target: str, identity: Signer | None = None
) -> Deferred[LiveClientProtocol]:
    """Connect to a rendezvous server given a client strport or ``host:port``; with
    ``identity``, over TLS (``tls:``/``ssl:``) presenting a libp2p certificate for it,
    so the server authenticates the session as its peer id (ValueError for another
    kind of target)."""
    split = _host_port(target)
    description = endpoint_description(target)
    endpoint: IStreamClientEndpoint
    if identity is None and split is not None:
        endpoint = TCP4ClientEndpoint(reactor, *split)  # as the strport would (IPv6 too)
    elif identity is None:
        endpoint = clientFromString(reactor, description)
    elif is_tls_target(description):
        endpoint = identity_endpoint(
            reactor, description, identity, IReactorTime(reactor).seconds()
        )
    else:
        raise ValueError(f"an identity is presented over tls: or ssl: only, not {target!r}")
    return cast("Deferred[LiveClientProtocol]", endpoint.connect(_SessionFactory()))


__all__ = [
    "Event",
    "LiveClient",
    "LiveClientProtocol",
    "PeerEntry",
    "RendezvousError",
    "connect",
    "endpoint_description",
]
