"""libp2p over WebSocket (``/ws``): our dialer against our listener on loopback, and limits."""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rendezvous.addrs import InvalidMultiaddr, multiaddr_from_text
from rendezvous.live.stream import PROTOCOL_ID as LIVE
from rendezvous.p2p import identify, ping
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.host import Host, HostLimits
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress
from rendezvous.p2p.websocket import (
    MAX_HANDSHAKE_BYTES,
    MAX_MESSAGE_BYTES,
    WebSocketPeer,
    _ByteTransport,
)
from rendezvous.pb.live_pb2 import Message
from rendezvous.service import Daemon, DaemonConfig

from .helpers import discover, framed
from .test_p2p_process import Frames

CLIENT_KEY = PrivateKey.from_seed(b"w" * 32)


def close(connection: Connection) -> Deferred[None]:
    """Close ``connection``; fires once it is gone."""
    closed: Deferred[None] = Deferred()
    connection.connectionLost = lambda reason: (  # type: ignore[method-assign]
        Connection.connectionLost(connection, reason),
        closed.callback(None),
    )
    connection.close()
    return closed


class WebSocketAddressTests(SynchronousTestCase):
    def test_parse(self) -> None:
        address = TCPAddress.parse(f"/ip4/127.0.0.1/tcp/4003/ws/p2p/{CLIENT_KEY.peer_id_text()}")
        self.assertEqual((address.host, address.port, address.ws), ("127.0.0.1", 4003, True))
        self.assertEqual(address.peer_id, CLIENT_KEY.peer_id())
        self.assertEqual(address.text(), "/ip4/127.0.0.1/tcp/4003/ws")
        self.assertEqual(address.with_port(9).text(), "/ip4/127.0.0.1/tcp/9/ws")
        self.assertEqual(address.server_description(), "tcp:4003:interface=127.0.0.1:backlog=4096")
        self.assertEqual(address.binary(), multiaddr_from_text("/ip4/127.0.0.1/tcp/4003/ws"))
        self.assertFalse(TCPAddress.parse("/ip6/::1/tcp/1").ws)
        for text in ("/ip4/1.2.3.4/tcp/1/tls", "/ip4/1.2.3.4/tcp/1/ws/ws", "/ip4/1.2.3.4/ws"):
            self.assertRaises(InvalidMultiaddr, TCPAddress.parse, text)

    def test_observed_address_of_a_websocket_peer(self) -> None:
        observed = TCPAddress.from_address(WebSocketPeer("10.0.0.2", 5000))
        assert observed is not None
        self.assertEqual(observed.text(), "/ip4/10.0.0.2/tcp/5000/ws")


class FakeWebSocket:
    state = 3  # autobahn's STATE_OPEN

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bool]] = []

    def sendMessage(self, payload: bytes, isBinary: bool = False) -> None:  # noqa: N803
        self.sent.append((payload, isBinary))


class ByteTransportTests(SynchronousTestCase):
    def test_server_holds_writes_until_the_first_message(self) -> None:
        """Node's ws and browsers drop a message read with the handshake response."""
        websocket = FakeWebSocket()
        transport = _ByteTransport(websocket, hold=True)
        transport.write(b"/multistream/1.0.0\n")
        transport.writeSequence([b"a", b"b"])
        self.assertEqual(websocket.sent, [])
        transport.release()
        transport.write(b"c")
        transport.release()
        self.assertEqual(websocket.sent, [(b"/multistream/1.0.0\nab", True), (b"c", True)])

    def test_client_writes_at_once(self) -> None:
        websocket = FakeWebSocket()
        _ByteTransport(websocket, hold=False).write(b"x")
        self.assertEqual(websocket.sent, [(b"x", True)])


class Recorder(Protocol):
    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.callback(None)


