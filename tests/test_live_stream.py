"""The live dialect over libp2p (`/rendezvous/live/1.0.0`): identity, cleanup, backpressure."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.live.stream import PROTOCOL_ID, live_stream_handler
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.stream import Stream
from rendezvous.pb.live_pb2 import Message
from rendezvous.service import live_dialect
from rendezvous.store.memory import MemoryStore

from .helpers import framed, peer_id, rendezvous, tcp_addr, unframe_all
from .test_p2p_connection import Recorder, transports

SERVER_KEY = PrivateKey.from_seed(b"S" * 32)


def register_self(key: PrivateKey, namespace: str, *addrs: bytes) -> Message:
    message = Message(type=Message.REGISTER)
    entry = message.register.add(ns=namespace)
    entry.peer.id = key.peer_id_text()
    entry.peer.addrs.extend(addrs)
    return message


class Peer:
    """A client host with one connection and one live stream to the server."""

    def __init__(self, test: LiveStreamTests, seed: bytes, port: int) -> None:
        self.key = PrivateKey.from_seed(seed * 32)
        self.host = Host(self.key, test.clock)
        client_factory, server_factory = transports(port)
        self.connection, self.server_connection, self.pump = connectedServerAndClient(
            lambda: test.server_host.factory().buildProtocol(None),
            lambda: Connection(self.host, dialer=True),
            clientTransportFactory=client_factory,  # type: ignore[arg-type]
            serverTransportFactory=server_factory,  # type: ignore[arg-type]
            clock=test.clock,
        )
        self.pump.flush()
        self.recorder = Recorder()
        opened = self.connection.open_stream(PROTOCOL_ID, self.recorder)
        self.pump.flush()
        self.stream: Stream = test.successResultOf(opened)
        self.test = test

    def send(self, *messages: Message) -> None:
        self.stream.write(b"".join(framed(m) for m in messages))
        self.test.flush()

    def received(self) -> list[Message]:
        data, self.recorder.received = self.recorder.received, b""
        return unframe_all(data)


class LiveStreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = Limits(max_pending_bytes=64 * 1024)
        self.store = MemoryStore(self.limits)
        self.dialect = live_dialect(self.store, self.limits, self.clock)
        self.server_host = Host(SERVER_KEY, self.clock)
        self.server_host.set_handler(PROTOCOL_ID, live_stream_handler(self.dialect, self.clock, 5))
        self.peers: list[Peer] = []

    def peer(self, seed: bytes) -> Peer:
        peer = Peer(self, seed, 50000 + len(self.peers))
        self.peers.append(peer)
        return peer

    def flush(self) -> None:
        for _ in range(3):
            for peer in self.peers:
                peer.pump.flush()

    def test_register_is_pushed_and_removed_when_the_stream_ends(self) -> None:
        alice, bob = self.peer(b"a"), self.peer(b"b")
        alice.send(register_self(alice.key, "ns", tcp_addr(1)))
        bob.send(rendezvous("ns"))
        [snapshot] = bob.received()
        self.assertEqual(snapshot.type, Message.REGISTER)
        self.assertEqual(snapshot.register[0].peer.id, alice.key.peer_id_text())
        alice.stream.close()
        self.flush()
        [gone] = bob.received()
        self.assertEqual(gone.type, Message.UNREGISTER)
        self.assertEqual(gone.unregister[0].peer.id, alice.key.peer_id_text())
        self.assertEqual(alice.recorder.closed, [None])
        self.assertEqual(self.store.stats().sessions, 1)

    def test_connection_loss_removes_registrations(self) -> None:
        alice, bob = self.peer(b"a"), self.peer(b"b")
        bob.send(rendezvous("ns"))
        alice.send(register_self(alice.key, "ns", tcp_addr(1)))
        [pushed] = bob.received()
        self.assertEqual(pushed.type, Message.REGISTER)
        alice.connection.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()
        [gone] = bob.received()
        self.assertEqual(gone.type, Message.UNREGISTER)
        self.assertEqual(alice.recorder.closed, ["connection lost"])

    def test_register_for_another_id_is_refused(self) -> None:
        alice = self.peer(b"a")
        message = Message(type=Message.REGISTER, request_id=7)
        message.register.add(ns="ns").peer.id = peer_id("mallory")
        alice.send(message)
        [error] = alice.received()
        self.assertEqual(
            (error.type, error.error.status, error.request_id), (Message.ERROR, 200, 7)
        )
        self.assertEqual(self.store.stats().registrations, 0)

    def test_slow_reader_is_dropped(self) -> None:
        """A subscriber whose stream stays paused past max_pending_bytes is dropped, then
        reset when it does not read its last messages."""
        alice, bob = self.peer(b"a"), self.peer(b"b")
        bob.send(rendezvous("ns"))
        bob.stream.pause_reading()
        big = register_self(alice.key, "ns", *[tcp_addr(n) for n in range(16)])
        sent = 0
        while self.store.stats().sessions == 2 and sent < 5000:
            alice.send(big)
            sent += 1
        self.assertEqual(self.store.stats().sessions, 1)
        self.assertGreater(sent, 1000)  # a yamux window and max_pending_bytes were filled
        self.assertEqual(bob.recorder.closed, [])
        self.clock.advance(5)
        self.flush()
        self.assertEqual(bob.recorder.closed, ["reset by the peer"])
        self.assertEqual(alice.recorder.closed, [])
