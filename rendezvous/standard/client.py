"""A client for the standard dialect: requests on one stream, answers in order.

`open_point` opens a stream on a libp2p connection; `RendezvousPoint.register`,
`discover` and `unregister` send one request each and return Deferreds of the
decoded answers (a refusal is an answer with a status, not an error).
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred

from rendezvous.framing import FrameDecoder, FramingError, frame
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.standard.codec import MAX_RESPONSE_BYTES
from rendezvous.standard.stream import PROTOCOL_ID


class StreamEnded(Exception):
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
            d.errback(StreamEnded(reason or "stream closed"))


def open_point(connection: Connection, protocol_id: str = PROTOCOL_ID) -> Deferred[RendezvousPoint]:
    """A `RendezvousPoint` on a new stream of ``connection``."""
    point = RendezvousPoint()

    def opened(_: Stream) -> RendezvousPoint:
        return point

    d: Deferred[Stream] = connection.open_stream(protocol_id, point)
    return d.addCallback(opened)