class RawClient(WebSocketClientProtocol):  # type: ignore[misc]
    """Sends one message once open; ``closed`` fires with the close code."""

    message = b""
    binary = True

    def onOpen(self) -> None:
        self.sendMessage(self.message, isBinary=self.binary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N803
        self.factory.closed.callback(code)


class WebSocketDaemonTests(TestCase):
    """A daemon listening on ``/ip4/127.0.0.1/tcp/0/ws``, reached on loopback."""

    timeout = 20

    def setUp(self) -> None:
        config = DaemonConfig(listen=(), p2p_listen=("/ip4/127.0.0.1/tcp/0/ws",))
        self.daemon = Daemon(config, reactor)
        with capturedLogs() as self.events:
            self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        [port] = self.daemon.p2p_ports
        self.port = port.getHost().port
        assert self.daemon.p2p_host is not None
        self.server = self.daemon.p2p_host

    def test_listening_line_names_ws(self) -> None:
        [line] = [e for e in self.events if e.get("multiaddr")]
        self.assertEqual(line["multiaddr"], f"/ip4/127.0.0.1/tcp/{self.port}/ws")
        self.assertEqual(line["peer_id"], self.server.identity.peer_id_text())
        self.assertEqual(
            self.server.listen_addrs, [multiaddr_from_text(f"/ip4/127.0.0.1/tcp/{self.port}/ws")]
        )

    @inlineCallbacks
    def test_dial_ping_identify_live(self):  # type: ignore[no-untyped-def]
        address = TCPAddress("127.0.0.1", self.port, ws=True)
        client = Host(CLIENT_KEY, reactor)
        connection = yield client.dial(address.client_endpoint(reactor), self.server.peer_id)
        self.assertEqual(connection.remote_peer_id, self.server.peer_id)
        self.assertEqual(connection.remote_address, address)
        rtt = yield ping.ping(connection, reactor)
        self.assertGreaterEqual(rtt, 0)
        info = yield identify.identify(connection)
        self.assertEqual(list(info.listenAddrs), [address.binary()])
        observed = TCPAddress.from_address(connection.transport.getHost())
        assert observed is not None and observed.ws
        self.assertEqual(info.observedAddr, observed.binary())
        self.assertIn(LIVE, info.protocols)

        frames = Frames()
        stream = yield connection.open_stream(LIVE, frames)
        register = Message(type=Message.REGISTER)
        register.register.add(ns="ns").peer.id = CLIENT_KEY.peer_id_text()
        stream.write(framed(register) + framed(discover("ns", request_id=3)))
        found = yield frames.next()
        self.assertEqual(found.request_id, 3)
        self.assertEqual([r.peer.id for r in found.register], [CLIENT_KEY.peer_id_text()])

        yield close(connection)
        self.assertEqual(client.connections, set())

    @inlineCallbacks
    def test_upgrades_beyond_max_connections_are_refused(self):  # type: ignore[no-untyped-def]
        """Refused at the HTTP upgrade (503), before a libp2p connection is made."""
        config = DaemonConfig(
            listen=(),
            p2p_listen=("/ip4/127.0.0.1/tcp/0/ws",),
            p2p_limits=HostLimits(max_connections=1),
        )
        daemon = Daemon(config, reactor)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        address = TCPAddress("127.0.0.1", daemon.p2p_ports[0].getHost().port, ws=True)
        client = Host(CLIENT_KEY, reactor)
        connection = yield client.dial(address.client_endpoint(reactor))
        refused = yield self.assertFailure(
            client.dial(address.client_endpoint(reactor)), ConnectionLost
        )
        self.assertIn("[503]", str(refused))
        yield close(connection)

    @inlineCallbacks
    def raw(self, message: bytes, binary: bool = True):  # type: ignore[no-untyped-def]
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{self.port}")
        factory.protocol = type("Client", (RawClient,), {"message": message, "binary": binary})
        factory.closed = Deferred()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.port).connect(factory)
        code = yield factory.closed
        return code

    @inlineCallbacks
    def test_text_message_closes(self):  # type: ignore[no-untyped-def]
        code = yield self.raw(b"/multistream/1.0.0\n", binary=False)
        self.assertEqual(code, 1003)
        self.assertEqual(self.server.connections, set())

    @inlineCallbacks
    def test_oversized_message_closes(self):  # type: ignore[no-untyped-def]
        code = yield self.raw(b"\x00" * (MAX_MESSAGE_BYTES + 1))
        self.assertEqual(code, 1009)

    @inlineCallbacks
    def test_endless_upgrade_request_is_dropped(self):  # type: ignore[no-untyped-def]
        recorder = Recorder()
        protocol = yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.port).connect(
            Factory.forProtocol(lambda: recorder)
        )
        protocol.transport.write(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HANDSHAKE_BYTES)
        yield recorder.lost

    test_endless_upgrade_request_is_dropped.timeout = 5  # type: ignore[attr-defined]
    """Shorter than the opening handshake timeout, which would end it too."""
