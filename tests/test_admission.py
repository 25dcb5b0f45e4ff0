"""Sessions per IP address on raw live-dialect listeners: how many at once, how fast."""

from __future__ import annotations

from typing import cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.client.errors import LimitExceeded
from rendezvous.client.live import LiveClientProtocol
from rendezvous.limits import Limits
from rendezvous.live.admission import TOO_FAST, TOO_MANY, AddressAdmission, is_loopback
from rendezvous.live.flood import ListenerPause
from rendezvous.live.protocol import LiveFactory, LiveProtocol, WrappedLiveFactory
from rendezvous.pb.live_pb2 import Message
from rendezvous.service import live_dialect
from rendezvous.store.memory import MemoryStore

from .helpers import unframe_all
from .processes import ProcessTestCase
from .test_p2p_proxy import HeaderFirst, v1


class AdmissionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.admission = AddressAdmission(self.clock.seconds, max_open=2, rate=3)

    def test_at_most_so_many_open(self) -> None:
        self.assertIsNone(self.admission.admit("192.0.2.1"))
        self.assertIsNone(self.admission.admit("192.0.2.1"))
        self.assertEqual(self.admission.admit("192.0.2.1"), TOO_MANY)
        self.assertIsNone(self.admission.admit("192.0.2.2"))  # others are not held back
        self.admission.release("192.0.2.1")
        self.assertIsNone(self.admission.admit("192.0.2.1"))
        self.assertEqual(self.admission.open_sessions("192.0.2.1"), 2)

    def test_no_faster_than_the_rate(self) -> None:
        admitted = 0
        for _ in range(5):
            if self.admission.admit("192.0.2.1") is None:
                admitted += 1
                self.admission.release("192.0.2.1")
        self.assertEqual(admitted, 3)  # the burst
        self.assertEqual(self.admission.admit("192.0.2.1"), TOO_FAST)
        self.clock.advance(1 / 3)
        self.assertIsNone(self.admission.admit("192.0.2.1"))

    def test_the_table_is_bounded(self) -> None:
        admission = AddressAdmission(self.clock.seconds, max_open=5, rate=1, max_addresses=10)
        for n in range(100):
            admission.admit(f"10.0.0.{n}")
            admission.release(f"10.0.0.{n}")
        self.assertEqual(admission.tracked(), 10)
        self.assertEqual(admission.open_sessions("10.0.0.1"), 0)


