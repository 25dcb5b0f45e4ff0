"""The libp2p connection: our dialer against our listener, in memory (iosim) and on loopback."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.test.iosim import FakeTransport, IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rendezvous import __version__
from rendezvous.addrs import multiaddr_from_text
from rendezvous.p2p import identify, ping
from rendezvous.p2p.connection import Connection, StreamFailed, UpgradeFailed
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.host import Host, HostLimits
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.multistream import PROTOCOL_ID, Initiator, encode_message
from rendezvous.p2p.noise import MAX_PLAINTEXT_LEN
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.p2p.yamux import (
    FLAG_RST,
    FLAG_SYN,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_WINDOW_UPDATE,
    DataReceived,
    encode_header,
)
from rendezvous.pb.identify_pb2 import Identify

SERVER_KEY = PrivateKey.from_seed(b"s" * 32)
CLIENT_KEY = PrivateKey.from_seed(b"c" * 32)
ECHO = "/test/echo/1.0.0"


class Recorder(StreamProtocol):
    """Records what happens on a stream."""

    def __init__(self) -> None:
        self.received = b""
        self.ended = False
        self.closed: list[str | None] = []
        self.pauses: list[str] = []

    def data_received(self, data: bytes) -> None:
        self.received += data

    def end_received(self) -> None:
        self.ended = True

    def stream_closed(self, reason: str | None) -> None:
        self.closed.append(reason)

    def pause_writing(self) -> None:
        self.pauses.append("pause")

    def resume_writing(self) -> None:
        self.pauses.append("resume")


class Echo(StreamProtocol):
    """Echoes data; closes when the peer does."""

    def data_received(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.write(data)

    def end_received(self) -> None:
        assert self.stream is not None
        self.stream.close()


class Failing(StreamProtocol):
    def data_received(self, data: bytes) -> None:
        raise RuntimeError("handler bug")


class HeldTransport(FileDescriptor):
    """Holds writes until `doWrite`, as a TCP transport does until the reactor calls it."""

    def __init__(self) -> None:
        super().__init__(MemoryReactorClock())
        self.connected = True
        self.sent: list[bytes] = []

    def writeSomeData(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)


def stream_data(connection: Connection) -> list[bytes]:
    """What each of the connection's reads from now on carried for its streams."""
    session = connection._yamux
    assert session is not None
    feed_chunks = session.feed_chunks
    seen: list[bytes] = []

    def recording(chunks: list[bytes]) -> list[object]:
        events = feed_chunks(chunks)
        seen.extend(event.data for event in events if isinstance(event, DataReceived))
        return events  # type: ignore[return-value]

    session.feed_chunks = recording  # type: ignore[method-assign,assignment]
    return seen


def transports(
    client_port: int = 50000,
) -> tuple[object, object]:
    def client(protocol: Connection) -> FakeTransport:
        return FakeTransport(
            protocol,
            isServer=False,
            hostAddress=IPv4Address("TCP", "10.0.0.2", client_port),
            peerAddress=IPv4Address("TCP", "10.0.0.1", 4001),
        )

    def server(protocol: Connection) -> FakeTransport:
        return FakeTransport(
            protocol,
            isServer=True,
            hostAddress=IPv4Address("TCP", "10.0.0.1", 4001),
            peerAddress=IPv4Address("TCP", "10.0.0.2", client_port),
        )

    return client, server


class InMemoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.server_host = self.make_host(SERVER_KEY)
        self.server_host.add_listen_addr(multiaddr_from_text("/ip4/10.0.0.1/tcp/4001"))
        self.server_host.set_handler(ECHO, Echo)
        self.client_host = self.make_host(CLIENT_KEY)

    def make_host(self, key: PrivateKey, **limits: float) -> Host:
        return Host(key, self.clock, HostLimits(**limits))  # type: ignore[arg-type]

    def connect(
        self, expected: bytes | None = None, client_port: int = 50000
    ) -> tuple[Connection, Connection, IOPump]:
        client_factory, server_factory = transports(client_port)
        client, server, pump = connectedServerAndClient(
            lambda: self.server_host.factory().buildProtocol(None),
            lambda: Connection(self.client_host, dialer=True, expected_peer_id=expected),
            clientTransportFactory=client_factory,  # type: ignore[arg-type]
            serverTransportFactory=server_factory,  # type: ignore[arg-type]
            clock=self.clock,
        )
        return client, server, pump

    def open(self, client: Connection, pump: IOPump, protocol: StreamProtocol) -> Stream:
        opened = client.open_stream(ECHO, protocol)
        pump.flush()
        return self.successResultOf(opened)

    def test_upgrade_authenticates_both_sides(self) -> None:
        client, server, pump = self.connect(expected=SERVER_KEY.peer_id())
        pump.flush()
        self.assertIs(self.successResultOf(client.ready), client)
        self.assertIs(self.successResultOf(server.ready), server)
        self.assertEqual(client.remote_peer_id, SERVER_KEY.peer_id())
        self.assertEqual(server.remote_peer_id, CLIENT_KEY.peer_id())
        self.assertEqual(client.remote_public_key, SERVER_KEY.public_key_bytes())
        self.assertEqual(len(self.server_host.connections), 1)

    def test_wrong_peer_id_fails_the_dial(self) -> None:
        client, server, pump = self.connect(expected=CLIENT_KEY.peer_id())
        pump.flush()
        failure = self.failureResultOf(client.ready, UpgradeFailed)
        self.assertIn("not the one we dialled", str(failure.value))
        self.assertFalse(server.is_ready)
        self.assertEqual(self.server_host.connections, set())

    def test_ping(self) -> None:
        client, _, pump = self.connect()
        pump.flush()
        rtt = ping.ping(client, self.clock)
        pump.flush()
        self.assertEqual(self.successResultOf(rtt), 0.0)
        self.assertEqual(client.streams, [])

    def test_identify(self) -> None:
        client, _, pump = self.connect()
        pump.flush()
        answer = identify.identify(client)
        pump.flush()
        info: Identify = self.successResultOf(answer)
        self.assertEqual(info.publicKey, SERVER_KEY.public_key_bytes())
        self.assertEqual(list(info.listenAddrs), [multiaddr_from_text("/ip4/10.0.0.1/tcp/4001")])
        self.assertEqual(
            list(info.protocols),
            sorted([ECHO, identify.PROTOCOL_ID, identify.PUSH_PROTOCOL_ID, ping.PROTOCOL_ID]),
        )
        self.assertEqual(info.observedAddr, multiaddr_from_text("/ip4/10.0.0.2/tcp/50000"))
        self.assertEqual(info.protocolVersion, "ipfs/0.1.0")
        self.assertEqual(info.agentVersion, f"rendezvous/{__version__}")
        record, envelope = open_peer_record(info.signedPeerRecord)
        self.assertEqual(record.peer_id, SERVER_KEY.peer_id())
        self.assertEqual(record.addrs, (multiaddr_from_text("/ip4/10.0.0.1/tcp/4001"),))
        self.assertEqual(envelope.peer_id(), SERVER_KEY.peer_id())

    def test_identify_decode_merges_messages(self) -> None:
        first = identify.encode(Identify(agentVersion="a"))
        second = identify.encode(Identify(signedPeerRecord=b"r"))
        merged = identify.decode(first + second)
        self.assertEqual((merged.agentVersion, merged.signedPeerRecord), ("a", b"r"))
        self.assertRaises(identify.IdentifyError, identify.decode, first[:-1])

    def test_stream_round_trip(self) -> None:
        client, _, pump = self.connect()
        pump.flush()
        recorder = Recorder()
        opened = client.open_stream(ECHO, recorder)
        pump.flush()
        stream: Stream = self.successResultOf(opened)
        self.assertEqual((stream.protocol_id, stream.remote_peer_id), (ECHO, SERVER_KEY.peer_id()))
        stream.write(b"hello")
        stream.close()
        pump.flush()
        self.assertEqual(recorder.received, b"hello")
        self.assertTrue(recorder.ended)
        self.assertEqual(recorder.closed, [None])
        self.assertEqual(client.streams, [])

    def test_unsupported_protocol(self) -> None:
        client, server, pump = self.connect()
        pump.flush()
        opened = client.open_stream("/nope/1.0.0", Recorder())
        pump.flush()
        self.failureResultOf(opened, StreamFailed)
        self.assertTrue(client.is_ready)
        self.assertEqual(server.streams, [])

    def test_early_bytes_go_with_the_proposal(self) -> None:
        """Optimistic select: the protocol's first bytes leave before the peer agrees."""
        server_side = Recorder()
        self.server_host.set_handler(ECHO, lambda: server_side)
        client, server, pump = self.connect()
        pump.flush()
        seen = stream_data(server)
        recorder = Recorder()
        opened = client.open_stream(ECHO, recorder, early=b"hello")
        pump.flush()
        stream = self.successResultOf(opened)
        self.assertEqual(seen[0], encode_message(PROTOCOL_ID) + encode_message(ECHO) + b"hello")
        self.assertEqual(server_side.received, b"hello")
        self.assertIs(stream.protocol, recorder)
        self.assertIs(recorder.stream, stream)

    def test_early_bytes_refused_with_na(self) -> None:
        """A peer that answers "na" (here to our proposal and the early bytes, read as a
        second proposal) fails the open and the stream is reset."""
        client, server, pump = self.connect()
        pump.flush()
        seen = stream_data(client)
        recorder = Recorder()
        opened = client.open_stream("/nope/1.0.0", recorder, early=encode_message("/nope/2"))
        pump.flush()
        self.assertIn(encode_message("na"), b"".join(seen))
        self.assertIn("none", str(self.failureResultOf(opened, StreamFailed).value))
        self.assertIsNone(recorder.stream)
        self.assertEqual((client.streams, client._negotiating, server.streams), ([], {}, []))
        assert client._yamux is not None
        self.assertEqual(client._yamux.stream_ids, [])
        self.assertTrue(client.is_ready)

    def test_tcp_writes_of_one_turn_leave_together_at_its_end(self) -> None:
        """On a TCP transport, what one reactor turn wrote is sent once that turn's events
        are handled (one system call), not after one more poll; not once closing."""
        client, _, pump = self.connect()
        pump.flush()
        stream = self.open(client, pump, Recorder())
        held = HeldTransport()
        client._transport = held
        client._sends_itself = False
        stream.write(b"a")
        stream.write(b"b")
        self.assertEqual(held.sent, [])
        self.clock.advance(0)
        self.assertEqual(len(held.sent), 1)
        self.assertGreater(len(held.sent[0]), 2 * 16)  # two Noise messages
        stream.write(b"c")
        client.close()
        self.clock.advance(0)
        self.assertEqual(len(held.sent), 1)  # the reactor flushes a closing transport

    def test_reset_reaches_the_handler(self) -> None:
        server_side = Recorder()
        self.server_host.set_handler(ECHO, lambda: server_side)
        client, _, pump = self.connect()
        pump.flush()
        stream = self.open(client, pump, Recorder())
        stream.reset()
        pump.flush()
        self.assertEqual(server_side.closed, ["reset by the peer"])

    def test_data_then_reset_in_one_batch(self) -> None:
        """An echo of data whose stream the same read reset is dropped quietly."""
        closed: list[str | None] = []

        class RecordingEcho(Echo):
            def stream_closed(self, reason: str | None) -> None:
                closed.append(reason)

        self.server_host.set_handler(ECHO, RecordingEcho)
        client, _, pump = self.connect()
        pump.flush()
        stream = self.open(client, pump, Recorder())
        client._write_secure(
            encode_header(TYPE_DATA, 0, stream.stream_id, 2)
            + b"hi"
            + encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, stream.stream_id, 0)
        )
        with capturedLogs() as events:
            pump.flush()
        self.assertEqual(closed, ["reset by the peer"])
        self.assertEqual([e["log_format"] for e in events], [])

    def test_replies_to_one_read_go_out_together(self) -> None:
        """What handlers write while one read is handled leaves in one Noise message."""
        client, server, pump = self.connect()
        pump.flush()
        recorder = Recorder()
        stream = self.open(client, pump, recorder)
        assert server._noise is not None
        encrypt_frames = server._noise.encrypt_frames
        messages: list[bytes] = []

        def recording(plaintext: bytes) -> list[bytes]:
            messages.append(plaintext)
            return encrypt_frames(plaintext)

        server._noise.encrypt_frames = recording  # type: ignore[method-assign]
        client._write_secure(
            b"".join(encode_header(TYPE_DATA, 0, stream.stream_id, 1) + b for b in (b"a", b"b"))
        )
        pump.flush()
        self.assertEqual(recorder.received, b"ab")
        self.assertEqual(len(messages), 1)

    def test_data_frames_fit_noise_messages(self) -> None:
        """Large writes go out as yamux frames that each fill one Noise message."""
        client, _, pump = self.connect()
        pump.flush()
        recorder = Recorder()
        stream = self.open(client, pump, recorder)
        assert client._noise is not None
        encrypt_frames = client._noise.encrypt_frames
        messages: list[bytes] = []

        def recording(plaintext: bytes) -> list[bytes]:
            messages.append(plaintext)
            return encrypt_frames(plaintext)

        client._noise.encrypt_frames = recording  # type: ignore[method-assign]
        stream.write(b"z" * 200_000)
        pump.flush()
        self.assertEqual(recorder.received, b"z" * 200_000)
        self.assertGreaterEqual(len(messages), 4)
        for message in messages[:3]:
            self.assertEqual(len(message), MAX_PLAINTEXT_LEN)
            self.assertEqual(int.from_bytes(message[8:12], "big"), MAX_PLAINTEXT_LEN - 12)

    def test_handler_error_resets_the_stream_only(self) -> None:
        self.server_host.set_handler(ECHO, Failing)
        client, _, pump = self.connect()
        pump.flush()
        recorder = Recorder()
        stream = self.open(client, pump, recorder)
        stream.write(b"x")
        pump.flush()
        self.assertEqual(recorder.closed, ["reset by the peer"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(client.is_ready)

    def test_backpressure(self) -> None:
        client, _, pump = self.connect()
        pump.flush()
        recorder = Recorder()
        stream = self.open(client, pump, recorder)
        stream.write(b"x" * (INITIAL_WINDOW + 1))
        self.assertEqual(recorder.pauses, ["pause"])
        self.assertTrue(stream.writing_paused)
        pump.flush()
        self.assertEqual(recorder.pauses, ["pause", "resume"])
        self.assertEqual(len(recorder.received), INITIAL_WINDOW + 1)

    def test_tcp_pushback_pauses_stream_writers(self) -> None:
        client, _, pump = self.connect()
        pump.flush()
        recorder = Recorder()
        stream = self.open(client, pump, recorder)
        client.pauseProducing()
        self.assertTrue(stream.writing_paused)
        client.resumeProducing()
        self.assertEqual(recorder.pauses, ["pause", "resume"])

    def test_stream_opened_while_tcp_pushes_back_starts_paused(self) -> None:
        client, _, pump = self.connect()
        pump.flush()
        client.pauseProducing()
        recorder = Recorder()
        stream = self.open(client, pump, recorder)
        self.assertTrue(stream.writing_paused)
        self.assertEqual(recorder.pauses, ["pause"])

    def test_stream_limit(self) -> None:
        self.server_host = self.make_host(SERVER_KEY, max_streams_per_connection=1)
        self.server_host.set_handler(ECHO, Echo)
        client, _, pump = self.connect()
        pump.flush()
        first = client.open_stream(ECHO, Recorder())
        second = client.open_stream(ECHO, Recorder())
        pump.flush()
        self.successResultOf(first)
        self.failureResultOf(second, StreamFailed)

    def test_stream_negotiation_timeout(self) -> None:
        client, server, pump = self.connect()
        pump.flush()
        session = client._yamux
        assert session is not None
        stream_id = session.open_stream()  # and never propose a protocol
        client._flush()
        pump.flush()
        self.assertEqual(list(server._negotiating), [stream_id])
        self.clock.advance(15)
        pump.flush()
        self.assertEqual(server._negotiating, {})
        self.assertFalse(session.has_stream(stream_id))
        self.assertTrue(client.is_ready)

    def test_connections_per_ip(self) -> None:
        self.server_host = self.make_host(SERVER_KEY, max_connections_per_ip=1)
        first, _, pump1 = self.connect()
        second, _, pump2 = self.connect(client_port=50001)
        pump1.flush()
        pump2.flush()
        self.successResultOf(first.ready)
        self.failureResultOf(second.ready, UpgradeFailed)
        self.assertEqual(len(self.server_host.connections), 1)
        first.close()
        pump1.flush()
        self.assertEqual(self.server_host.connections, set())


class ListenerTests(SynchronousTestCase):
    """The listening side fed by hand: refusals and failures."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.host = Host(SERVER_KEY, self.clock)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 5000))
        self.connection = self.host.factory().buildProtocol(None)
        self.connection.makeConnection(self.transport)

    def test_tls_is_refused_then_noise_agreed(self) -> None:
        """go proposes /tls/1.0.0 first: we answer na, then echo /noise."""
        initiator = Initiator(["/tls/1.0.0", "/noise"])
        server_header = self.transport.value()
        self.transport.clear()
        self.connection.dataReceived(initiator.start())
        answer = self.transport.value()
        self.assertEqual(answer, encode_message("na"))
        self.transport.clear()
        retry = initiator.feed(server_header + answer)
        self.connection.dataReceived(retry)
        initiator.feed(self.transport.value())
        self.assertEqual(initiator.selected, "/noise")

    def test_garbage_closes_with_a_log_line(self) -> None:
        self.transport.clear()
        self.connection.dataReceived(b"\x05hello")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.host.connections, {self.connection})
        self.connection.connectionLost()
        self.assertEqual(self.host.connections, set())

    def test_failure_log_lines_are_rate_limited(self) -> None:
        with capturedLogs() as events:
            for port in range(100):
                transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", port))
                connection = self.host.factory().buildProtocol(None)
                connection.makeConnection(transport)
                connection.dataReceived(b"\x05hello")
                connection.connectionLost()
        closing = [e for e in events if "closing the connection" in e["log_format"]]
        self.assertEqual(len(closing), self.host.limiter.burst)
        self.assertEqual(closing[0]["reason"], "message does not end with a newline")
        self.clock.advance(self.host.limiter.interval)
        with capturedLogs() as events:
            self.connection.dataReceived(b"\x05hello")
        self.assertEqual(
            [e["suppressed"] for e in events if "suppressed" in e], [100 - self.host.limiter.burst]
        )

    def test_upgrade_timeout(self) -> None:
        self.clock.advance(14)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)

    def test_too_many_bytes_before_ready(self) -> None:
        limit = self.host.limits.max_upgrade_bytes
        self.connection.dataReceived(encode_message("/multistream/1.0.0"))
        self.assertFalse(self.transport.disconnecting)
        self.connection.dataReceived(b"\x00" * limit)
        self.assertTrue(self.transport.disconnecting)


class TCPAddressTests(SynchronousTestCase):
    def test_parse(self) -> None:
        address = TCPAddress.parse("/ip4/127.0.0.1/tcp/4002")
        self.assertEqual((address.host, address.port, address.ipv6), ("127.0.0.1", 4002, False))
        self.assertEqual(address.server_description(), "tcp:4002:interface=127.0.0.1:backlog=4096")
        six = TCPAddress.parse(f"/ip6/::1/tcp/0/p2p/{SERVER_KEY.peer_id_text()}")
        self.assertEqual(six.server_description(9), "tcp6:0:interface=\\:\\:1:backlog=9")
        self.assertEqual(six.peer_id, SERVER_KEY.peer_id())
        self.assertEqual(six.with_port(7).text(), "/ip6/::1/tcp/7")

    def test_refused(self) -> None:
        from rendezvous.addrs import InvalidMultiaddr

        for text in (
            "/ip4/127.0.0.1/udp/1",
            "/ip4/1.2.3/tcp/1",
            "/ip4/1.2.3.4/tcp/70000",
            "/ip4/1.2.3.4/tcp/1/p2p/nope",
            "ip4/1.2.3.4/tcp/1",
            "/dns/x/tcp/1",
        ):
            self.assertRaises(InvalidMultiaddr, TCPAddress.parse, text)


class LoopbackTests(TestCase):
    """Real TCP on 127.0.0.1."""

    timeout = 20

    @inlineCallbacks
    def test_dial_ping_identify(self):  # type: ignore[no-untyped-def]
        server_host = Host(SERVER_KEY, reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            server_host.factory()
        )
        self.addCleanup(port.stopListening)
        address = TCPAddress("127.0.0.1", port.getHost().port)
        server_host.add_listen_addr(address.binary())
        client_host = Host(CLIENT_KEY, reactor)
        connection = yield client_host.dial(address.client_endpoint(reactor), SERVER_KEY.peer_id())
        self.assertEqual(connection.remote_peer_id, SERVER_KEY.peer_id())
        rtt = yield ping.ping(connection, reactor)
        self.assertGreaterEqual(rtt, 0)
        info = yield identify.identify(connection)
        self.assertEqual(list(info.listenAddrs), [address.binary()])
        closed: Deferred[None] = Deferred()
        connection.connectionLost = lambda reason: (  # type: ignore[method-assign]
            Connection.connectionLost(connection, reason),
            closed.callback(None),
        )
        connection.close()
        yield closed
        self.assertEqual(client_host.connections, set())


class FuzzTests(SynchronousTestCase):
    """Whatever a stranger sends, the connection closes or waits: it never raises."""

    @settings(max_examples=200, deadline=None)
    @given(chunks=st.lists(st.binary(max_size=300), max_size=6), dialer=st.booleans())
    def test_arbitrary_bytes(self, chunks: list[bytes], dialer: bool) -> None:
        host = Host(SERVER_KEY, Clock())
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 5000))
        connection = Connection(host, dialer=dialer)
        connection.ready.addErrback(lambda _: None)  # a dial() caller would consume it
        connection.makeConnection(transport)
        for chunk in chunks:
            connection.dataReceived(chunk)
        connection.connectionLost()
        self.assertEqual(host.connections, set())
        self.assertEqual(self.flushLoggedErrors(), [])

    @settings(max_examples=300, deadline=None)
    @given(
        frames=st.lists(
            st.tuples(
                st.integers(0, 4),
                st.integers(0, 15),
                st.integers(0, 6),
                st.integers(0, 80),
                st.binary(max_size=80),
            ),
            max_size=10,
        ),
        batch=st.booleans(),
    )
    def test_arbitrary_yamux_frames(
        self, frames: list[tuple[int, int, int, int, bytes]], batch: bool
    ) -> None:
        """After the upgrade, arbitrary yamux frames: the server fails cleanly or copes."""
        clock = Clock()
        server_host = Host(SERVER_KEY, clock)
        server_host.set_handler(ECHO, Echo)
        client_factory, server_factory = transports()
        client, _, pump = connectedServerAndClient(
            lambda: server_host.factory().buildProtocol(None),
            lambda: Connection(Host(CLIENT_KEY, clock), dialer=True),
            clientTransportFactory=client_factory,  # type: ignore[arg-type]
            serverTransportFactory=server_factory,  # type: ignore[arg-type]
            clock=clock,
        )
        pump.flush()
        wire = [encode_header(t, f, i, n) + body for t, f, i, n, body in frames]
        for chunk in [b"".join(wire)] if batch else wire:
            client._write_secure(chunk)
            pump.flush()
        clock.advance(60)
        pump.flush()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stream_opened_and_reset_in_one_batch(self) -> None:
        """A SYN, data and RST for one stream in a single read: nothing is left behind."""
        clock = Clock()
        server_host = Host(SERVER_KEY, clock)
        server_host.set_handler(ECHO, Echo)
        client_factory, server_factory = transports()
        client, server, pump = connectedServerAndClient(
            lambda: server_host.factory().buildProtocol(None),
            lambda: Connection(Host(CLIENT_KEY, clock), dialer=True),
            clientTransportFactory=client_factory,  # type: ignore[arg-type]
            serverTransportFactory=server_factory,  # type: ignore[arg-type]
            clock=clock,
        )
        pump.flush()
        proposal = encode_message("/multistream/1.0.0") + encode_message(ECHO)
        client._write_secure(
            encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
            + encode_header(TYPE_DATA, 0, 1, len(proposal))
            + proposal
            + encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)
        )
        pump.flush()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual((server._negotiating, server.streams), ({}, []))
        self.assertTrue(server.is_ready)

    @given(
        agent=st.text(max_size=50),
        addrs=st.lists(st.binary(min_size=1, max_size=40), max_size=5),
        protocols=st.lists(st.text(max_size=30), max_size=5),
    )
    def test_identify_round_trip(
        self, agent: str, addrs: list[bytes], protocols: list[str]
    ) -> None:
        message = Identify(agentVersion=agent, listenAddrs=addrs, protocols=protocols)
        self.assertEqual(identify.decode(identify.encode(message)), message)


class IdentifyPushTests(InMemoryTests):
    def test_new_listen_address_is_pushed_to_connected_peers(self) -> None:
        _, server, pump = self.connect()
        pump.flush()
        self.client_host.add_listen_addr(multiaddr_from_text("/ip4/10.0.0.2/tcp/4005"))
        pump.flush()
        pushed = self.server_host.pushed[server]
        self.assertEqual(list(pushed.listenAddrs), [multiaddr_from_text("/ip4/10.0.0.2/tcp/4005")])
        self.assertEqual(pushed.publicKey, CLIENT_KEY.public_key_bytes())
        self.client_host.add_listen_addr(multiaddr_from_text("/ip4/10.0.0.2/tcp/4006"))
        pump.flush()
        self.assertEqual(
            list(self.server_host.pushed[server].listenAddrs),
            [
                multiaddr_from_text("/ip4/10.0.0.2/tcp/4005"),
                multiaddr_from_text("/ip4/10.0.0.2/tcp/4006"),
            ],
        )

    def test_push_with_another_key_or_garbage_is_refused(self) -> None:
        client, server, pump = self.connect()
        pump.flush()
        for payload in (
            identify.encode(Identify(publicKey=SERVER_KEY.public_key_bytes())),
            b"\xff" * 11,
        ):
            recorder = Recorder()
            opened = client.open_stream(identify.PUSH_PROTOCOL_ID, recorder)
            pump.flush()
            stream = self.successResultOf(opened)
            stream.write(payload)
            stream.close()
            pump.flush()
            self.assertNotIn(server, self.server_host.pushed)
            self.assertEqual(len(recorder.closed), 1)
