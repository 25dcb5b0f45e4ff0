"""The STUN responder around the codec: rate limit, protocol over a fake transport,
counters, ``--stun`` parsing, listeners, and what the relay registers for them."""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, MessageLengthError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rendezvous._relay_tap import Options, makeService
from rendezvous.addrs import multiaddr_from_text, multiaddr_to_text
from rendezvous.loglimit import LogLimiter
from rendezvous.logs import show_addresses
from rendezvous.p2p.advertise import expand
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress
from rendezvous.relay.announce import Announcer, NothingToRegister
from rendezvous.relay.service import RelayDaemon
from rendezvous.stun.codec import (
    Reason,
    binding_request,
    parse_binding_success,
    source_ip,
)
from rendezvous.stun.fleet import StunAdvertisement, refreshing, stun_addrs
from rendezvous.stun.ratelimit import SourceLimiter, source_key
from rendezvous.stun.server import (
    SEND_FAILED,
    StunLimits,
    StunListener,
    StunProtocol,
    StunStats,
    UDPListenAddress,
)
from rendezvous.stun.service import StunService

KEY = PrivateKey.from_seed(b"s" * 32)
TID = bytes(range(12))


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def texts(addrs: list[bytes]) -> list[str]:
    return [multiaddr_to_text(a) for a in addrs]


def binary(*multiaddrs: str) -> list[bytes]:
    return [multiaddr_from_text(m) for m in multiaddrs]