class EarlyRefusalTests(SynchronousTestCase):
    """An address over its limits is told once per ``quiet_for``; meanwhile its new
    connections are dropped before a session is built."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.admission = AddressAdmission(self.clock.seconds, max_open=1, rate=2, quiet_for=1.0)

    def test_not_dropped_before_it_was_told(self) -> None:
        self.assertIsNone(self.admission.refuse_early("192.0.2.1"))
        self.assertIsNone(self.admission.admit("192.0.2.1"))
        self.assertIsNone(self.admission.refuse_early("192.0.2.1"))  # over, but not told

    def test_told_then_dropped_for_a_while_then_told_again(self) -> None:
        self.assertIsNone(self.admission.admit("192.0.2.1"))
        self.assertEqual(self.admission.admit("192.0.2.1"), TOO_MANY)  # told
        self.assertEqual(self.admission.refuse_early("192.0.2.1"), TOO_MANY)
        self.assertIsNone(self.admission.refuse_early("192.0.2.2"))  # others are not
        self.clock.advance(1.0)
        self.assertIsNone(self.admission.refuse_early("192.0.2.1"))  # told again, next
        self.assertEqual(self.admission.admit("192.0.2.1"), TOO_MANY)
        self.assertEqual(self.admission.refuse_early("192.0.2.1"), TOO_MANY)

    def test_let_through_once_under_its_limits_again(self) -> None:
        self.assertIsNone(self.admission.admit("192.0.2.1"))
        self.admission.release("192.0.2.1")
        self.assertIsNone(self.admission.admit("192.0.2.1"))
        self.admission.release("192.0.2.1")
        self.assertEqual(self.admission.admit("192.0.2.1"), TOO_FAST)  # the burst is spent
        self.assertEqual(self.admission.refuse_early("192.0.2.1"), TOO_FAST)
        self.clock.advance(0.5)  # one token back
        self.assertIsNone(self.admission.refuse_early("192.0.2.1"))
        self.assertIsNone(self.admission.admit("192.0.2.1"))

    def test_the_told_table_is_bounded(self) -> None:
        admission = AddressAdmission(self.clock.seconds, max_open=1, rate=1, max_addresses=10)
        for n in range(100):
            admission.admit(f"10.0.0.{n}")
            self.assertEqual(admission.admit(f"10.0.0.{n}"), TOO_MANY)
        self.assertIsNone(admission.refuse_early("10.0.0.1"))  # forgotten
        self.assertEqual(admission.refuse_early("10.0.0.99"), TOO_MANY)


class ListenerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        limits = Limits(max_sessions_per_ip=2, session_rate_per_ip=100)
        self.dialect = live_dialect(MemoryStore(limits), limits, self.clock)
        self.factory = LiveFactory(self.dialect, self.clock)

    def connect(self, peer: object) -> tuple[object, StringTransport]:
        transport = StringTransport(peerAddress=peer)  # type: ignore[arg-type]
        protocol = self.factory.buildProtocol(None)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_the_third_session_from_one_address_is_told_and_closed(self) -> None:
        address = IPv4Address("TCP", "198.51.100.7", 40000)
        first, _ = self.connect(address)
        self.connect(address)
        _, third = self.connect(address)
        (message,) = unframe_all(third.value())
        self.assertEqual(message.type, Message.ERROR)
        self.assertEqual(message.error.status, 1003)
        self.assertIn("too many sessions from 198.51.100.7", message.error.text)
        self.assertTrue(third.disconnecting)
        self.assertEqual(self.dialect.metrics.refusals, {TOO_MANY: 1})
        first.connectionLost()  # type: ignore[attr-defined]
        _, fourth = self.connect(address)
        self.assertEqual(fourth.value(), b"")

    def test_a_told_address_is_dropped_before_a_session_is_built(self) -> None:
        address = IPv4Address("TCP", "198.51.100.7", 40000)
        floods: list[None] = []
        self.factory.flood = cast(ListenerPause, _CountingPause(floods))
        for _ in range(2):
            self.connect(address)
        _, told = self.connect(address)
        self.assertTrue(told.disconnecting)
        self.assertIsNone(self.factory.buildProtocol(address))
        self.assertIsNone(self.factory.buildProtocol(address))
        other = self.factory.buildProtocol(IPv4Address("TCP", "198.51.100.8", 40000))
        self.assertIsNotNone(other)
        self.assertEqual(self.dialect.metrics.refusals, {TOO_MANY: 3})
        self.assertEqual(len(floods), 3)  # every refusal reaches the flood guard
        self.clock.advance(1.0)  # a second later it is told again, with an ERROR
        _, again = self.connect(address)
        (message,) = unframe_all(again.value())
        self.assertEqual(message.error.status, 1003)

    def test_behind_a_wrapping_transport_a_dropped_connection_is_closed_at_once(self) -> None:
        """TLS and PROXY-protocol listeners wrap whatever protocol they are given, so
        an early refusal there is a protocol that aborts, not None."""
        address = IPv4Address("TCP", "198.51.100.7", 40000)
        wrapped = WrappedLiveFactory(self.factory)
        for _ in range(3):
            self.connect(address)  # the third is told
        dropped = wrapped.buildProtocol(address)
        self.assertNotIsInstance(dropped, LiveProtocol)
        transport = StringTransport(peerAddress=address)
        dropped.makeConnection(transport)
        self.assertTrue(transport.disconnected)  # aborted
        self.assertEqual(transport.value(), b"")
        other = wrapped.buildProtocol(IPv4Address("TCP", "198.51.100.8", 40000))
        self.assertIsInstance(other, LiveProtocol)
        # A wrapping factory (TLS's is one) wraps the dropped protocol, never None.
        outer = WrappingFactory(wrapped).buildProtocol(address)
        self.assertIsInstance(outer.wrappedProtocol, type(dropped))

    def test_unix_sockets_and_loopback_are_exempt(self) -> None:
        for peer in (
            UNIXAddress(b"/run/rendezvous.sock"),
            IPv4Address("TCP", "127.0.0.1", 40000),
            IPv6Address("TCP", "::1", 40000),
        ):
            for _ in range(5):
                _, transport = self.connect(peer)
                self.assertFalse(transport.disconnecting)
        self.assertTrue(is_loopback("127.0.0.9"))
        self.assertFalse(is_loopback("198.51.100.7"))
        self.assertFalse(is_loopback("not an address"))


class _CountingPause:
    def __init__(self, calls: list[None]) -> None:
        self.calls = calls

    def refused(self) -> None:
        self.calls.append(None)


class BehindAProxyTests(ProcessTestCase):
    """``--listen haproxy:…``: the per-address limits and the logs see the clients."""

    timeout = 60

    @inlineCallbacks
    def test_limits_count_the_proxied_addresses(self):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--log-addresses",  # the line checked below names the client
            "--listen",
            "haproxy:tcp:0:interface=127.0.0.1",
            "--max-sessions-per-ip",
            "1",
        )
        match = yield daemon.wait_for(r"live dialect listening on tcp 127\.0\.0\.1:(\d+)")
        port = int(match.group(1))

        @inlineCallbacks
        def client(header: bytes):  # type: ignore[no-untyped-def]
            endpoint = HeaderFirst(TCP4ClientEndpoint(reactor, "127.0.0.1", port), header)
            wrapper = yield endpoint.connect(Factory.forProtocol(LiveClientProtocol))
            live = wrapper.wrappedProtocol
            self.addCleanup(live.disconnect)
            return live

        first = yield client(v1("198.51.100.7"))
        self.assertEqual((yield first.discover("app")), [])
        second = yield client(v1("198.51.100.7", port=5556))
        error = yield self.assertFailure(second.discover("app"), LimitExceeded)
        self.assertIn("too many sessions from 198.51.100.7", error.text)
        other = yield client(v1("198.51.100.8"))
        self.assertEqual((yield other.discover("app")), [])
        yield daemon.wait_for(r"refused tcp 198\.51\.100\.7:5556: LIMIT_EXCEEDED")
