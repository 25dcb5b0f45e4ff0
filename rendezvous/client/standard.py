"""The client of the standard dialect (`/rendezvous/1.0.0`).

`RendezvousPoint` is our side of one standard-dialect stream: its ``register``,
``discover`` and ``unregister`` each send one request and return a Deferred of the
decoded answer, answered in order (a refusal is an answer with a status, not an error);
`open_point` opens one on a libp2p connection.

`StandardClient` puts it behind the live client's request API: it answers
``discover``, ``register`` and ``unregister`` like `rendezvous.client.live.LiveClient`,
so the command line reads the same in both dialects: registrations are signed peer
records of our own id, renewed at half the TTL the server granted; a refusal fails with
a `RendezvousError`. The dialect has no push, hence no ``rendezvous`` (watch).
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous.client.errors import error_for
from rendezvous.client.live import PeerEntry
from rendezvous.client.p2p import dial
from rendezvous.framing import FrameDecoder, FramingError, frame
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.envelope import InvalidEnvelope, PeerRecord, open_peer_record, seal_peer_record
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.peerid import peer_id_to_text
from rendezvous.standard.codec import MAX_RESPONSE_BYTES
from rendezvous.standard.stream import PROTOCOL_ID


class StreamClosed(Exception):
    """The stream ended before every request was answered."""


class RendezvousPoint(StreamProtocol):
    """Our side of one standard-dialect stream."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder(MAX_RESPONSE_BYTES + 1024)
        self._waiting: deque[Deferred[Message]] = deque()

    def register(
        self, namespace: str, signed_peer_record: bytes, ttl: int = 0
    ) -> Deferred[Message]:
        """REGISTER; fires with the REGISTER_RESPONSE (``ttl`` 0: the server's default)."""
        message = Message(type=Message.REGISTER)
        message.register.ns = namespace
        message.register.signedPeerRecord = signed_peer_record
        if ttl:
            message.register.ttl = ttl
        return self._request(message)

    def discover(
        self, namespace: str = "", limit: int = 0, cookie: bytes = b""
    ) -> Deferred[Message]:
        """DISCOVER (``namespace`` empty: all); fires with the DISCOVER_RESPONSE."""
        message = Message(type=Message.DISCOVER)
        message.discover.ns = namespace
        if limit:
            message.discover.limit = limit
        if cookie:
            message.discover.cookie = cookie
        return self._request(message)

    def unregister(self, namespace: str) -> None:
        """UNREGISTER: the spec has no answer to it."""
        message = Message(type=Message.UNREGISTER)
        message.unregister.ns = namespace
        self._send(message)

    def close(self) -> None:
        """Half-close: the server ends the stream once it has answered."""
        if self.stream is not None:
            self.stream.close()

    def _request(self, message: Message) -> Deferred[Message]:
        d: Deferred[Message] = Deferred()
        self._waiting.append(d)
        self._send(message)
        return d

    def _send(self, message: Message) -> None:
        assert self.stream is not None
        self.stream.write(frame(message.SerializeToString()))

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self._decoder.feed(data)
        except FramingError:
            if self.stream is not None:
                self.stream.reset()
            return
        for payload in payloads:
            message = Message()
            message.ParseFromString(payload)
            if self._waiting:
                self._waiting.popleft().callback(message)

    def stream_closed(self, reason: str | None) -> None:
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(StreamClosed(reason or "stream closed"))


def open_point(connection: Connection, protocol_id: str = PROTOCOL_ID) -> Deferred[RendezvousPoint]:
    """A `RendezvousPoint` on a new stream of ``connection``."""
    point = RendezvousPoint()

    def opened(_: Stream) -> RendezvousPoint:
        return point

    d: Deferred[Stream] = connection.open_stream(protocol_id, point)
    return d.addCallback(opened)