class FakeUDPTransport:
    """What `StunProtocol` needs of a UDP port: ``write(data, addr)``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.error = error

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.error is not None:
            raise self.error
        self.written.append((data, addr))


class LimiterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limiter = SourceLimiter(self.clock.seconds, rate=2.0, burst=3, max_sources=2)

    def test_burst_then_rate(self) -> None:
        a = b"a"
        self.assertEqual([self.limiter.allow(a) for _ in range(4)], [True, True, True, False])
        self.clock.advance(0.4)
        self.assertFalse(self.limiter.allow(a))
        self.clock.advance(0.1)  # 0.5 s at 2/s: one token
        self.assertTrue(self.limiter.allow(a))
        self.assertFalse(self.limiter.allow(a))
        self.clock.advance(100)  # never more than the burst
        self.assertEqual([self.limiter.allow(a) for _ in range(4)], [True, True, True, False])

    def test_sources_are_apart_and_the_table_bounded(self) -> None:
        for _ in range(3):
            self.limiter.allow(b"a")
        self.assertFalse(self.limiter.allow(b"a"))
        self.assertTrue(self.limiter.allow(b"b"))
        self.assertEqual(len(self.limiter), 2)
        self.assertTrue(self.limiter.allow(b"c"))  # evicts "a", seen least recently
        self.assertEqual((len(self.limiter), self.limiter.evicted), (2, 1))
        self.assertTrue(self.limiter.allow(b"a"))  # back with a full bucket

    def test_clock_going_back_adds_nothing(self) -> None:
        limiter = SourceLimiter(lambda: self.now, rate=1.0, burst=1, max_sources=4)
        self.now = 100.0
        self.assertTrue(limiter.allow(b"a"))
        self.now = 50.0
        self.assertFalse(limiter.allow(b"a"))

    def test_source_key(self) -> None:
        self.assertEqual(source_key(ip("192.0.2.1")), bytes([192, 0, 2, 1]))
        self.assertEqual(source_key(ip("2001:db8::1")), source_key(ip("2001:db8::ffff:1")))
        self.assertNotEqual(source_key(ip("2001:db8::1")), source_key(ip("2001:db8:0:1::1")))

    def test_bad_limits(self) -> None:
        self.assertRaises(ValueError, SourceLimiter, self.clock.seconds, 0, 1, 1)
        self.assertRaises(ValueError, StunLimits, burst=0)
        self.assertRaises(ValueError, StunLimits, max_sources=0)
        self.assertRaises(ValueError, StunLimits, rate=float("nan"))


class ProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.stats = StunStats()
        limiter = SourceLimiter(self.clock.seconds, rate=1.0, burst=2, max_sources=100)
        self.protocol = StunProtocol(limiter, self.stats, LogLimiter(self.clock.seconds, burst=3))
        self.transport = FakeUDPTransport()
        self.protocol.makeConnection(self.transport)  # type: ignore[arg-type]

    def test_answers_with_the_source_xor_mapped(self) -> None:
        self.protocol.datagramReceived(binding_request(TID), ("192.0.2.9", 40000))
        self.protocol.datagramReceived(
            binding_request(bytes(12), fingerprint=True), ("2001:db8::5", 50000)
        )
        (answer, to), (answer6, to6) = self.transport.written
        self.assertEqual(to, ("192.0.2.9", 40000))
        self.assertEqual(parse_binding_success(answer), (TID, ip("192.0.2.9"), 40000))
        self.assertEqual(to6, ("2001:db8::5", 50000))
        self.assertEqual(parse_binding_success(answer6), (bytes(12), ip("2001:db8::5"), 50000))
        self.assertEqual(answer6[-8:-4], bytes.fromhex("80280004"))  # FINGERPRINT as asked
        self.assertEqual(self.stats.answered, 2)

    def test_ipv4_through_a_dual_stack_socket(self) -> None:
        self.protocol.datagramReceived(binding_request(TID), ("::ffff:192.0.2.9", 40000))
        ((answer, to),) = self.transport.written
        self.assertEqual(to, ("::ffff:192.0.2.9", 40000))
        self.assertEqual(parse_binding_success(answer), (TID, ip("192.0.2.9"), 40000))

    def test_drops_count_and_log_rate_limited(self) -> None:
        self.addCleanup(show_addresses, show_addresses(True))  # the lines name the sources
        garbage = [
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            binding_request(TID) + b"\x01",
            bytes(20),
        ]
        with capturedLogs() as events:
            for data in garbage:
                self.protocol.datagramReceived(data, ("192.0.2.9", 40000))
        self.assertEqual(self.transport.written, [])
        self.assertEqual(
            self.stats.dropped,
            {Reason.SHORT: 1, Reason.LENGTH: 1, Reason.NOT_STUN: 1, Reason.MAGIC_COOKIE: 1},
        )
        lines = [e["log_format"].format(**e) for e in events]
        self.assertEqual(
            lines,
            [
                "stun: dropped a datagram from 192.0.2.9:40000: short: 0 bytes",
                "stun: dropped a datagram from 192.0.2.9:40000: "
                "not stun: the first two bits are not zero",
                "stun: dropped a datagram from 192.0.2.9:40000: "
                "length: length 0 with 1 bytes after the header",
            ],
        )
        with capturedLogs() as events:
            self.clock.advance(10)
            self.protocol.datagramReceived(b"x", ("2001:db8::1", 1))
        lines = [e["log_format"].format(**e) for e in events]
        self.assertEqual(
            lines,
            [
                "stun: 1 datagrams dropped were not logged",
                "stun: dropped a datagram from [2001:db8::1]:1: short: 1 bytes",
            ],
        )

    def test_rate_limited_per_source(self) -> None:
        request = binding_request(TID)
        for port in (1, 2, 3):  # one source, whatever its port
            self.protocol.datagramReceived(request, ("192.0.2.9", port))
        self.protocol.datagramReceived(request, ("192.0.2.10", 1))
        self.assertEqual([to for _, to in self.transport.written][-1], ("192.0.2.10", 1))
        self.assertEqual((self.stats.answered, self.stats.rate_limited), (3, 1))
        self.clock.advance(1)
        self.protocol.datagramReceived(request, ("192.0.2.9", 4))
        self.assertEqual((self.stats.answered, self.stats.rate_limited), (4, 1))

    def test_send_failure_is_counted_not_raised(self) -> None:
        self.addCleanup(show_addresses, show_addresses(True))
        for error in (OSError(105, "No buffer space available"), MessageLengthError("long")):
            self.protocol.transport = FakeUDPTransport(error)  # type: ignore[assignment]
            with capturedLogs() as events:
                self.protocol.datagramReceived(binding_request(TID), ("192.0.2.9", 1))
            self.assertEqual(len(events), 1)
            self.assertIn(
                "stun: cannot answer 192.0.2.9:1: ", events[0]["log_format"].format(**events[0])
            )
        self.assertEqual((self.stats.dropped, self.stats.answered), ({SEND_FAILED: 2}, 0))

    def test_metrics(self) -> None:
        self.protocol.datagramReceived(binding_request(TID), ("192.0.2.9", 1))
        self.protocol.datagramReceived(b"", ("192.0.2.9", 1))
        for _ in range(3):
            self.protocol.datagramReceived(binding_request(TID), ("192.0.2.10", 1))
        registry = CollectorRegistry()
        registry.register(self.stats)
        text = generate_latest(registry).decode()
        for line in [
            "stun_requests_answered_total 3.0",
            'stun_dropped_total{reason="short"} 1.0',
            "stun_rate_limited_total 1.0",
            "stun_sources 2.0",
        ]:
            self.assertIn(line, text)


class ProtocolPropertyTests(SynchronousTestCase):
    @given(
        st.lists(
            st.tuples(
                st.one_of(
                    st.binary(max_size=1400),
                    st.builds(binding_request, st.binary(min_size=12, max_size=12)),
                ),
                st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
                st.integers(0, 65535),
            ),
            max_size=20,
        )
    )
    def test_every_datagram_is_answered_dropped_or_limited(self, datagrams) -> None:  # type: ignore[no-untyped-def]
        """Never raises; each datagram counts once; every answer maps its source."""
        clock = Clock()
        stats = StunStats()
        limiter = SourceLimiter(clock.seconds, rate=1.0, burst=3, max_sources=4)
        protocol = StunProtocol(limiter, stats, LogLimiter(clock.seconds))
        transport = FakeUDPTransport()
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        for data, host, port in datagrams:
            protocol.datagramReceived(data, (host, port))
            clock.advance(0.1)
        counted = stats.answered + stats.rate_limited + sum(stats.dropped.values())
        self.assertEqual(counted, len(datagrams))
        self.assertEqual(len(transport.written), stats.answered)
        for answer, (host, port) in transport.written:
            _, mapped, mapped_port = parse_binding_success(answer)
            self.assertEqual((mapped, mapped_port), (source_ip(host), port))
        self.assertLessEqual(len(limiter), 4)


class ListenAddressTests(SynchronousTestCase):
    def test_good(self) -> None:
        for text, parsed in [
            ("udp:3478", UDPListenAddress(3478)),
            ("udp:0:interface=127.0.0.1", UDPListenAddress(0, "127.0.0.1")),
            ("udp:port=3478:interface=10.0.0.1", UDPListenAddress(3478, "10.0.0.1")),
            (r"udp:3478:interface=\:\:", UDPListenAddress(3478, "::")),
            ("udp:3478:interface=[2001:DB8::1]", UDPListenAddress(3478, "2001:db8::1")),
        ]:
            self.assertEqual(UDPListenAddress.parse(text), parsed, text)
        self.assertEqual(UDPListenAddress.parse("udp:1:interface=::1"), UDPListenAddress(1, "::1"))
        self.assertEqual(UDPListenAddress.parse("udp:1:interface=::1").family, socket.AF_INET6)
        self.assertEqual(UDPListenAddress.parse("udp:1").family, socket.AF_INET)

    def test_bad(self) -> None:
        for text, says in [
            ("tcp:3478", "expected udp:PORT"),
            ("udp", "expected udp:PORT"),
            ("udp:", "the port must be"),
            ("udp:65536", "the port must be"),
            ("udp:-1", "the port must be"),
            ("udp:x", "the port must be"),
            ("udp:1:interface=localhost", "is not an IP address"),
            ("udp:1:interface=fe80::1%eth0", "is not an IP address"),
            ("udp:1:backlog=3", "unexpected 'backlog=3'"),
            ("udp:1:2", "unexpected '2'"),
            ("udp:1:interface=10.0.0.1:port=2", "is not an IP address"),
        ]:
            with self.assertRaises(ValueError, msg=text) as raised:
                UDPListenAddress.parse(text)
            self.assertIn(says, str(raised.exception))


class FleetAddressTests(SynchronousTestCase):
    def expander(self, *interfaces: str):  # type: ignore[no-untyped-def]
        ips = [ip(i) for i in interfaces]
        return lambda bound: expand(bound, ips)

    def test_unspecified_expanded_specific_kept(self) -> None:
        bound = binary("/ip4/0.0.0.0/udp/3478", "/ip6/::/udp/3478", "/ip4/10.0.0.1/udp/3479")
        found = stun_addrs(bound, (), self.expander("127.0.0.1", "192.0.2.7", "2001:db8::7"))
        self.assertEqual(
            texts(found),
            ["/ip4/192.0.2.7/udp/3478", "/ip6/2001:db8::7/udp/3478", "/ip4/10.0.0.1/udp/3479"],
        )

    def test_never_unspecified(self) -> None:
        bound = binary("/ip4/0.0.0.0/udp/3478")
        self.assertEqual(stun_addrs(bound, (), lambda b: list(b)), [])
        self.assertEqual(stun_addrs(bound, (), self.expander("2001:db8::7")), [])

    def test_announced_hosts_of_the_family_with_the_stun_port(self) -> None:
        announce = binary(
            "/ip4/203.0.113.5/tcp/443/tls/ws",
            "/dns4/relay.example.org/tcp/443/wss",
            "/ip6/2001:db8::5/tcp/4010",
            "/dns/both.example.org/tcp/4010",
            "/dnsaddr/fleet.example.org",
            "/ip4/203.0.113.5/tcp/4010",
        )
        bound = binary("/ip4/0.0.0.0/udp/3478", "/ip6/::/udp/3479")
        self.assertEqual(
            texts(stun_addrs(bound, announce, self.expander("192.0.2.7"))),
            [
                "/ip4/203.0.113.5/udp/3478",
                "/dns4/relay.example.org/udp/3478",
                "/dns/both.example.org/udp/3478",
                "/ip6/2001:db8::5/udp/3479",
                "/dns/both.example.org/udp/3479",
            ],
        )


class AdvertisementTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.host = Host(KEY, self.clock)
        self.interfaces = ["127.0.0.1", "192.0.2.7"]
        self.host.expand = lambda bound: expand(bound, [ip(i) for i in self.interfaces])
        self.advertisement = StunAdvertisement(self.host)
        self.changes: list[list[str]] = []
        self.advertisement.changed.append(
            lambda: self.changes.append(texts(self.advertisement.addrs))
        )

    def test_record_follows_the_interfaces(self) -> None:
        self.assertRaises(NothingToRegister, self.advertisement.signed_peer_record)
        with capturedLogs() as events:
            self.advertisement.add_listener("0.0.0.0", 3478)
        self.assertEqual(self.changes, [["/ip4/192.0.2.7/udp/3478"]])
        self.assertEqual(
            [e["log_format"].format(**e) for e in events],
            ["advertising stun /ip4/192.0.2.7/udp/3478"],
        )
        record, _ = open_peer_record(self.advertisement.signed_peer_record())
        self.assertEqual(
            (record.peer_id, texts(list(record.addrs))), (KEY.peer_id(), self.changes[0])
        )
        first = self.advertisement.signed_peer_record()
        self.assertIs(self.advertisement.signed_peer_record(), first)

        refresh = refreshing(self.advertisement, self.clock)
        refresh.startService()
        self.addCleanup(refresh.stopService)
        self.interfaces = ["198.51.100.3"]
        self.clock.advance(30)
        self.assertEqual(self.changes[-1], ["/ip4/198.51.100.3/udp/3478"])
        record, _ = open_peer_record(self.advertisement.signed_peer_record())
        self.assertEqual(texts(list(record.addrs)), ["/ip4/198.51.100.3/udp/3478"])
        # The host noticing a change of its own makes us look again at once.
        self.interfaces = ["198.51.100.4"]
        self.host.add_listen_addr(multiaddr_from_text("/ip4/10.0.0.1/tcp/4010"))
        self.assertEqual(self.changes[-1], ["/ip4/198.51.100.4/udp/3478"])
        self.assertEqual(len(self.changes), 3)

    def test_announced(self) -> None:
        self.host.announce = tuple(binary("/dns4/relay.example.org/tcp/443/tls/ws"))
        self.advertisement.add_listener("0.0.0.0", 3478)
        self.assertEqual(self.changes, [["/dns4/relay.example.org/udp/3478"]])

    def test_announcer_without_addresses_retries(self) -> None:
        target = TCPAddress.parse(f"/ip4/127.0.0.1/tcp/9/p2p/{KEY.peer_id_text()}")
        record = self.advertisement.signed_peer_record
        announcer = Announcer(self.host, target, reactor, self.clock, "rendezvous/stun", 60, record)
        with capturedLogs() as events:
            announcer.start()
        self.addCleanup(announcer.stop)
        self.assertEqual(announcer.failures, 1)
        self.assertEqual(
            [e["log_format"].format(**e) for e in events],
            [
                "registering in rendezvous/stun at /ip4/127.0.0.1/tcp/9 "
                "failed (no STUN address to register); retrying in 1 s"
            ],
        )


def ours(events: list[dict[str, object]]) -> list[str]:
    """Our log lines (not Twisted's own about its ports)."""
    return [
        str(e["log_format"]).format(**e)
        for e in events
        if str(e.get("log_namespace", "")).startswith("rendezvous.")
    ]


class ListenerTests(TestCase):
    """Real sockets on loopback."""

    def setUp(self) -> None:
        self.bound: list[tuple[str, int]] = []

    def listener(self, text: str, stats: StunStats | None = None) -> StunListener:
        clock = Clock()
        limiter = SourceLimiter(clock.seconds, 10, 10, 10)
        protocol = StunProtocol(limiter, stats or StunStats(), LogLimiter(clock.seconds))
        listener = StunListener(
            UDPListenAddress.parse(text), protocol, reactor, lambda *a: self.bound.append(a)
        )
        return listener

    def test_binds_logs_and_tells(self) -> None:
        listener = self.listener("udp:0:interface=127.0.0.1")
        with capturedLogs() as events:
            listener.privilegedStartService()
        self.addCleanup(listener.stopService)
        listener.startService()  # (bound once)
        assert listener.port is not None
        port = listener.port.getHost().port  # type: ignore[attr-defined]
        self.assertEqual(self.bound, [("127.0.0.1", port)])
        self.assertEqual(ours(events), [f"stun listening on udp 127.0.0.1:{port}"])

    def test_bind_error_fails_start_up(self) -> None:
        first = self.listener("udp:0:interface=127.0.0.1")
        first.startService()
        self.addCleanup(first.stopService)
        port = self.bound[0][1]
        second = self.listener(f"udp:{port}:interface=127.0.0.1")
        with capturedLogs() as events:
            error = self.assertRaises(CannotListenError, second.privilegedStartService)
        self.assertIn("Address already in use", str(error))
        (line,) = ours(events)
        self.assertTrue(line.startswith(f"stun cannot listen on udp 127.0.0.1:{port}: "), line)
        self.assertIsNone(second.port)

    def test_ipv6_socket_is_ipv6_only(self) -> None:
        """So ``udp:P`` and ``udp:P:interface=\\:\\:`` can both listen."""
        if not socket.has_ipv6:
            raise self.skipTest("no IPv6")
        four = self.listener("udp:0")
        four.startService()
        self.addCleanup(four.stopService)
        port = self.bound[0][1]
        six = self.listener(rf"udp:{port}:interface=\:\:")
        try:
            six.startService()
        except CannotListenError as error:
            if "Cannot assign" in str(error) or "not supported" in str(error):
                raise self.skipTest(f"no IPv6 here: {error}") from None
            raise
        self.addCleanup(six.stopService)
        self.assertEqual(self.bound, [("0.0.0.0", port), ("::", port)])

    def test_answers_over_loopback(self) -> Deferred[None]:
        stats = StunStats()
        listener = self.listener("udp:0:interface=127.0.0.1", stats)
        listener.startService()
        self.addCleanup(listener.stopService)
        port = self.bound[0][1]
        answered: Deferred[bytes] = Deferred()

        class Client(DatagramProtocol):
            def datagramReceived(self, datagram: bytes, addr: object) -> None:
                answered.callback(datagram)

        client = reactor.listenUDP(0, Client(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(client.stopListening)
        client.write(binding_request(TID), ("127.0.0.1", port))

        def check(datagram: bytes) -> None:
            own = client.getHost().port
            self.assertEqual(parse_binding_success(datagram), (TID, ip("127.0.0.1"), own))
            self.assertEqual(stats.answered, 1)

        return answered.addCallback(check)


class OptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def test_stun_flags(self) -> None:
        target = f"/ip4/127.0.0.1/tcp/4002/p2p/{KEY.peer_id_text()}"
        options = self.parse(
            "--stun=udp:3478",
            r"--stun=udp:3478:interface=\:\:",
            f"--announce-to={target}",
            "--stun-namespace=my/stun",
            "--stun-rate=5",
            "--stun-burst=7",
            "--stun-max-sources=9",
            "--announce-ttl=600",
        )
        service = makeService(options)
        assert isinstance(service, RelayDaemon)
        stun = service.stun
        assert isinstance(stun, StunService)
        self.assertEqual(
            [listener.address for listener in stun.listeners],
            [UDPListenAddress(3478), UDPListenAddress(3478, "::")],
        )
        (announcer,) = stun.announcers
        self.assertEqual((announcer.namespace, announcer.ttl), ("my/stun", 600))
        self.assertEqual(announcer.record, stun.advertisement.signed_peer_record)
        limiter = stun.limiter
        self.assertEqual((limiter.rate, limiter.burst, limiter.max_sources), (5.0, 7, 9))
        self.assertIn(
            "stun_requests_answered_total 0.0", generate_latest(service.registry).decode()
        )

    def test_without_stun(self) -> None:
        service = makeService(self.parse())
        assert isinstance(service, RelayDaemon)
        self.assertIsNone(service.stun)

    def test_bad_values(self) -> None:
        for args in [
            ["--stun=udp:99999"],
            ["--stun=tcp:3478"],
            ["--stun=udp:1:interface=example.org"],
            ["--stun-namespace="],
            ["--stun-rate=0"],
            ["--stun-burst=0"],
            ["--stun-max-sources=0"],
        ]:
            self.assertRaises(usage.UsageError, self.parse, *args)
