"""ping `/ipfs/ping/1.0.0`: echo every 32-byte payload; measure a round trip."""

from __future__ import annotations

import os
from typing import Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from rendezvous.p2p.stream import PeerConnection, Stream, StreamProtocol

PROTOCOL_ID: Final = "/ipfs/ping/1.0.0"
PAYLOAD_SIZE: Final = 32


class PingError(Exception):
    """The peer did not echo our payload."""


class PingResponder(StreamProtocol):
    """Echoes whole 32-byte payloads until the peer closes the stream."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        whole = len(buffer) - len(buffer) % PAYLOAD_SIZE
        if whole and self.stream is not None:
            self.stream.write(bytes(buffer[:whole]))
            del buffer[:whole]

    def end_received(self) -> None:
        if self.stream is not None:
            self.stream.close()


class _PingRequest(StreamProtocol):
    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.payload = os.urandom(PAYLOAD_SIZE)
        self.sent_at = 0.0
        self.answer: Deferred[float] = Deferred()
        self._received = bytearray()

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        self.sent_at = self.clock.seconds()
        stream.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self._received += data
        if len(self._received) < PAYLOAD_SIZE or self.answer.called:
            return
        assert self.stream is not None
        if bytes(self._received[:PAYLOAD_SIZE]) == self.payload:
            self.answer.callback(self.clock.seconds() - self.sent_at)
            self.stream.close()
        else:
            self.answer.errback(PingError("the peer echoed other bytes"))
            self.stream.reset()

    def stream_closed(self, reason: str | None) -> None:
        if not self.answer.called:
            self.answer.errback(PingError(f"ping stream closed: {reason or 'no answer'}"))


def ping(connection: PeerConnection, clock: IReactorTime) -> Deferred[float]:
    """Ping the peer once; fires with the round-trip time in seconds."""
    request = _PingRequest(clock)
    opened = connection.open_stream(PROTOCOL_ID, request)

    def answered(_: Stream) -> Deferred[float]:
        return request.answer

    return opened.addCallback(answered)
