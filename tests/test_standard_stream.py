"""The standard dialect over libp2p streams, on the registry the live dialect shares."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.live.stream import PROTOCOL_ID as LIVE_PROTOCOL_ID
from rendezvous.live.stream import live_stream_handler
from rendezvous.loglimit import LogLimiter
from rendezvous.metrics import Metrics
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.stream import Stream
from rendezvous.pb import live_pb2
from rendezvous.pb.prespec_pb2 import Message as OldMessage
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.service import live_dialect
from rendezvous.standard.codec import Layout, StandardCodec
from rendezvous.standard.session import AGENT_TIMEOUT, StandardDialect, layout_for_agent
from rendezvous.standard.stream import CANVAS_PROTOCOL_ID, PROTOCOL_ID, standard_stream_handler
from rendezvous.store.memory import MemoryStore
from rendezvous.varint import decode_uvarint, encode_uvarint

from .helpers import framed, rendezvous, tcp_addr, unframe_all
from .test_p2p_connection import Recorder, transports

SERVER_KEY = PrivateKey.from_seed(b"S" * 32)


def frames(data: bytes) -> list[bytes]:
    out = []
    offset = 0
    while offset < len(data):
        decoded = decode_uvarint(data, offset)
        assert decoded is not None
        length, start = decoded
        out.append(data[start : start + length])
        offset = start + length
    return out


def parse(data: bytes) -> list[Message]:
    messages = []
    for payload in frames(data):
        message = Message()
        message.ParseFromString(payload)
        messages.append(message)
    return messages


class Client:
    """A client host with one connection to the server."""

    def __init__(self, test: StandardStreamTests, seed: bytes, port: int) -> None:
        self.test = test
        self.key = PrivateKey.from_seed(seed * 32)
        self.host = Host(self.key, test.clock)
        client_factory, server_factory = transports(port)
        self.connection, _, self.pump = connectedServerAndClient(
            lambda: test.server_host.factory().buildProtocol(None),
            lambda: Connection(self.host, dialer=True),
            clientTransportFactory=client_factory,  # type: ignore[arg-type]
            serverTransportFactory=server_factory,  # type: ignore[arg-type]
            clock=test.clock,
        )
        self.pump.flush()
        self.record = seal_peer_record(
            self.key, PeerRecord(self.key.peer_id(), 1, (tcp_addr(port % 250),))
        )

    def open(self, protocol_id: str = PROTOCOL_ID) -> tuple[Stream, Recorder]:
        recorder = Recorder()
        opened = self.connection.open_stream(protocol_id, recorder)
        self.pump.flush()
        stream: Stream = self.test.successResultOf(opened)
        return stream, recorder

    def request(
        self, *messages: bytes, protocol_id: str = PROTOCOL_ID, close: bool = True
    ) -> list[Message]:
        """Open a stream, send ``messages``, (half-close), and return the answers."""
        stream, recorder = self.open(protocol_id)
        stream.write(b"".join(encode_uvarint(len(m)) + m for m in messages))
        if close:
            stream.close()
        self.test.flush()
        if close:
            self.test.assertEqual(recorder.closed, [None])  # the server closed after answering
        return parse(recorder.received)

    def register(self, ns: str, ttl: int | None = None) -> bytes:
        message = Message(type=Message.REGISTER)
        message.register.ns = ns
        message.register.signedPeerRecord = self.record
        if ttl is not None:
            message.register.ttl = ttl
        return message.SerializeToString()


def discover(ns: str = "", limit: int = 0, cookie: bytes = b"") -> bytes:
    message = Message(type=Message.DISCOVER)
    message.discover.ns = ns
    if limit:
        message.discover.limit = limit
    if cookie:
        message.discover.cookie = cookie
    return message.SerializeToString()


def unregister(ns: str) -> bytes:
    return Message(
        type=Message.UNREGISTER, unregister=Message.Unregister(ns=ns)
    ).SerializeToString()


class StandardStreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.limits = Limits(ttl_min=10, ttl_default=100, ttl_max=1000)
        self.store = MemoryStore(self.limits, self.clock)
        self.server_host = Host(SERVER_KEY, self.clock)
        self.metrics = Metrics(self.store.stats)
        dialect = StandardDialect(
            self.store,
            StandardCodec(self.limits),
            self.clock,
            LogLimiter(self.clock.seconds),
            metrics=self.metrics,
        )
        for protocol_id in (PROTOCOL_ID, CANVAS_PROTOCOL_ID):
            self.server_host.set_handler(protocol_id, standard_stream_handler(dialect))
        live = live_dialect(self.store, self.limits, self.clock)
        self.server_host.set_handler(LIVE_PROTOCOL_ID, live_stream_handler(live, self.clock))
        self.clients: list[Client] = []

    def client(self, seed: bytes) -> Client:
        client = Client(self, seed, 50000 + len(self.clients))
        self.clients.append(client)
        return client

    def flush(self) -> None:
        for _ in range(3):
            for client in self.clients:
                client.pump.flush()

    def test_register_then_discover_on_one_stream(self) -> None:
        alice = self.client(b"a")
        registered, found = alice.request(alice.register("app", 50), discover("app"))
        self.assertEqual(registered.type, Message.REGISTER_RESPONSE)
        self.assertEqual(
            (registered.registerResponse.status, registered.registerResponse.ttl), (Message.OK, 50)
        )
        [entry] = found.discoverResponse.registrations
        self.assertEqual((entry.ns, entry.signedPeerRecord, entry.ttl), ("app", alice.record, 50))

    def test_one_request_per_stream_and_canvas_id(self) -> None:
        alice, bob = self.client(b"a"), self.client(b"b")
        [answer] = alice.request(alice.register("app"), protocol_id=CANVAS_PROTOCOL_ID)
        self.assertEqual(answer.registerResponse.ttl, 100)
        [answer] = bob.request(discover("app"))
        self.assertEqual(
            [r.signedPeerRecord for r in answer.discoverResponse.registrations], [alice.record]
        )

    def test_cookies_page_and_tell_only_what_is_new(self) -> None:
        clients = [self.client(bytes([ord("a") + n])) for n in range(3)]
        for n, client in enumerate(clients):
            client.request(client.register("app" if n != 1 else "other"))
        reader = clients[0]
        [page] = reader.request(discover("", limit=2))
        self.assertEqual(
            [r.signedPeerRecord for r in page.discoverResponse.registrations],
            [clients[0].record, clients[1].record],
        )
        cookie = page.discoverResponse.cookie
        [rest] = reader.request(discover("", cookie=cookie))
        self.assertEqual([r.ns for r in rest.discoverResponse.registrations], ["app"])
        [nothing] = reader.request(discover("", cookie=rest.discoverResponse.cookie))
        self.assertEqual(list(nothing.discoverResponse.registrations), [])
        clients[1].request(clients[1].register("other"))
        [new] = reader.request(discover("", cookie=nothing.discoverResponse.cookie))
        self.assertEqual(
            [r.signedPeerRecord for r in new.discoverResponse.registrations], [clients[1].record]
        )
        [refused] = reader.request(discover("app", cookie=cookie))  # issued for all namespaces
        self.assertEqual(refused.discoverResponse.status, Message.E_INVALID_COOKIE)

    def test_unregister_has_no_answer_and_removes(self) -> None:
        alice = self.client(b"a")
        answers = alice.request(alice.register("app"), unregister("app"), discover("app"))
        self.assertEqual(
            [m.type for m in answers], [Message.REGISTER_RESPONSE, Message.DISCOVER_RESPONSE]
        )
        self.assertEqual(list(answers[1].discoverResponse.registrations), [])

    def test_refusals_keep_the_stream(self) -> None:
        alice, bob = self.client(b"a"), self.client(b"b")
        stolen = Message(
            type=Message.REGISTER, register=Message.Register(ns="app", signedPeerRecord=bob.record)
        )
        answers = alice.request(
            alice.register("app", 5),
            stolen.SerializeToString(),
            alice.register(""),
            discover("app"),
        )
        self.assertEqual(
            [m.registerResponse.status for m in answers[:3]],
            [Message.E_INVALID_TTL, Message.E_NOT_AUTHORIZED, Message.E_INVALID_NAMESPACE],
        )
        self.assertEqual(answers[3].discoverResponse.status, Message.OK)
        self.assertEqual(
            self.metrics.refusals, {"invalid_ttl": 1, "not_authorized": 1, "invalid_namespace": 1}
        )

    def test_internal_error_is_answered(self) -> None:
        alice = self.client(b"a")

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("boom")

        self.patch(self.store, "discover_since", broken)
        [answer] = alice.request(discover("app"))
        self.assertEqual(answer.discoverResponse.status, Message.E_INTERNAL_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_garbage_resets_the_stream(self) -> None:
        alice = self.client(b"a")
        stream, recorder = alice.open()
        stream.write(b"\x02\xff\xff")
        self.flush()
        self.assertEqual(recorder.closed, ["reset by the peer"])

    def test_expiry_is_announced_to_live_subscribers(self) -> None:
        alice, watcher = self.client(b"a"), self.client(b"w")
        live, recorder = watcher.open(LIVE_PROTOCOL_ID)
        live.write(framed(rendezvous("app")))
        alice.request(alice.register("app", 30))
        [pushed] = unframe_all(recorder.received)
        self.assertEqual(pushed.type, live_pb2.Message.REGISTER)
        entry = pushed.register[0]
        self.assertEqual(
            (entry.peer.id, entry.peer.signed_peer_record), (alice.key.peer_id_text(), alice.record)
        )
        recorder.received = b""
        self.clock.advance(29)
        self.flush()
        self.assertEqual(recorder.received, b"")
        self.clock.advance(1)
        self.flush()
        [gone] = unframe_all(recorder.received)
        self.assertEqual(gone.type, live_pb2.Message.UNREGISTER)
        self.assertEqual(self.store.stats().registrations, 0)

    def test_live_registration_with_record_is_discovered(self) -> None:
        alice, bob = self.client(b"a"), self.client(b"b")
        live, _ = alice.open(LIVE_PROTOCOL_ID)
        message = live_pb2.Message(type=live_pb2.Message.REGISTER)
        entry = message.register.add(ns="app")
        entry.peer.id = alice.key.peer_id_text()
        entry.peer.addrs.append(tcp_addr(1))
        entry.peer.signed_peer_record = alice.record
        live.write(framed(message))
        self.flush()
        [found] = bob.request(discover("app"))
        [entry_found] = found.discoverResponse.registrations
        self.assertEqual((entry_found.signedPeerRecord, entry_found.ttl), (alice.record, 100))

    def test_prespec_client_is_answered_in_its_layout(self) -> None:
        """py-libp2p: proto3, PeerInfo in REGISTER field 2; discover on a later stream."""
        old, alice = self.client(b"p"), self.client(b"a")
        alice.request(alice.register("app"))
        register = OldMessage(type=OldMessage.REGISTER)
        register.register.ns = "app"
        register.register.peer.id = old.key.peer_id()
        register.register.peer.addrs.append(tcp_addr(9))
        register.register.ttl = 120
        [answer] = old.request(register.SerializeToString())
        self.assertEqual((answer.registerResponse.status, answer.registerResponse.ttl), (0, 120))
        old_discover = OldMessage(type=OldMessage.DISCOVER, discover=OldMessage.Discover(ns="app"))
        stream, recorder = old.open()
        payload = old_discover.SerializeToString()
        stream.write(encode_uvarint(len(payload)) + payload)
        stream.close()
        self.flush()
        [payload] = frames(recorder.received)
        found = OldMessage()
        found.ParseFromString(payload)
        self.assertEqual(
            [(r.peer.id, list(r.peer.addrs)) for r in found.discoverResponse.registrations],
            [(alice.key.peer_id(), [tcp_addr(50001 % 250)]), (old.key.peer_id(), [tcp_addr(9)])],
        )
        # a spec client is not sent the unsigned pre-spec registration
        [spec] = alice.request(discover("app"))
        self.assertEqual(
            [r.signedPeerRecord for r in spec.discoverResponse.registrations], [alice.record]
        )


class FakeOutput:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.finished = False
        self.aborted = False

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def finish(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.aborted = True


class SessionFuzzTests(SynchronousTestCase):
    """Any bytes, in any pieces: the session answers, resets, or waits; it never raises."""

    @given(st.lists(st.binary(max_size=80), max_size=6))
    def test_any_input(self, pieces: list[bytes]) -> None:
        clock = Clock()
        limits = Limits(max_frame_bytes=256)
        store = MemoryStore(limits, clock)
        dialect = StandardDialect(store, StandardCodec(limits), clock, LogLimiter(clock.seconds))
        output = FakeOutput()
        session = dialect.session(output, "fuzz", SERVER_KEY.peer_id(), FakeOutput())
        self.assertTrue(session.start())
        for piece in pieces:
            session.feed(piece)
        session.input_ended()
        self.assertTrue(output.aborted or output.finished or session._pending == {})
        for data in output.sent:
            parse(data)
        session.end()
        self.assertEqual(store.stats().sessions, 0)


class EpochTests(SynchronousTestCase):
    """DISCOVER cookies name the registry's life: the fleet's when the store is shared."""

    def test_own_epoch_for_a_store_of_this_daemon(self) -> None:
        clock = Clock()
        limits = Limits()
        store = MemoryStore(limits, clock)
        dialect = StandardDialect(
            store, StandardCodec(limits), clock, LogLimiter(clock.seconds), epoch=b"mine"
        )
        self.assertEqual(dialect.epoch, b"mine")

    def test_shared_store_epoch_once_known(self) -> None:
        clock = Clock()
        limits = Limits()
        store = MemoryStore(limits, clock)
        dialect = StandardDialect(
            store, StandardCodec(limits), clock, LogLimiter(clock.seconds), epoch=b"mine"
        )
        store.epoch = None  # type: ignore[attr-defined]  # a shared store not yet connected
        self.assertEqual(dialect.epoch, b"mine")
        store.epoch = b"fleet"  # type: ignore[attr-defined]
        self.assertEqual(dialect.epoch, b"fleet")


class AgentLayoutTests(SynchronousTestCase):
    """A client that DISCOVERs before any REGISTER: its agent version picks the layout."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(Limits(), self.clock)
        self.asked: list[tuple[object, Deferred[str]]] = []

        def ask(connection: object) -> Deferred[str]:
            d: Deferred[str] = Deferred()
            self.asked.append((connection, d))
            return d

        self.dialect = StandardDialect(
            self.store,
            StandardCodec(Limits()),
            self.clock,
            LogLimiter(self.clock.seconds),
            ask_agent=ask,
        )
        self.connection = FakeOutput()  # any object stands for the connection

    def stream(self) -> tuple[object, FakeOutput]:
        output = FakeOutput()
        session = self.dialect.session(output, "t", SERVER_KEY.peer_id(), self.connection)
        self.assertTrue(session.start())
        return session, output

    def old_discover(self) -> bytes:
        payload = OldMessage(type=OldMessage.DISCOVER, discover=OldMessage.Discover(ns="app"))
        data = payload.SerializeToString()
        return encode_uvarint(len(data)) + data

    def test_py_libp2p_is_answered_in_the_prespec_layout(self) -> None:
        session, output = self.stream()
        session.feed(self.old_discover() + self.old_discover())  # type: ignore[attr-defined]
        session.input_ended()  # type: ignore[attr-defined]
        self.assertEqual((output.sent, output.finished), ([], False))  # held while asked
        ((_, asked),) = self.asked
        asked.callback("py-libp2p/0.8.1")
        self.assertEqual(len(output.sent), 2)
        for data in output.sent:
            (payload,) = frames(data)
            answer = OldMessage()
            answer.ParseFromString(payload)
            self.assertEqual(answer.type, OldMessage.DISCOVER_RESPONSE)
        self.assertTrue(output.finished)
        # the connection's next stream is answered at once, without asking again
        later, later_output = self.stream()
        later.feed(self.old_discover())  # type: ignore[attr-defined]
        self.assertEqual(len(later_output.sent), 1)
        self.assertEqual(len(self.asked), 1)

    def test_others_and_silence_get_the_spec_layout(self) -> None:
        session, output = self.stream()
        spec_discover = discover("app")
        session.feed(encode_uvarint(len(spec_discover)) + spec_discover)  # type: ignore[attr-defined]
        ((_, asked),) = self.asked
        asked.callback("js-libp2p/3.3.11")
        (answer,) = parse(output.sent[0])
        self.assertEqual(answer.type, Message.DISCOVER_RESPONSE)
        other = StandardDialect(
            self.store,
            StandardCodec(Limits()),
            self.clock,
            LogLimiter(self.clock.seconds),
            ask_agent=lambda connection: Deferred(),
        )
        quiet_output = FakeOutput()
        quiet = other.session(quiet_output, "q", SERVER_KEY.peer_id(), FakeOutput())
        quiet.start()
        quiet.feed(encode_uvarint(len(spec_discover)) + spec_discover)
        self.clock.advance(AGENT_TIMEOUT)
        (answer,) = parse(quiet_output.sent[0])
        self.assertEqual(answer.discoverResponse.status, Message.OK)

    def test_a_register_tells_without_asking(self) -> None:
        session, output = self.stream()
        register = OldMessage(type=OldMessage.REGISTER)
        register.register.ns = "app"
        register.register.peer.id = SERVER_KEY.peer_id()
        register.register.ttl = 120
        data = register.SerializeToString()
        session.feed(encode_uvarint(len(data)) + data + self.old_discover())  # type: ignore[attr-defined]
        self.assertEqual(self.asked, [])
        self.assertEqual(len(output.sent), 2)

    def test_layout_for_agent(self) -> None:
        self.assertIs(layout_for_agent("py-libp2p/unknown"), Layout.PRESPEC)
        self.assertIs(layout_for_agent("go-libp2p/0.40"), Layout.SPEC)
        self.assertIs(layout_for_agent(None), Layout.SPEC)
