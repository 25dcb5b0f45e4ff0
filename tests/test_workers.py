"""The hub and a worker's store, wired together in memory: one registry, two workers."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport, IUNIXTransport
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from rendezvous.limits import Limits
from rendezvous.live.codec import LiveCodec
from rendezvous.live.session import LiveDialect
from rendezvous.loglimit import LogLimiter
from rendezvous.metrics import Metrics, empty_counts
from rendezvous.model import Announcement, Change, Peer, Refused, Registration, Status
from rendezvous.pb import workers_pb2 as pb
from rendezvous.registry import Session
from rendezvous.store.memory import MemoryStore
from rendezvous.workers import pool as pool_module
from rendezvous.workers.hub import Hub, WorkerLink
from rendezvous.workers.hubstore import HubStore
from rendezvous.workers.pool import (
    WorkerPool,
    _Acceptor,
    _Channel,
    _HandOverSender,
    can_hand_over,
    worker_limits,
)
from rendezvous.workers.wire import (
    ChannelError,
    Kind,
    RecordDecoder,
    counters_record,
    define_record,
    hello_record,
    message_record,
    record,
)

from .helpers import peer, unframe_all


class Client:
    """A session's side, keeping what the store told it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.dropped: Refused | None = None

    def announce(self, announcement: Announcement) -> None:
        entry = announcement.registration
        self.calls.append((announcement.change.value, entry.namespace, entry.peer.id))

    def snapshot(self, namespace: str, registrations: list[Registration]) -> None:
        self.calls.append(("snapshot", namespace, [r.peer.id for r in registrations]))

    def discovered(
        self, request_id: int | None, namespace: str, registrations: list[Registration]
    ) -> None:
        self.calls.append(("discovered", request_id, [r.peer.id for r in registrations]))

    def refused(self, request_id: int | None, refusal: Refused) -> None:
        self.calls.append(("refused", request_id, refusal.status))

    def drop(self, refusal: Refused) -> None:
        self.dropped = refusal


class Worker:
    """A `HubStore` whose records reach the hub's `WorkerLink` at once, and back on
    the hub's next flush (the end of the reactor turn, on the clock)."""

    def __init__(self, hub: Hub, name: str, max_sessions: int = 100) -> None:
        self.store = HubStore(max_sessions)
        self.link: WorkerLink = hub.link(name, self.store.feed)
        self.store.attach(self.link.feed)


class HubTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.memory = MemoryStore(Limits(max_sessions=3), self.clock)
        self.hub = Hub(self.memory, self.clock)
        self.a = Worker(self.hub, "a")
        self.b = Worker(self.hub, "b")

    def turn(self) -> None:
        self.clock.advance(0)

    def watched_alice(self) -> tuple[Client, Session, Session]:
        """A watcher of "ns" on worker a, and alice registering there from worker b."""
        watcher = Client()
        watching = self.a.store.open_session(watcher)
        self.a.store.subscribe(watching, "ns", None)
        alice = self.b.store.open_session(Client())
        self.b.store.register(alice, "ns", peer("alice"), None)
        return watcher, watching, alice

    def test_push_crosses_workers_and_ends_with_the_session(self) -> None:
        watcher, _, alice = self.watched_alice()
        self.turn()
        self.b.store.close_session(alice)
        self.turn()
        alice_id = peer("alice").id
        self.assertEqual(
            watcher.calls,
            [("snapshot", "ns", []), ("register", "ns", alice_id), ("unregister", "ns", alice_id)],
        )
        self.assertEqual(self.memory.stats().sessions, 1)

    def test_snapshot_comes_before_the_pushes_that_follow_it(self) -> None:
        bob = self.b.store.open_session(Client())
        self.b.store.register(bob, "ns", peer("bob"), None)
        watcher = Client()
        watching = self.a.store.open_session(watcher)
        self.a.store.subscribe(watching, "ns", None)
        self.b.store.register(bob, "ns", peer("carol"), None)
        self.turn()
        self.assertEqual(
            watcher.calls,
            [("snapshot", "ns", [peer("bob").id]), ("register", "ns", peer("carol").id)],
        )

    def test_one_define_and_one_push_record_per_worker_per_announcement(self) -> None:
        written: list[bytes] = []
        link = self.hub.link("c", written.append)
        link.feed(hello_record())
        for sid in (1, 2):
            link.feed(message_record(Kind.OPEN, pb.Open(sid=sid)))
            subscribe = pb.Request(sid=sid, subscribe=pb.Request.Subscribe(namespace="ns"))
            link.feed(message_record(Kind.REQUEST, subscribe))
        self.turn()
        written.clear()
        alice = self.a.store.open_session(Client())
        self.a.store.register(alice, "ns", peer("alice"), None)
        self.turn()
        kinds = [kind for kind, _ in RecordDecoder().feed(b"".join(written))]
        self.assertEqual(kinds, [Kind.DEFINE, Kind.PUSH])

    def test_answers_carry_request_ids_and_refusals(self) -> None:
        client = Client()
        session = self.a.store.open_session(client)
        other = self.b.store.open_session(Client())
        self.b.store.register(other, "ns", peer("alice"), None)
        self.a.store.register(session, "ns", peer("alice"), 7)
        self.a.store.discover(session, "ns", 10, 8)
        self.a.store.discover(session, "empty", 10, 9)
        self.turn()
        self.assertEqual(
            client.calls,
            [
                ("refused", 7, Status.NOT_AUTHORIZED),
                ("discovered", 8, [peer("alice").id]),
                ("discovered", 9, []),
            ],
        )

    def test_own_registrations_are_not_pushed_back(self) -> None:
        client = Client()
        session = self.a.store.open_session(client)
        self.a.store.subscribe(session, "ns", None)
        self.a.store.register(session, "ns", peer("alice"), None)
        self.turn()
        self.assertEqual(client.calls, [("snapshot", "ns", [])])

    def test_a_lost_worker_takes_its_sessions_with_it(self) -> None:
        watcher, _, _ = self.watched_alice()
        self.turn()
        self.hub.unlink(self.b.link)
        self.turn()
        self.assertEqual(watcher.calls[-1], ("unregister", "ns", peer("alice").id))
        self.assertEqual(self.memory.stats().registrations, 0)
        self.assertEqual(self.memory.stats().sessions, 1)

    def test_the_hub_refusing_a_session_drops_it_in_the_worker(self) -> None:
        for _ in range(3):
            self.a.store.open_session(Client())
        fourth = Client()
        self.b.store.open_session(fourth)
        self.turn()
        assert fourth.dropped is not None
        self.assertEqual(fourth.dropped.status, Status.UNAVAILABLE)

    def test_a_worker_holds_its_share_of_sessions(self) -> None:
        worker = Worker(self.hub, "small", max_sessions=1)
        worker.store.open_session(Client())
        with self.assertRaises(Refused):
            worker.store.open_session(Client())

    def test_records_for_ended_sessions_are_ignored(self) -> None:
        watcher = Client()
        watching = self.a.store.open_session(watcher)
        self.a.store.subscribe(watching, "ns", None)
        self.turn()
        alice = self.b.store.open_session(Client())
        self.b.store.register(alice, "ns", peer("alice"), None)
        # The push is on its way when the watcher leaves.
        self.a.store.close_session(watching)
        self.turn()
        self.assertEqual(watcher.calls, [("snapshot", "ns", [])])

    def test_records_the_schema_does_not_allow_break_the_channel(self) -> None:
        bad = [
            message_record(Kind.REQUEST, pb.Request(sid=1)),  # no call
            record(Kind.PUSH, b"\x00" * 8),  # the hub's kind
            record(Kind.OPEN, b"\xff\xff"),  # not a message
            record(Kind.REQUEST, b"\x1a\x02\x0a\x01\xff"),  # a namespace not UTF-8
            record(99, b""),  # no kind at all
        ]
        for data in bad:
            with self.assertRaises(ChannelError):
                self.a.link.feed(data)

    def test_worker_counters_add_up_and_outlive_the_worker(self) -> None:
        metrics = Metrics(self.memory.stats)
        metrics.include(self.hub.worker_counts)
        metrics.received["register"] = 1
        counts = empty_counts()
        counts["received"]["register"] = 5
        counts["refusals"]["not_authorized"] = 2
        self.a.link.feed(counters_record(counts))
        self.assertEqual(self.a.link.counts, counts)

        def value(name: str, **labels: str) -> float | None:
            return metrics.registry.get_sample_value(name, labels)

        self.assertEqual(value("rendezvous_messages_received_total", type="register"), 6)
        self.hub.unlink(self.a.link)
        self.assertEqual(value("rendezvous_messages_received_total", type="register"), 6)
        self.assertEqual(value("rendezvous_refusals_total", reason="not_authorized"), 2)


