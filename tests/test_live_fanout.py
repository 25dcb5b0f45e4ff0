"""One push to many live subscribers from several threads (`rendezvous.live.fanout`)."""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rendezvous.limits import Limits
from rendezvous.live.fanout import LiveFanOut, ParallelSender
from rendezvous.model import Announcement, Change
from rendezvous.service import Daemon, DaemonConfig, live_dialect
from rendezvous.store.memory import MemoryStore

from .helpers import expected_register, peer, register, rendezvous, tcp_addr
from .test_loopback_raw import RawClient


def _pairs(count: int) -> list[tuple[socket.socket, socket.socket]]:
    pairs = []
    for _ in range(count):
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        pairs.append((ours, theirs))
    return pairs


class ParallelSenderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pairs = _pairs(50)
        for ours, theirs in self.pairs:
            self.addCleanup(ours.close)
            self.addCleanup(theirs.close)
        self.sender = ParallelSender(3)
        self.addCleanup(self.sender.stop)

    def test_every_socket_gets_the_bytes_once(self) -> None:
        sent = self.sender.send_all([ours for ours, _ in self.pairs], b"push")
        self.assertEqual(sent, [4] * 50)
        self.assertEqual({theirs.recv(16) for _, theirs in self.pairs}, {b"push"})

    def test_a_full_or_broken_socket_says_so_and_stops_nobody(self) -> None:
        ours, _ = self.pairs[0]
        big = b"x" * (4 << 20)
        first = ours.send(big)  # fills the socket: the next send takes nothing
        theirs_broken = self.pairs[1][1]
        theirs_broken.close()
        sent = self.sender.send_all([ours for ours, _ in self.pairs], b"push")
        self.assertLess(first, len(big))
        self.assertEqual(sent[0], 0)  # EAGAIN
        self.assertEqual(sent[1], 0)  # EPIPE or ECONNRESET: its transport will see to it
        self.assertEqual(sent[2:], [4] * 48)


class _Output:
    """A session's output whose socket is one end of a socket pair."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def close(self, last: bytes | None = None, *, discard_pending: bool = False) -> None:
        pass

    def idle_socket(self) -> socket.socket | None:
        return self.sock


class LiveFanOutTests(SynchronousTestCase):
    def setUp(self) -> None:
        limits = Limits()
        self.dialect = live_dialect(MemoryStore(limits), limits, Clock())
        self.fan_out = LiveFanOut(self.dialect, threads=2, threshold=10)
        self.addCleanup(self.fan_out.stop)
        self.announcement = Announcement(
            Change.REGISTER,
            self.dialect.store.registry.register(  # type: ignore[attr-defined]
                self.dialect.store.open_session(_Output(None)), "ns", peer("A", tcp_addr(1))
            ),
        )
        self.frame = self.dialect.codec.announcement_frame(self.announcement)

    def sessions(self, count: int, direct: bool = True) -> list:  # type: ignore[type-arg]
        made = []
        for ours, theirs in _pairs(count):
            self.addCleanup(ours.close)
            self.addCleanup(theirs.close)
            output = _Output(ours if direct else None)
            session = self.dialect.session(output, "test")
            session.start()
            made.append((session, output, theirs))
        return made

    def test_many_subscribers_are_written_directly(self) -> None:
        many = self.sessions(30)
        queued = self.sessions(3, direct=False)  # a queue or a libp2p stream: as before
        self.fan_out([s for s, _, _ in many + queued], self.announcement)
        for _, output, theirs in many:
            self.assertEqual(theirs.recv(4096), self.frame)
            self.assertEqual(output.sent, [])
        for _, output, _ in queued:
            self.assertEqual(output.sent, [self.frame])
        self.assertEqual(self.dialect.metrics.sent["register"], 33)

    def test_the_rest_of_a_partial_send_is_queued(self) -> None:
        [(session, output, _)] = self.sessions(1)
        ours = output.sock
        assert ours is not None
        ours.send(b"x" * (4 << 20))  # fill it
        others = self.sessions(20)
        self.fan_out([session] + [s for s, _, _ in others], self.announcement)
        self.assertEqual(output.sent, [self.frame])  # through the output, after the rest
        self.assertTrue(all(theirs.recv(4096) == self.frame for _, _, theirs in others))

    def test_few_subscribers_or_one_thread_are_the_plain_loop(self) -> None:
        few = self.sessions(5)
        self.fan_out([s for s, _, _ in few], self.announcement)
        self.assertEqual([o.sent for _, o, _ in few], [[self.frame]] * 5)
        one = LiveFanOut(self.dialect, threads=1, threshold=1)
        many = self.sessions(20)
        one([s for s, _, _ in many], self.announcement)
        self.assertEqual([o.sent for _, o, _ in many], [[self.frame]] * 20)


class DaemonFanOutTests(TestCase):
    """A real daemon, 300 raw subscribers: each is pushed the REGISTER once, before the
    answer to its next request."""

    timeout = 60

    @inlineCallbacks
    def test_every_subscriber_once_and_in_order(self):  # type: ignore[no-untyped-def]
        daemon = Daemon(
            DaemonConfig(
                listen=("tcp:0:interface=127.0.0.1",),
                limits=Limits(max_sessions_per_ip=1000, session_rate_per_ip=1000),
            ),
            reactor,
        )
        daemon.startService()
        self.addCleanup(daemon.stopService)
        port = daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        watchers = yield gatherResults(
            [endpoint.connect(Factory.forProtocol(RawClient)) for _ in range(300)]
        )
        for watcher in watchers:
            self.addCleanup(watcher.transport.loseConnection)
            watcher.send(rendezvous("ns"))
        yield gatherResults([w.settle() for w in watchers])
        publisher = yield endpoint.connect(Factory.forProtocol(RawClient))
        self.addCleanup(publisher.transport.loseConnection)
        publisher.send(register("ns", "A", tcp_addr(1)))
        yield publisher.settle()
        yield gatherResults([w.settle() for w in watchers])  # the push came before this
        expected = expected_register("ns", ("A", (tcp_addr(1),))).SerializeToString()
        for watcher in watchers:
            self.assertEqual(watcher.take_bytes(), [expected])
