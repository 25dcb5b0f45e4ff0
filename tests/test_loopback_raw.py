"""Raw frames over real loopback TCP: the seed's interaction and every bad input,
byte-exact, with no client library in between."""

from __future__ import annotations

from collections.abc import Iterator

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from rendezvous.framing import FrameDecoder
from rendezvous.pb.live_pb2 import Message
from rendezvous.service import Daemon, DaemonConfig
from rendezvous.varint import encode_uvarint

from .helpers import (
    discover,
    expected_register,
    expected_unregister,
    framed,
    register,
    rendezvous,
    tcp_addr,
    unregister,
)

ADDR = {name: tcp_addr(n) for n, name in enumerate("ABCD", start=1)}
_barrier_ids: Iterator[int] = iter(range(10_000, 1_000_000))


class RawClient(Protocol):
    """Sends raw bytes, collects every message the server sends."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder(1 << 24)
        self.messages: list[Message] = []
        self.payloads: list[bytes] = []
        """Each kept message's bytes, as the server sent them."""
        self.lost: Deferred[None] = Deferred()
        self._waiting: dict[int, Deferred[None]] = {}
        self._count_waiters: list[tuple[int, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        for payload in self.decoder.feed(data):
            message = Message()
            message.ParseFromString(payload)
            waiter = self._waiting.pop(message.request_id, None)
            if waiter is not None and message.type == Message.REGISTER:
                waiter.callback(None)  # a barrier's reply: not kept
            else:
                self.messages.append(message)
                self.payloads.append(payload)
        for pair in list(self._count_waiters):
            if len(self.messages) >= pair[0]:
                self._count_waiters.remove(pair)
                pair[1].callback(None)

    def until(self, count: int) -> Deferred[None]:
        """Fires once ``count`` messages are held (pushes from another daemon come
        through Redis, after the barrier of this one)."""
        d: Deferred[None] = Deferred()
        if len(self.messages) >= count:
            d.callback(None)
        else:
            self._count_waiters.append((count, d))
        return d

    def take_bytes(self) -> list[bytes]:
        payloads, self.payloads = self.payloads, []
        self.messages = []
        return payloads

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)

    def send(self, *messages: Message | bytes) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"".join(m if isinstance(m, bytes) else framed(m) for m in messages)
        )

    def settle(self) -> Deferred[None]:
        """Fires once the server has answered everything sent so far."""
        request_id = next(_barrier_ids)
        d: Deferred[None] = Deferred()
        self._waiting[request_id] = d
        self.send(discover("barrier", request_id=request_id))
        return d

    def take(self) -> list[Message]:
        messages, self.messages = self.messages, []
        self.payloads = []
        return messages


def raw(payload: bytes) -> bytes:
    return encode_uvarint(len(payload)) + payload