class RecordTests(TestCase):
    @given(
        st.lists(st.tuples(st.sampled_from(list(Kind)), st.binary(max_size=300)), max_size=20),
        st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10),
    )
    def test_records_survive_any_split(
        self, records: list[tuple[Kind, bytes]], cuts: list[int]
    ) -> None:
        stream = b"".join(record(kind, body) for kind, body in records)
        decoder = RecordDecoder()
        out: list[tuple[int, bytes]] = []
        position = 0
        for cut in cuts * (len(stream) // sum(cuts) + 1):
            out += decoder.feed(stream[position : position + cut])
            position += cut
        self.assertEqual(out, [(int(k), b) for k, b in records])

    def test_an_impossible_length_is_an_error(self) -> None:
        with self.assertRaises(ChannelError):
            RecordDecoder().feed(b"\x00\x00\x00\x00\x01")
        with self.assertRaises(ChannelError):
            RecordDecoder().feed(b"\xff\xff\xff\xff\x01")

    def test_a_push_before_any_announcement_breaks_the_channel(self) -> None:
        store = HubStore(10, send=lambda data: None)
        client = Client()
        store.open_session(client)
        store.feed(hello_record())
        with self.assertRaises(ChannelError):
            store.feed(record(Kind.PUSH, b"\x0a\x08" + (1).to_bytes(8, "little")))
        self.assertEqual(client.calls, [])

    def test_a_push_reaches_its_sessions_only(self) -> None:
        store = HubStore(10, send=lambda data: None)
        clients = [Client() for _ in range(3)]
        for client in clients:
            store.open_session(client)
        announcement = Announcement(Change.REGISTER, Registration("ns", Peer("x", b"x")))
        store.feed(hello_record() + define_record(announcement))
        store.feed(
            record(
                Kind.PUSH, b"\x0a\x10" + (1).to_bytes(8, "little") * 1 + (3).to_bytes(8, "little")
            )
        )
        self.assertEqual(
            [c.calls for c in clients], [[("register", "ns", "x")], [], [("register", "ns", "x")]]
        )


class _FakeWorker:
    def __init__(self, load: int, room: int) -> None:
        self.load = load
        self.room = room
        self.got: list[socket.socket] = []

    @property
    def can_take(self) -> bool:
        return self.room > 0

    def hand(self, conn: socket.socket) -> None:
        assert self.room > 0
        self.room -= 1
        self.load += 1
        self.got.append(conn)


class _FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.readers: set[object] = set()

    def addReader(self, reader: object) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.discard(reader)


@implementer(IUNIXTransport, ITCPTransport)
class _SocketPairTransport(StringTransport):
    """A worker's socket pair as the main process sees it: descriptors sent, bytes
    written."""

    def __init__(self) -> None:
        super().__init__()
        self.descriptors: list[int] = []

    def sendFileDescriptor(self, descriptor: int) -> None:
        self.descriptors.append(descriptor)


class HandOverTests(TestCase):
    def pool(self, *workers: _FakeWorker) -> tuple[WorkerPool, _FakeReactor]:
        reactor = _FakeReactor()
        memory = MemoryStore(Limits(), reactor)
        pool = WorkerPool(len(workers), Hub(memory, reactor), [], Factory(), Limits(), reactor)
        pool.workers = list(workers)  # type: ignore[arg-type]
        return pool, reactor

    def connection(self) -> socket.socket:
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return a

    def listening(self, pool: WorkerPool) -> tuple[_Acceptor, tuple[str, int]]:
        """A real listener whose connections ``pool`` accepts."""
        from twisted.internet import reactor

        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        acceptor = _Acceptor(pool, port)
        self.addCleanup(acceptor.close)
        pool._acceptors.append(acceptor)
        return acceptor, ("127.0.0.1", port.getHost().port)

    def client(self, address: tuple[str, int]) -> socket.socket:
        conn = socket.create_connection(address)  # the kernel's listen queue completes it
        self.addCleanup(conn.close)
        return conn

    def test_the_least_loaded_worker_that_can_take_it_gets_the_connection(self) -> None:
        busy, idle, full = _FakeWorker(5, 10), _FakeWorker(1, 10), _FakeWorker(0, 0)
        pool, _ = self.pool(busy, idle, full)
        self.assertIs(pool.least_loaded(), idle)
        idle.room = 0
        self.assertIs(pool.least_loaded(), busy)
        busy.room = 0
        self.assertIsNone(pool.least_loaded())

    def test_accepting_waits_in_the_listen_queue_while_no_worker_can_take(self) -> None:
        worker = _FakeWorker(0, 1)
        pool, reactor = self.pool(worker)
        acceptor, address = self.listening(pool)
        pool.paused = True
        pool.room()  # a worker can take one: accept
        self.assertIn(acceptor, reactor.readers)
        self.client(address)
        self.client(address)
        acceptor.doRead()
        self.assertEqual(len(worker.got), 1)  # the second waits in the kernel's queue
        self.assertTrue(pool.paused)
        self.assertNotIn(acceptor, reactor.readers)
        self.assertEqual(reactor.getDelayedCalls(), [])  # nothing polls
        worker.room = 5
        pool.room()
        self.assertIn(acceptor, reactor.readers)
        acceptor.doRead()
        self.assertEqual(len(worker.got), 2)
        self.assertFalse(pool.paused)
        for conn in worker.got:
            conn.close()

    def test_only_plain_listeners_of_the_live_factory_are_handed_over(self) -> None:
        from twisted.internet import reactor

        live, other = Factory(), Factory()
        port = reactor.listenTCP(0, live, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.assertTrue(can_hand_over(port, live))
        self.assertFalse(can_hand_over(port, other))


class HandOverSocketTests(TestCase):
    def hand_over(self) -> tuple[_HandOverSender, _SocketPairTransport, list[str]]:
        events: list[str] = []
        pool = SimpleNamespace(room=lambda: events.append("room"))
        worker = SimpleNamespace(
            pool=pool, hand_over_lost=lambda hand_over, reason: events.append("lost")
        )
        hand_over = _HandOverSender(worker)  # type: ignore[arg-type]
        transport = _SocketPairTransport()
        hand_over.makeConnection(transport)
        return hand_over, transport, events

    def test_a_connection_goes_as_a_descriptor_and_is_closed_once_taken(self) -> None:
        hand_over, transport, events = self.hand_over()
        first, second = socket.socketpair()
        self.addCleanup(second.close)
        hand_over.hand(first)
        self.assertEqual(transport.descriptors, [first.fileno()])
        self.assertEqual(transport.value(), b"\0")
        self.assertEqual(list(hand_over.in_flight), [first])
        hand_over.dataReceived(b"\1")
        self.assertEqual(first.fileno(), -1)  # the main process's copy is closed
        self.assertEqual(list(hand_over.in_flight), [])
        self.assertEqual(events, ["room"])

    def test_a_full_hand_over_socket_takes_nothing_until_it_drains(self) -> None:
        hand_over, _, events = self.hand_over()
        self.assertTrue(hand_over.can_take)
        hand_over.pauseProducing()
        self.assertFalse(hand_over.can_take)
        hand_over.resumeProducing()
        self.assertTrue(hand_over.can_take)
        self.assertEqual(events, ["room"])

    def test_a_worker_that_does_not_answer_gets_at_most_max_in_flight(self) -> None:
        self.patch(pool_module, "MAX_IN_FLIGHT", 2)
        hand_over, _, _ = self.hand_over()
        pairs = [socket.socketpair() for _ in range(2)]
        for a, b in pairs:
            self.addCleanup(b.close)
            hand_over.hand(a)
        self.assertFalse(hand_over.can_take)
        hand_over.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(all(a.fileno() == -1 for a, _ in pairs))  # closed with the socket
        self.assertFalse(hand_over.can_take)


class ChannelBoundTests(TestCase):
    def test_a_worker_that_stops_reading_is_cut_off(self) -> None:
        worker = SimpleNamespace(index=1, channel=None)
        channel = _Channel(worker)  # type: ignore[arg-type]
        channel.max_unread = 10
        transport = _SocketPairTransport()
        channel.makeConnection(transport)
        self.assertIs(worker.channel, channel)
        channel.write(b"a" * 50)  # not pushed back: no bound
        channel.pauseProducing()
        channel.write(b"b" * 8)
        channel.resumeProducing()  # it read: the count starts again
        channel.pauseProducing()
        channel.write(b"c" * 8)
        self.assertFalse(transport.disconnecting)
        channel.write(b"d" * 8)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"a" * 50 + b"b" * 8 + b"c" * 8)


class RestartTests(TestCase):
    def test_a_worker_that_cannot_be_started_is_tried_again_later(self) -> None:
        reactor = _FakeReactor()

        def spawn(*args: object, **kwargs: object) -> None:
            raise OSError(24, "Too many open files")

        reactor.spawnProcess = spawn  # type: ignore[attr-defined]
        pool = WorkerPool(
            1, Hub(MemoryStore(Limits(), reactor), reactor), [], Factory(), Limits(), reactor
        )
        (worker,) = pool.workers
        worker._restart()
        self.assertIsNotNone(worker.restart)
        self.assertEqual(worker.pause, 2.0)
        self.assertIsNone(worker.done)
        reactor.advance(2.0)
        self.assertEqual(worker.pause, 4.0)
        pool.stopService()
        self.assertEqual(reactor.getDelayedCalls(), [])


class _RecordingOutput:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed_with: list[bytes | None] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def close(self, last: bytes | None = None, *, discard_pending: bool = False) -> None:
        self.closed_with.append(last)


class WorkerSessionTests(TestCase):
    def test_a_live_session_the_hub_refuses_is_told_and_closed(self) -> None:
        clock = Clock()
        limits = Limits(max_sessions=1)
        hub = Hub(MemoryStore(limits, clock), clock)
        hub.store.open_session(Client())  # the daemon is full
        worker = Worker(hub, "w")
        dialect = LiveDialect(
            worker.store, LiveCodec(limits), Metrics(worker.store.stats), LogLimiter(clock.seconds)
        )
        output = _RecordingOutput()
        session = dialect.session(output, "test")
        self.assertTrue(session.start())  # the worker's own share admits it
        clock.advance(0)
        self.assertTrue(session.closed)
        (last,) = output.closed_with
        assert last is not None
        (message,) = unframe_all(last)
        self.assertEqual(message.error.status, Status.UNAVAILABLE)
        self.assertEqual(worker.store.sessions, {})
        session.drop(Refused(Status.UNAVAILABLE, "again"))  # already closed: nothing more
        self.assertEqual(len(output.closed_with), 1)

    def test_records_the_schema_does_not_allow_from_the_hub_break_the_channel(self) -> None:
        bad = [
            record(Kind.COUNTERS, b""),  # a kind only the hub receives
            message_record(Kind.ANSWER, pb.Answer(sid=1)),  # no answer
            message_record(Kind.DROP, pb.Drop(sid=1, refusal=pb.Refusal(status=7))),
            record(Kind.DEFINE, b"\x08"),  # truncated
        ]
        for data in bad:
            store = HubStore(10, send=lambda data: None)
            store.open_session(Client())
            store.feed(hello_record())
            with self.assertRaises(ChannelError):
                store.feed(data)


class WorkerLimitsTests(TestCase):
    def test_the_whole_daemons_limits_are_shared_out(self) -> None:
        limits = Limits(max_sessions=1000, max_sessions_per_ip=256, session_rate_per_ip=50)
        shares = worker_limits(limits, 3)
        self.assertEqual(
            (shares.max_sessions, shares.max_sessions_per_ip, shares.session_rate_per_ip),
            (334, 86, 17),
        )
        self.assertEqual(shares.max_registrations_per_session, 256)  # a session's own: kept
        one = worker_limits(Limits(max_sessions_per_ip=2, session_rate_per_ip=1), 4)
        self.assertEqual((one.max_sessions_per_ip, one.session_rate_per_ip), (1, 1))
