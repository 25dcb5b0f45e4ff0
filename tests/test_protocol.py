"""The live dialect over in-memory transports: the seed's interaction byte for byte,
refusals, cleanup on disconnect and backpressure."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.live.protocol import LiveFactory, LiveProtocol
from rendezvous.pb.live_pb2 import Message
from rendezvous.service import live_dialect
from rendezvous.store.memory import MemoryStore
from rendezvous.varint import encode_uvarint

from .helpers import (
    discover,
    expected_register,
    expected_unregister,
    framed,
    register,
    rendezvous,
    tcp_addr,
    unframe_all,
    unregister,
)

ADDR = {name: tcp_addr(n) for n, name in enumerate("ABCD", start=1)}


class Client:
    """One connection to the server under test, with what it has been sent."""

    def __init__(self, factory: LiveFactory, port: int) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.protocol: LiveProtocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def send(self, *messages: Message) -> None:
        self.protocol.dataReceived(b"".join(framed(m) for m in messages))

    def received(self) -> list[Message]:
        data = self.transport.value()
        self.transport.clear()
        return unframe_all(data)

    def disconnect(self) -> None:
        self.protocol.connectionLost()


class LiveProtocolTests(SynchronousTestCase):
    limits = Limits()

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.limits)
        self.dialect = live_dialect(self.store, self.limits, self.clock)
        self.factory = LiveFactory(self.dialect, self.clock, abort_after=5)
        self.ports = iter(range(40000, 50000))

    def connect(self) -> Client:
        return Client(self.factory, next(self.ports))

    def assertReceived(self, client: Client, *expected: Message) -> None:
        self.assertEqual(client.received(), list(expected))

    def test_seed_interaction(self) -> None:
        """SEED.md's Interaction section, message for message."""
        a, b, c, d = (self.connect() for _ in range(4))
        a.send(register("my-app", "A", ADDR["A"]), rendezvous("my-app"))
        self.assertReceived(a)

        b.send(register("my-app", "B", ADDR["B"]), rendezvous("my-app"))
        self.assertReceived(b, expected_register("my-app", ("A", (ADDR["A"],))))
        self.assertReceived(a, expected_register("my-app", ("B", (ADDR["B"],))))

        c.send(register("my-app", "C", ADDR["C"]), rendezvous("my-app"))
        self.assertReceived(
            c, expected_register("my-app", ("A", (ADDR["A"],)), ("B", (ADDR["B"],)))
        )
        self.assertReceived(a, expected_register("my-app", ("C", (ADDR["C"],))))
        self.assertReceived(b, expected_register("my-app", ("C", (ADDR["C"],))))

        d.send(discover("my-app"))
        self.assertReceived(
            d,
            expected_register("my-app", *[(n, (ADDR[n],)) for n in "ABC"]),
        )

    def test_discover_limit_and_request_id(self) -> None:
        a, d = self.connect(), self.connect()
        for name in "ABC":
            a.send(register("ns", name))
        d.send(discover("ns", limit=2, request_id=77), discover("empty", request_id=78))
        self.assertReceived(
            d,
            expected_register("ns", ("A", ()), ("B", ()), request_id=77),
            expected_register("empty", request_id=78),
        )

    def test_reregister_unregister_and_disconnect_are_announced(self) -> None:
        a, watcher = self.connect(), self.connect()
        watcher.send(rendezvous("one"), rendezvous("two"))
        a.send(
            register("one", "A", ADDR["A"]),
            register("two", "A"),
            register("one", "A", ADDR["B"]),
            unregister("two", "A"),
            unregister("two", "A"),
        )
        self.assertReceived(
            watcher,
            expected_register("one", ("A", (ADDR["A"],))),
            expected_register("two", ("A", ())),
            expected_register("one", ("A", (ADDR["B"],))),
            expected_unregister("two", "A"),
        )
        self.assertReceived(a)  # no error for the second UNREGISTER
        a.disconnect()
        self.assertReceived(watcher, expected_unregister("one", "A", ADDR["B"]))
        self.assertEqual(self.store.stats().registrations, 0)

    def test_several_entries_in_one_message(self) -> None:
        a, watcher = self.connect(), self.connect()
        watcher.send(rendezvous("x"))
        message = register("x", "A")
        message.register.append(register("x", "B").register[0])
        a.send(message)
        self.assertEqual(len(watcher.received()), 2)

    def assertRefused(self, client: Client, status: int, request_id: int | None = None) -> Message:
        [reply] = client.received()
        self.assertEqual((reply.type, reply.error.status), (Message.ERROR, status))
        if request_id is not None:
            self.assertEqual(reply.request_id, request_id)
        self.assertTrue(reply.error.text)
        return reply

    def test_refusals_answer_and_keep_the_session(self) -> None:
        a, b = self.connect(), self.connect()
        a.send(register("ns", "A"))
        cases = [
            (b"\x0a\xff", 1001),  # malformed protobuf
            (b"\x08\x63", 1001),  # unknown type
            (register("", "A", request_id=1).SerializeToString(), 100),
            (register("x" * 256, "B").SerializeToString(), 100),
            (b"\x08\x03\x2a\x04\x0a\x02\xff\xfe", 100),  # non-UTF-8 namespace
            (register("ns", "B", b"\x04\x01\x02").SerializeToString(), 1002),
            (register("ns", "A", request_id=5).SerializeToString(), 200),  # A is a's
            (unregister("ns", "A", request_id=6).SerializeToString(), 200),
        ]
        for payload, status in cases:
            b.protocol.dataReceived(encode_uvarint(len(payload)) + payload)
            self.assertRefused(b, status)
            self.assertFalse(b.transport.disconnecting)
        b.send(discover("ns", request_id=9))
        self.assertReceived(b, expected_register("ns", ("A", ()), request_id=9))
        self.assertReceived(a)

    def test_unframeable_input_closes_only_that_session(self) -> None:
        bad, good = self.connect(), self.connect()
        good.send(rendezvous("ns"))
        bad.send(register("ns", "X"))
        good.received()
        bad.protocol.dataReceived(b"\xff" * 11)
        self.assertRefused(bad, 1001)
        self.assertTrue(bad.transport.disconnecting)
        self.assertReceived(good, expected_unregister("ns", "X"))
        bad.protocol.dataReceived(framed(register("ns", "Y")))  # after close: ignored
        self.assertReceived(good)

    def test_oversized_frame_closes_the_session(self) -> None:
        client = self.connect()
        client.protocol.dataReceived(encode_uvarint(self.limits.max_frame_bytes + 1))
        self.assertRefused(client, 1001)
        self.assertTrue(client.transport.disconnecting)

    def test_close_aborts_a_client_that_does_not_read(self) -> None:
        client = self.connect()
        client.protocol.dataReceived(b"\xff" * 11)
        self.assertFalse(client.transport.disconnected)
        self.clock.advance(5)
        self.assertTrue(client.transport.disconnected)


class LimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = Limits(
            max_sessions=2,
            max_registrations_per_session=1,
            max_subscriptions_per_session=1,
            max_pending_bytes=200,
        )
        self.store = MemoryStore(self.limits)
        self.dialect = live_dialect(self.store, self.limits, self.clock)
        self.factory = LiveFactory(self.dialect, self.clock)
        self.ports = iter(range(40000, 50000))

    def connect(self) -> Client:
        return Client(self.factory, next(self.ports))

    def test_session_limits(self) -> None:
        a = self.connect()
        a.send(
            register("one", "A"),
            register("two", "A", request_id=3),
            rendezvous("one"),
            rendezvous("two"),
        )
        errors = a.received()
        self.assertEqual([(m.error.status, m.request_id) for m in errors], [(1003, 3), (1003, 0)])

    def test_session_cap_refuses_and_closes(self) -> None:
        self.connect()
        self.connect()
        third = self.connect()
        [reply] = third.received()
        self.assertEqual(reply.error.status, 400)
        self.assertTrue(third.transport.disconnecting)
        self.assertEqual(self.store.stats().sessions, 2)

    def test_slow_subscriber_dropped_others_served(self) -> None:
        slow, fast = self.connect(), self.connect()
        slow.send(rendezvous("ns"))
        fast.send(rendezvous("ns"))
        slow.protocol.pauseProducing()  # its socket buffer is full
        self.assertEqual(slow.transport.producerState, "paused")
        fast.send(unregister("ns", "nobody"))  # fast also publishes, within the session cap
        published = 0
        while not slow.transport.disconnecting and published < 50:
            fast.send(register("ns", "F", tcp_addr(published % 256)))
            published += 1
        self.assertTrue(slow.transport.disconnecting)
        self.assertLess(published, 50)
        [last] = unframe_all(slow.transport.value())[-1:]
        self.assertEqual((last.type, last.error.status), (Message.ERROR, 400))
        self.assertEqual(self.store.stats().subscriptions, 1)
        self.assertEqual(self.store.stats().sessions, 1)
        # Pushes go on for the others.
        other = self.connect()
        other.send(register("ns", "O"))
        self.assertEqual(fast.received(), [expected_register("ns", ("O", ()))])

    def test_paused_subscriber_catches_up_on_resume(self) -> None:
        sub, pub = self.connect(), self.connect()
        sub.send(rendezvous("ns"))
        sub.protocol.pauseProducing()
        pub.send(register("ns", "A"))
        self.assertEqual(sub.transport.value(), b"")
        sub.protocol.resumeProducing()
        self.assertEqual(sub.received(), [expected_register("ns", ("A", ()))])
        self.assertEqual(sub.transport.producerState, "producing")
