"""The daemon on real loopback sockets, driven by the client library."""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from rendezvous.client.errors import InvalidNamespace, NotAuthorized
from rendezvous.client.live import Event, LiveClientProtocol, connect
from rendezvous.limits import Limits
from rendezvous.pb.live_pb2 import Message
from rendezvous.service import Daemon, DaemonConfig

from .helpers import framed, peer_id, rendezvous, tcp_addr, unframe_all


class Watcher:
    """Collects events and fires a Deferred once ``count`` have arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def __call__(self, event: Event) -> None:
        self.events.append((event.kind, event.entry.peer_id))
        ready = [w for w in self._waiting if w[0] <= len(self.events)]
        for waiter in ready:
            self._waiting.remove(waiter)
            waiter[1].callback(None)

    def until(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.events) >= count:
            d.callback(None)
        else:
            self._waiting.append((count, d))
        return d


class DaemonTestCase(TestCase):
    limits = Limits()

    def start(self, *listen: str) -> Daemon:
        daemon = Daemon(
            DaemonConfig(
                listen=listen or ("tcp:0:interface=127.0.0.1:backlog=1024",), limits=self.limits
            ),
            reactor,
        )
        daemon.startService()
        self.addCleanup(daemon.stopService)
        return daemon

    def target(self, daemon: Daemon) -> str:
        address = daemon.live_ports[0].getHost()
        return f"127.0.0.1:{address.port}"  # type: ignore[attr-defined]

    @inlineCallbacks
    def client(self, target: str):  # type: ignore[no-untyped-def]
        client = yield connect(reactor, target)
        self.addCleanup(self.disconnect, client)
        return client

    def disconnect(self, client: LiveClientProtocol) -> Deferred[None] | None:
        if client.connected and client.transport is not None:
            client.transport.loseConnection()
            return client.closed
        return None


class SeedInteractionTests(DaemonTestCase):
    @inlineCallbacks
    def test_seed_interaction(self):  # type: ignore[no-untyped-def]
        target = self.target(self.start())
        a = yield self.client(target)
        yield a.register("my-app", peer_id("A"), [tcp_addr(1)])
        seen_by_a = Watcher()
        yield a.rendezvous("my-app", seen_by_a)
        self.assertEqual(seen_by_a.events, [])

        b = yield self.client(target)
        yield b.register("my-app", peer_id("B"), [tcp_addr(2)])
        seen_by_b = Watcher()
        yield b.rendezvous("my-app", seen_by_b)
        self.assertEqual(seen_by_b.events, [("register", peer_id("A"))])
        yield seen_by_a.until(1)
        self.assertEqual(seen_by_a.events, [("register", peer_id("B"))])

        c = yield self.client(target)
        yield c.register("my-app", peer_id("C"), [tcp_addr(3)])
        seen_by_c = Watcher()
        yield c.rendezvous("my-app", seen_by_c)
        self.assertEqual(seen_by_c.events, [("register", peer_id("A")), ("register", peer_id("B"))])
        yield seen_by_a.until(2)
        yield seen_by_b.until(2)
        self.assertEqual(seen_by_a.events[1], ("register", peer_id("C")))
        self.assertEqual(seen_by_b.events[1], ("register", peer_id("C")))

        d = yield self.client(target)
        entries = yield d.discover("my-app")
        self.assertEqual(
            [(e.peer_id, e.addrs) for e in entries],
            [(peer_id(n), (tcp_addr(i),)) for i, n in enumerate("ABC", start=1)],
        )

        # C leaves: A and B are told.
        c.transport.loseConnection()
        yield seen_by_a.until(3)
        yield seen_by_b.until(3)
        self.assertEqual(seen_by_a.events[2], ("unregister", peer_id("C")))
        self.assertEqual(seen_by_b.events[2], ("unregister", peer_id("C")))
        entries = yield d.discover("my-app", limit=5)
        self.assertEqual(len(entries), 2)

    @inlineCallbacks
    def test_typed_errors(self):  # type: ignore[no-untyped-def]
        target = self.target(self.start())
        a = yield self.client(target)
        b = yield self.client(target)
        yield a.register("ns", peer_id("A"))
        error = yield self.assertFailure(b.register("ns", peer_id("A")), NotAuthorized)
        self.assertEqual(error.status, 200)
        error = yield self.assertFailure(b.discover(""), InvalidNamespace)
        self.assertEqual(error.status, 100)
        entries = yield b.discover("ns")  # the session goes on
        self.assertEqual(len(entries), 1)


def _self_signed(directory: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class StrportTests(DaemonTestCase):
    @inlineCallbacks
    def test_one_registry_on_tcp_unix_and_tls(self):  # type: ignore[no-untyped-def]
        directory = self.mktemp()
        os.makedirs(directory)
        key_path, cert_path = _self_signed(directory)
        socket_path = os.path.join(directory, "rdv.sock")
        daemon = self.start(
            "tcp:0:interface=127.0.0.1",
            f"unix:{socket_path}",
            f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}",
        )
        tls_port = daemon.live_ports[2].getHost().port  # type: ignore[attr-defined]
        over_tcp = yield self.client(self.target(daemon))
        over_unix = yield self.client(f"unix:path={socket_path}")
        over_tls = yield self.client(f"ssl:host=127.0.0.1:port={tls_port}")
        watcher = Watcher()
        yield over_tls.rendezvous("ns", watcher)
        yield over_tcp.register("ns", peer_id("T"))
        yield over_unix.register("ns", peer_id("U"))
        yield watcher.until(2)
        self.assertEqual(
            sorted(watcher.events), sorted([("register", peer_id("T")), ("register", peer_id("U"))])
        )

    def test_bind_error_fails_start_up(self) -> None:
        daemon = self.start()
        port = daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
        second = Daemon(DaemonConfig(listen=(f"tcp:{port}:interface=127.0.0.1",)), reactor)
        self.assertRaises(CannotListenError, second.privilegedStartService)


class _Silent(Protocol):
    """Subscribes, then stops reading until told to resume."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(framed(rendezvous("ns")))  # type: ignore[union-attr]
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)


