"""The PROXY protocol in front of libp2p listeners: the header parser, the wrapper that
hides the connection until the header is read, and a daemon whose per-IP limit counts
the clients' addresses, not the proxy's."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, readBody
from zope.interface import implementer

from rendezvous.client.p2p import LiveClientStream
from rendezvous.live.stream import PROTOCOL_ID
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.proxy import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyProtocolFactory,
    parse_header,
)

from .processes import ProcessTestCase


def v1(source: str, port: int = 5555, family: str = "TCP4", dest: str = "127.0.0.1") -> bytes:
    return f"PROXY {family} {source} {dest} {port} 4001\r\n".encode()


def v2(source: bytes, port: int, family: int = 0x11, command: int = 0x21) -> bytes:
    if family == 0x11:
        payload = source + bytes([127, 0, 0, 1]) + struct.pack(">HH", port, 4001)
    else:
        payload = source + bytes(15) + b"\x01" + struct.pack(">HH", port, 4001)
    return V2_SIGNATURE + bytes([command, family]) + struct.pack(">H", len(payload)) + payload


class ParserTests(SynchronousTestCase):
    def test_v1(self) -> None:
        header = v1("198.51.100.7")
        self.assertEqual(
            parse_header(header + b"rest"),
            ProxyHeader(IPv4Address("TCP", "198.51.100.7", 5555), len(header)),
        )
        six = v1("2001:db8::7", family="TCP6", dest="::1")
        self.assertEqual(
            parse_header(six), ProxyHeader(IPv6Address("TCP", "2001:db8::7", 5555), len(six))
        )
        self.assertEqual(parse_header(b"PROXY UNKNOWN\r\n"), ProxyHeader(None, 15))

    def test_v2(self) -> None:
        header = v2(bytes([198, 51, 100, 8]), 6000)
        self.assertEqual(
            parse_header(header), ProxyHeader(IPv4Address("TCP", "198.51.100.8", 6000), len(header))
        )
        six = v2(bytes.fromhex("20010db8" + "00" * 11 + "09"), 6001, family=0x21)
        self.assertEqual(
            parse_header(six), ProxyHeader(IPv6Address("TCP", "2001:db8::9", 6001), len(six))
        )
        local = v2(bytes(4), 0, command=0x20)
        self.assertEqual(parse_header(local), ProxyHeader(None, len(local)))

    def test_incomplete_headers_wait(self) -> None:
        for header in (v1("198.51.100.7"), v2(bytes(4), 1)):
            for cut in range(len(header)):
                self.assertIsNone(parse_header(header[:cut]), (header, cut))

    def test_refusals(self) -> None:
        for data, words in [
            (b"GET / HTTP/1.1\r\n", "no PROXY protocol header"),
            (b"\x00\x00\x00\x00", "no PROXY protocol header"),
            (b"PROXY TCP4 " + b"1" * 120, "longer than 107"),
            (v1("2001:db8::7"), "does not match its family"),
            (v1("198.51.100.7", port=70000), "bad port"),
            (b"PROXY TCP4 a b 1 2\r\n", "bad address"),
            (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "malformed"),
            (V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "unsupported v2 version"),
            (V2_SIGNATURE + b"\x2f\x11\x00\x0c" + bytes(12), "unknown v2 command"),
            (V2_SIGNATURE + b"\x21\x11\xff\xff", "too long"),
            (V2_SIGNATURE + b"\x21\x31\x00\x00", "unsupported family"),
        ]:
            with self.assertRaises(ProxyHeaderError) as caught:
                parse_header(data)
            self.assertIn(words, str(caught.exception), data)

    @given(st.binary(max_size=300))
    def test_any_bytes_parse_or_are_refused(self, data: bytes) -> None:
        try:
            header = parse_header(data)
        except ProxyHeaderError:
            return
        if header is not None:
            self.assertLessEqual(header.length, len(data))

    @given(st.binary(max_size=200))
    def test_a_valid_header_before_any_bytes(self, rest: bytes) -> None:
        header = v1("198.51.100.7")
        parsed = parse_header(header + rest)
        assert parsed is not None
        self.assertEqual(parsed.length, len(header))


class Recording(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.peer: object = None

    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class WrapperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.inner: list[Recording] = []
        wrapped = Factory()
        wrapped.buildProtocol = lambda addr: self.inner.append(Recording()) or self.inner[-1]  # type: ignore[method-assign]
        self.counted: list[str] = []
        self.factory = ProxyProtocolFactory(wrapped, self.clock, 10, self.counted.append)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.9.9.9", 40000))
        self.protocol = self.factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def test_the_connection_is_handed_over_with_the_clients_address(self) -> None:
        (inner,) = self.inner
        self.assertIsNone(inner.peer)  # nothing until the header is read
        header = v1("198.51.100.7")
        self.protocol.dataReceived(header[:10])
        self.assertIsNone(inner.peer)
        self.protocol.dataReceived(header[10:] + b"hello")
        self.assertEqual(inner.peer, IPv4Address("TCP", "198.51.100.7", 5555))
        self.assertEqual(inner.received, b"hello")
        self.protocol.dataReceived(b" again")
        self.assertEqual(inner.received, b"hello again")
        self.clock.advance(60)
        self.assertFalse(self.transport.disconnecting)

    def test_a_local_connection_keeps_its_own_address(self) -> None:
        self.protocol.dataReceived(b"PROXY UNKNOWN\r\n")
        self.assertEqual(self.inner[0].peer, IPv4Address("TCP", "10.9.9.9", 40000))

    def test_no_header_is_refused_and_counted(self) -> None:
        self.protocol.dataReceived(b"\x00\x00\x00\x13/multistream/1.0.0\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.inner[0].peer)
        self.assertEqual(self.factory.refusals, {"no PROXY protocol header": 1})
        self.assertEqual(self.counted, ["no PROXY protocol header"])

    def test_a_silent_connection_times_out(self) -> None:
        self.clock.advance(10)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.factory.refusals, {"no PROXY protocol header in time": 1})
        self.protocol.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _HeaderFirst(ProtocolWrapper):
    def makeConnection(self, transport: object) -> None:
        transport.write(self.factory.header)  # type: ignore[attr-defined]
        super().makeConnection(transport)  # type: ignore[arg-type]


@implementer(IStreamClientEndpoint)
class HeaderFirst:
    """Connects with ``endpoint`` and writes ``header`` before anything else, as a proxy."""

    def __init__(self, endpoint: IStreamClientEndpoint, header: bytes) -> None:
        self._endpoint = endpoint
        self._header = header

    def connect(self, factory):  # type: ignore[no-untyped-def]
        wrapping = WrappingFactory(factory)
        wrapping.protocol = _HeaderFirst
        wrapping.header = self._header  # type: ignore[attr-defined]
        return self._endpoint.connect(wrapping)


class ProxiedDaemonTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def test_limits_count_the_clients_addresses(self):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--log-addresses",  # the lines checked below name the clients
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--p2p-proxy-protocol",
            "--p2p-max-connections-per-ip",
            "1",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        )
        match = yield daemon.wait_for(r"listening on /ip4/127\.0\.0\.1/tcp/(\d+)/p2p/\w+")
        port = int(match.group(1))
        metrics = yield daemon.wait_for(r"metrics listening on tcp 127\.0\.0\.1:(\d+)")

        def dial(header: bytes | None):  # type: ignore[no-untyped-def]
            host = Host(PrivateKey.generate(), reactor)  # type: ignore[arg-type]
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
            if header is not None:
                endpoint = HeaderFirst(endpoint, header)  # type: ignore[assignment]
            return host.dial(endpoint)

        first = yield dial(v1("198.51.100.7"))
        self.addCleanup(first.close)
        client = LiveClientStream()
        yield first.open_stream(PROTOCOL_ID, client)
        self.assertEqual((yield client.discover("app")), [])
        # One connection per client address: the proxy's own address is not what counts.
        second = yield dial(v2(bytes([198, 51, 100, 8]), 6000))
        self.addCleanup(second.close)
        yield self.assertFailure(dial(v1("198.51.100.7", port=5556)), Exception)
        yield daemon.wait_for(r"/ip4/198\.51\.100\.7/tcp/5556.*too many connections")
        yield self.assertFailure(dial(None), Exception)
        yield daemon.wait_for(r"refused a connection from 127\.0\.0\.1: no PROXY protocol header")
        response = yield Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{metrics.group(1)}/metrics".encode()
        )
        text = (yield readBody(response)).decode()
        self.assertIn('rendezvous_refusals_total{reason="proxy_protocol_header"} 1.0', text)