class RawLoopbackTests(TestCase):
    def setUp(self) -> None:
        self.daemon = Daemon(DaemonConfig(listen=("tcp:0:interface=127.0.0.1",)), reactor)
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        self.port = self.daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]

    @inlineCallbacks
    def connect_many(self, count: int):  # type: ignore[no-untyped-def]
        clients = []
        for _ in range(count):
            clients.append((yield self.connect()))
        return clients

    @inlineCallbacks
    def connect(self):  # type: ignore[no-untyped-def]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        client = yield endpoint.connect(Factory.forProtocol(RawClient))
        self.addCleanup(self.close, client)
        return client

    def close(self, client: RawClient) -> Deferred[None] | None:
        if client.lost.called:
            return None
        client.transport.loseConnection()  # type: ignore[union-attr]
        return client.lost

    @inlineCallbacks
    def settle(self, *clients: RawClient):  # type: ignore[no-untyped-def]
        for client in clients:
            yield client.settle()

    @inlineCallbacks
    def test_seed_interaction_exact_messages(self):  # type: ignore[no-untyped-def]
        a, b, c, d = yield self.connect_many(4)
        a.send(register("my-app", "A", ADDR["A"]), rendezvous("my-app"))
        yield self.settle(a)
        b.send(register("my-app", "B", ADDR["B"]), rendezvous("my-app"))
        yield self.settle(b, a)
        self.assertEqual(b.take(), [expected_register("my-app", ("A", (ADDR["A"],)))])
        self.assertEqual(a.take(), [expected_register("my-app", ("B", (ADDR["B"],)))])
        c.send(register("my-app", "C", ADDR["C"]), rendezvous("my-app"))
        yield self.settle(c, a, b)
        self.assertEqual(
            c.take(), [expected_register("my-app", ("A", (ADDR["A"],)), ("B", (ADDR["B"],)))]
        )
        self.assertEqual(a.take(), [expected_register("my-app", ("C", (ADDR["C"],)))])
        self.assertEqual(b.take(), [expected_register("my-app", ("C", (ADDR["C"],)))])
        d.send(discover("my-app", request_id=1))
        yield self.settle(d)
        self.assertEqual(
            d.take(),
            [expected_register("my-app", *[(n, (ADDR[n],)) for n in "ABC"], request_id=1)],
        )
        # Disconnect cleanup: C goes, A and B are told, DISCOVER no longer lists it.
        yield self.close(c)
        b.send(unregister("my-app", "B"))
        yield self.settle(b)
        yield self.settle(a)
        self.assertEqual(
            a.take(),
            [
                expected_unregister("my-app", "C", ADDR["C"]),
                expected_unregister("my-app", "B", ADDR["B"]),
            ],
        )
        self.assertEqual(b.take(), [expected_unregister("my-app", "C", ADDR["C"])])
        d.send(discover("my-app", request_id=2))
        yield self.settle(d)
        self.assertEqual(d.take(), [expected_register("my-app", ("A", (ADDR["A"],)), request_id=2)])

    @inlineCallbacks
    def test_every_bad_input_is_answered_and_harms_nobody(self):  # type: ignore[no-untyped-def]
        owner, bad, watcher = yield self.connect_many(3)
        owner.send(register("ns", "A", ADDR["A"]))
        watcher.send(rendezvous("ns"))
        yield self.settle(owner, watcher)
        self.assertEqual(len(watcher.take()), 1)
        many_addrs = register("ns", "B", *[tcp_addr(n) for n in range(17)])
        bad_id = register("ns", "B")
        bad_id.register[0].peer.id = "QmNotAPeerId"
        cases: list[tuple[bytes, int]] = [
            (raw(b"\x0a\xff"), 1001),  # malformed protobuf
            (raw(b"\x08\x63"), 1001),  # unknown message type
            (framed(register("", "B")), 100),  # empty namespace
            (framed(register("x" * 256, "B")), 100),  # over-long namespace
            (raw(b"\x08\x03\x2a\x04\x0a\x02\xff\xfe"), 100),  # non-UTF-8 namespace
            (framed(register("ns", "B", b"\x04\x01\x02")), 1002),  # bad multiaddr
            (framed(many_addrs), 1002),  # too many addresses
            (framed(bad_id), 1002),  # bad peer id
            (framed(register("ns", "A", request_id=7)), 200),  # another session's peer
            (framed(unregister("ns", "A", request_id=8)), 200),
        ]
        for payload, status in cases:
            bad.send(payload)
            yield self.settle(bad)
            [reply] = bad.take()
            self.assertEqual((reply.type, reply.error.status), (Message.ERROR, status), payload)
        bad.send(unregister("ns", "nobody"))  # not registered: no error, no announcement
        yield self.settle(bad, watcher, owner)
        self.assertEqual(bad.take() + watcher.take() + owner.take(), [])

    @inlineCallbacks
    def test_limits_per_session(self):  # type: ignore[no-untyped-def]
        client = yield self.connect()
        client.send(*[register(f"ns{n}", "A") for n in range(257)])
        client.send(*[rendezvous(f"w{n}") for n in range(65)])
        yield self.settle(client)
        self.assertEqual([m.error.status for m in client.take()], [1003, 1003])

    @inlineCallbacks
    def test_unframeable_input_closes_with_a_reason(self):  # type: ignore[no-untyped-def]
        for payload in (b"\xff" * 11, encode_uvarint(65537)):
            client, other = yield self.connect_many(2)
            client.send(register("ns", "X"))
            other.send(rendezvous("ns"))
            yield self.settle(client, other)
            other.take()
            client.send(payload)
            yield client.lost
            [reply] = client.take()
            self.assertEqual((reply.type, reply.error.status), (Message.ERROR, 1001))
            yield self.settle(other)
            self.assertEqual(other.take(), [expected_unregister("ns", "X")])