class BackpressureTests(DaemonTestCase):
    limits = Limits(max_pending_bytes=64 * 1024)

    @inlineCallbacks
    def test_slow_subscriber_dropped_while_others_keep_receiving(self):  # type: ignore[no-untyped-def]
        daemon = self.start()
        target = self.target(daemon)
        port = daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
        silent = yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            Factory.forProtocol(_Silent)
        )
        reader = yield self.client(target)
        watcher = Watcher()
        yield reader.rendezvous("ns", watcher)
        while daemon.store.stats().subscriptions < 2:  # the silent RENDEZVOUS is in
            yield reader.discover("ns")
        publisher = yield self.client(target)
        record = b"r" * 8000
        count = 2000  # 16 MB of pushes: more than loopback buffers hold
        confirmations = [
            publisher.register("ns", peer_id("P"), [tcp_addr(n % 256)], signed_peer_record=record)
            for n in range(count)
        ]
        yield DeferredList(confirmations, fireOnOneErrback=True, consumeErrors=True)
        self.assertEqual(daemon.metrics.slow_subscribers_dropped, 1)
        self.assertEqual(daemon.store.stats().subscriptions, 1)
        yield watcher.until(count)
        self.assertEqual(len(watcher.events), count)
        # The slow client, reading again, finds ERROR 400 as the last word.
        silent.transport.resumeProducing()
        yield silent.lost
        last = unframe_all(silent.data)[-1]
        self.assertEqual((last.type, last.error.status), (Message.ERROR, 400))


class ManySessionsTests(DaemonTestCase):
    @inlineCallbacks
    def test_thousand_sessions_every_push_delivered(self):  # type: ignore[no-untyped-def]
        daemon = self.start()
        target = self.target(daemon)
        sessions = 1000
        clients = yield DeferredList(
            [self.client(target) for _ in range(sessions)],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        clients = [c for _, c in clients]
        watchers = [Watcher() for _ in clients]
        yield DeferredList(
            [c.rendezvous("crowd", w) for c, w in zip(clients, watchers, strict=True)],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        yield DeferredList(
            [c.register("crowd", peer_id(f"s{i}")) for i, c in enumerate(clients[:10])],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        # Each of the first ten is pushed the other nine; everyone else all ten.
        yield DeferredList(
            [w.until(9 if i < 10 else 10) for i, w in enumerate(watchers)],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        publisher = clients[-1]
        yield publisher.register("crowd", peer_id("publisher"))
        yield DeferredList([w.until(10 if i < 10 else 11) for i, w in enumerate(watchers[:-1])])
        for i, watcher in enumerate(watchers[:-1]):
            expected = {peer_id(f"s{j}") for j in range(10) if j != i} | {peer_id("publisher")}
            self.assertEqual({p for _, p in watcher.events}, expected)
        self.assertEqual(daemon.store.stats().sessions, sessions)
        entries = yield publisher.discover("crowd", limit=1000)
        self.assertEqual(len(entries), 11)


class NoDelayTests(DaemonTestCase):
    @inlineCallbacks
    def test_sessions_send_small_messages_at_once(self):  # type: ignore[no-untyped-def]
        daemon = self.start()
        client = yield self.client(self.target(daemon))
        yield client.register("ns", peer_id("A"))
        held = daemon.store.registry._namespaces["ns"].registrations  # type: ignore[attr-defined]
        [registration] = held.values()
        session = registration.holder
        transport = session.subscriber.output._transport
        self.assertTrue(transport.transport.getTcpNoDelay())


class NoDelayUnitTests(TestCase):
    def test_found_through_wrappers_and_harmless_elsewhere(self) -> None:
        from rendezvous.nodelay import no_delay

        calls: list[bool] = []

        class Tcp:
            def setTcpNoDelay(self, enabled: bool) -> None:
                calls.append(enabled)

        class Wrapper:
            transport = Tcp()

        class Unix:
            def setTcpNoDelay(self, enabled: bool) -> None:
                raise OSError("not TCP")

        no_delay(Wrapper())
        no_delay(Unix())
        no_delay(object())
        no_delay(None)
        self.assertEqual(calls, [True])