class _Point(RendezvousPoint):
    """A `RendezvousPoint` whose ``closed`` fires when its stream is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: Deferred[None] = Deferred()

    def stream_closed(self, reason: str | None) -> None:
        super().stream_closed(reason)
        if not self.closed.called:
            self.closed.callback(None)


def _checked(status: int, text: str) -> None:
    if status != Message.OK:
        raise error_for(status, text)


def entries(response: Message.DiscoverResponse) -> list[PeerEntry]:
    """The registrations of a DISCOVER_RESPONSE whose records open (others are skipped)."""
    found = []
    for registration in response.registrations:
        try:
            record, _ = open_peer_record(registration.signedPeerRecord)
        except InvalidEnvelope:
            continue
        found.append(
            PeerEntry(
                registration.ns,
                peer_id_to_text(record.peer_id),
                record.addrs,
                registration.signedPeerRecord,
            )
        )
    return found


class StandardClient:
    """One standard-dialect stream on a connection this client closes when done."""

    log = Logger()

    def __init__(
        self, point: _Point, connection: Connection, identity: PrivateKey, clock: IReactorTime
    ) -> None:
        self._point = point
        self._connection = connection
        self._identity = identity
        self._clock = clock
        self._renewals: dict[str, IDelayedCall] = {}
        self.closed = point.closed

    def discover(self, namespace: str, limit: int = 0) -> Deferred[list[PeerEntry]]:
        """At most ``limit`` registrations (0: the server's default)."""

        def answered(message: Message) -> list[PeerEntry]:
            response = message.discoverResponse
            _checked(response.status, response.statusText)
            return entries(response)

        return self._point.discover(namespace, limit).addCallback(answered)

    def register(
        self, namespace: str, peer_id: str, addrs: list[bytes] | tuple[bytes, ...] = ()
    ) -> Deferred[None]:
        """Register our own id with ``addrs``; renewed until `unregister` or `disconnect`."""
        if peer_id != self._identity.peer_id_text():
            return fail(error_for(Message.E_NOT_AUTHORIZED, "only our own id can be registered"))
        seq = int(self._clock.seconds() * 1_000_000)
        record = seal_peer_record(
            self._identity, PeerRecord(self._identity.peer_id(), seq, tuple(addrs))
        )

        def answered(message: Message) -> None:
            response = message.registerResponse
            _checked(response.status, response.statusText)
            self._cancel(namespace)
            if response.ttl:
                self._renewals[namespace] = self._clock.callLater(
                    response.ttl / 2, self._renew, namespace, peer_id, tuple(addrs)
                )

        return self._point.register(namespace, record).addCallback(answered)

    def _renew(self, namespace: str, peer_id: str, addrs: tuple[bytes, ...]) -> None:
        del self._renewals[namespace]

        def failed(error: object) -> None:
            self.log.warn(
                "renewing the registration in {namespace} failed: {error}",
                namespace=namespace,
                error=error,
            )

        self.register(namespace, peer_id, addrs).addErrback(failed)

    def unregister(self, namespace: str, peer_id: str) -> Deferred[None]:
        """UNREGISTER (the spec has no answer): fires once the server has read it."""
        self._cancel(namespace)
        self._point.unregister(namespace)
        barrier = self._point.discover(namespace, 1)
        return barrier.addCallback(lambda _: None)

    def disconnect(self) -> None:
        for namespace in list(self._renewals):
            self._cancel(namespace)
        self._point.close()
        self._connection.close()

    def _cancel(self, namespace: str) -> None:
        renewal = self._renewals.pop(namespace, None)
        if renewal is not None and renewal.active():
            renewal.cancel()


def connect_standard(
    reactor: IReactorTCP, address: TCPAddress, identity: PrivateKey
) -> Deferred[StandardClient]:
    """Dial ``address`` as ``identity`` and open a standard-dialect stream."""
    point = _Point()

    def connected(connection: Connection) -> Deferred[StandardClient]:
        opened: Deferred[Stream] = connection.open_stream(PROTOCOL_ID, point)

        def ready(_: Stream) -> StandardClient:
            return StandardClient(point, connection, identity, reactor)  # type: ignore[arg-type]

        def failed(failure: Failure) -> Failure:
            connection.close()
            return failure

        return opened.addCallbacks(ready, failed)

    return dial(reactor, address, identity).addCallback(connected)


__all__ = [
    "RendezvousPoint",
    "StandardClient",
    "StreamClosed",
    "connect_standard",
    "entries",
    "open_point",
]
