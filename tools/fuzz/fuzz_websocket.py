"""Fuzz the WebSocket listener (autobahn's framing inside our `_ServerProtocol`).

``data[0] % 2`` picks what the stranger sends: 0, a valid HTTP upgrade request and then
the fuzzed bytes as frames; 1, the fuzzed bytes from the first byte on (the handshake
too). ``data[1]`` picks the read size. No exception may escape ``dataReceived`` (under
Twisted that is an unhandled error and a dropped connection, not a clean close), the
wrapped libp2p protocol may only see bytes of binary messages, and what the
WebSocket holds stays within one message (1 MiB) and the handshake limit (16 KiB).
"""

from __future__ import annotations

import struct

from _harness import chunks, instrumented, main
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

with instrumented("rendezvous", "autobahn"):
    from autobahn.websocket.protocol import WebSocketProtocol

    from rendezvous.p2p.websocket import MAX_HANDSHAKE_BYTES, MAX_MESSAGE_BYTES, _ServerFactory

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:4002\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class _Recorder(Protocol):
    received = 0
    lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


class _Transport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()

    def unregisterProducer(self) -> None:
        # As a TCP transport does, unlike StringTransport: no producer is no error.
        self.producer = None


def _connect() -> tuple[WebSocketProtocol, _Transport, list[_Recorder], Clock]:
    clock = Clock()
    recorders: list[_Recorder] = []

    def build() -> _Recorder:
        recorder = _Recorder()
        recorders.append(recorder)
        return recorder

    factory = _ServerFactory(Factory.forProtocol(build), clock, 0)  # type: ignore[arg-type]
    protocol = factory.buildProtocol(None)
    transport = _Transport(
        peerAddress=IPv4Address("TCP", "10.0.0.1", 5000),
        hostAddress=IPv4Address("TCP", "10.0.0.2", 4002),
    )
    protocol.makeConnection(transport)
    return protocol, transport, recorders, clock


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    protocol, transport, recorders, clock = _connect()
    stream = (UPGRADE if data[0] % 2 == 0 else b"") + data[2:]
    fed = 0
    for piece in chunks(data[1:2] + stream):
        if transport.disconnecting or protocol.state == WebSocketProtocol.STATE_CLOSED:
            break
        protocol.dataReceived(piece)
        fed += len(piece)
        if protocol.state == WebSocketProtocol.STATE_CONNECTING:
            assert len(protocol.data) <= MAX_HANDSHAKE_BYTES or transport.aborted
        elif protocol.state == WebSocketProtocol.STATE_OPEN:
            held = len(protocol.data) + (getattr(protocol, "message_data_total_length", 0) or 0)
            assert held <= MAX_MESSAGE_BYTES + 14 + len(piece), "holds too much"
    for recorder in recorders:
        assert recorder.received <= fed
    clock.advance(60)
    protocol.connectionLost(Failure(ConnectionDone()))


def _frame(payload: bytes, opcode: int = 2, fin: bool = True) -> bytes:
    mask = b"\x01\x02\x03\x04"
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def seeds() -> list[bytes]:
    return [
        b"\x00\x00" + _frame(b"\x13/multistream/1.0.0\n"),
        b"\x00\x07" + _frame(b"ab", fin=False) + _frame(b"cd", opcode=0) + _frame(b"", 9),
        b"\x00\x00" + _frame(b"text", opcode=1),
        b"\x00\x00" + _frame(b"x" * 300) + _frame(b"\x03\xe8", opcode=8),
        b"\x01\x00" + UPGRADE + _frame(b"hi"),
        b"\x01\x03" + UPGRADE.replace(b"13", b"8"),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
