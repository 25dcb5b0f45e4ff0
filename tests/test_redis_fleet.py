"""Many daemons, one registry: the Redis store against a real redis-server."""

from __future__ import annotations

import datetime
import os
import signal
from functools import partial

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from rendezvous.client.connect import connector
from rendezvous.client.errors import NotAuthorized, RendezvousError
from rendezvous.client.live import LiveClientProtocol, connect
from rendezvous.client.reconnect import ReconnectingClient, RegistrationRefused, StateEvent
from rendezvous.model import Announcement, Refused, Status
from rendezvous.service import Daemon, DaemonConfig
from rendezvous.store import redis as redis_store
from rendezvous.store.redis import RedisLink, RedisStore, parse_target

from .helpers import peer, peer_id, tcp_addr
from .processes import TWISTD, Process, spawn
from .redis_server import RedisServer
from .test_integration import Watcher

LISTENING = r"live dialect listening on tcp 127\.0\.0\.1:(\d+)"


class FleetTestCase(TestCase):
    timeout = 30
    lease = 60.0

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        self.redis = RedisServer(os.path.abspath(self.mktemp()))
        yield self.redis.start()
        self.addCleanup(self.redis.stop)

    @inlineCallbacks
    def daemon(self, lease: float | None = None):  # type: ignore[no-untyped-def]
        """A daemon on the shared Redis, started and ready."""
        daemon = Daemon(
            DaemonConfig(
                listen=("tcp:0:interface=127.0.0.1",),
                store=self.redis.url,
                lease=lease or self.lease,
            ),
            reactor,
        )
        daemon.startService()
        self.addCleanup(self.stop_daemon, daemon)
        yield self.store(daemon).when(ready=True)
        return daemon

    def stop_daemon(self, daemon: Daemon) -> Deferred[None] | None:
        if daemon.running:
            return daemon.stopService()  # type: ignore[no-any-return]
        return None

    @staticmethod
    def store(daemon: Daemon) -> RedisStore:
        store = daemon.store
        assert isinstance(store, RedisStore)
        return store

    @inlineCallbacks
    def client(self, daemon: Daemon):  # type: ignore[no-untyped-def]
        port = daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
        client = yield connect(reactor, f"127.0.0.1:{port}")
        self.addCleanup(self.disconnect, client)
        return client

    def disconnect(self, client: LiveClientProtocol) -> Deferred[None] | None:
        if client.connected and client.transport is not None:
            client.transport.loseConnection()
            return client.closed
        return None


class SeedAcrossDaemonsTests(FleetTestCase):
    @inlineCallbacks
    def test_seed_interaction_on_three_daemons(self):  # type: ignore[no-untyped-def]
        one = yield self.daemon()
        two = yield self.daemon()
        three = yield self.daemon()
        a = yield self.client(one)
        yield a.register("my-app", peer_id("A"), [tcp_addr(1)])
        seen_by_a = Watcher()
        yield a.rendezvous("my-app", seen_by_a)
        self.assertEqual(seen_by_a.events, [])

        b = yield self.client(two)
        yield b.register("my-app", peer_id("B"), [tcp_addr(2)])
        seen_by_b = Watcher()
        yield b.rendezvous("my-app", seen_by_b)
        self.assertEqual(seen_by_b.events, [("register", peer_id("A"))])
        yield seen_by_a.until(1)
        self.assertEqual(seen_by_a.events, [("register", peer_id("B"))])

        c = yield self.client(three)
        yield c.register("my-app", peer_id("C"), [tcp_addr(3)])
        seen_by_c = Watcher()
        yield c.rendezvous("my-app", seen_by_c)
        self.assertEqual(seen_by_c.events, [("register", peer_id("A")), ("register", peer_id("B"))])
        yield seen_by_a.until(2)
        yield seen_by_b.until(2)
        self.assertEqual(seen_by_a.events[1], ("register", peer_id("C")))
        self.assertEqual(seen_by_b.events[1], ("register", peer_id("C")))

        for daemon in (one, two, three):
            d = yield self.client(daemon)
            entries = yield d.discover("my-app")
            self.assertEqual(
                [(e.peer_id, e.addrs) for e in entries],
                [(peer_id(n), (tcp_addr(i),)) for i, n in enumerate("ABC", start=1)],
            )
            limited = yield d.discover("my-app", limit=2)  # the limit spans the fleet
            self.assertEqual([e.peer_id for e in limited], [peer_id("A"), peer_id("B")])

        # C re-registers (replaced and announced), then leaves: A and B are told, once.
        yield c.register("my-app", peer_id("C"), [tcp_addr(4)])
        c.transport.loseConnection()
        yield seen_by_a.until(4)
        yield seen_by_b.until(4)
        expected = [("register", peer_id("C")), ("unregister", peer_id("C"))]
        self.assertEqual(seen_by_a.events[2:], expected)
        self.assertEqual(seen_by_b.events[2:], expected)
        entries = yield d.discover("my-app", limit=5)
        self.assertEqual([e.peer_id for e in entries], [peer_id("A"), peer_id("B")])

    @inlineCallbacks
    def test_a_session_is_never_pushed_its_own_changes(self):  # type: ignore[no-untyped-def]
        """As on one daemon: its own UNREGISTER (which it no longer holds when the
        announcement comes back through Redis) and its own re-REGISTER are not echoed."""
        one = yield self.daemon()
        two = yield self.daemon()
        a = yield self.client(one)
        seen_by_a = Watcher()
        yield a.register("my-app", peer_id("A"), [tcp_addr(1)])
        yield a.rendezvous("my-app", seen_by_a)
        b = yield self.client(two)
        seen_by_b = Watcher()
        yield b.rendezvous("my-app", seen_by_b)
        yield a.register("my-app", peer_id("A"), [tcp_addr(5)])
        yield a.unregister("my-app", peer_id("A"))
        yield seen_by_b.until(3)
        # Announcements reach a daemon in order: B's comes after A's own changes.
        yield b.register("my-app", peer_id("B"), [tcp_addr(2)])
        yield seen_by_a.until(1)
        self.assertEqual(seen_by_a.events, [("register", peer_id("B"))])
        self.assertEqual(
            seen_by_b.events,
            [
                ("register", peer_id("A")),
                ("register", peer_id("A")),
                ("unregister", peer_id("A")),
            ],
        )

    @inlineCallbacks
    def test_ownership_spans_the_fleet(self):  # type: ignore[no-untyped-def]
        one = yield self.daemon()
        two = yield self.daemon()
        a = yield self.client(one)
        b = yield self.client(two)
        yield a.register("ns", peer_id("A"))
        error = yield self.assertFailure(b.register("ns", peer_id("A")), NotAuthorized)
        self.assertEqual(error.status, 200)
        # The id is the session's in every namespace, and b cannot remove it either.
        yield self.assertFailure(b.register("other", peer_id("A")), NotAuthorized)
        yield self.assertFailure(b.unregister("ns", peer_id("A")), NotAuthorized)
        yield a.unregister("ns", peer_id("A"))
        yield b.register("ns", peer_id("A"))  # free again
        entries = yield a.discover("ns")
        self.assertEqual([e.peer_id for e in entries], [peer_id("A")])

    @inlineCallbacks
    def test_snapshot_then_pushes_without_gap_or_duplicate(self):  # type: ignore[no-untyped-def]
        """A subscriber joins while another daemon registers peers as fast as it can."""
        one = yield self.daemon()
        two = yield self.daemon()
        writer = yield self.client(one)
        names = [f"peer-{i}" for i in range(60)]
        registered = [writer.register("busy", peer_id(name)) for name in names[:30]]
        reader = yield self.client(two)
        seen = Watcher()
        subscribed = reader.rendezvous("busy", seen)
        registered += [writer.register("busy", peer_id(name)) for name in names[30:]]
        yield subscribed
        yield gatherResults(registered)
        yield seen.until(len(names))
        marker = yield self.client(one)
        yield marker.register("busy", peer_id("marker"))
        yield seen.until(len(names) + 1)
        self.assertEqual(seen.events, [("register", peer_id(name)) for name in [*names, "marker"]])


class ClassicPubSubTests(FleetTestCase):
    @inlineCallbacks
    def test_classic_pub_sub(self):  # type: ignore[no-untyped-def]
        """What a Redis without sharded pub/sub (before 7.0) gets: the same behaviour."""
        self.patch(redis_store, "RedisLink", partial(redis_store.RedisLink, sharded=False))
        one = yield self.daemon()
        two = yield self.daemon()
        self.assertFalse(self.store(one).link.sharded)
        a = yield self.client(one)
        yield a.register("ns", peer_id("A"))
        seen_by_a = Watcher()
        yield a.rendezvous("ns", seen_by_a)
        b = yield self.client(two)
        seen_by_b = Watcher()
        yield b.rendezvous("ns", seen_by_b)
        self.assertEqual(seen_by_b.events, [("register", peer_id("A"))])
        yield b.register("ns", peer_id("B"))
        yield seen_by_a.until(1)
        self.assertEqual(seen_by_a.events, [("register", peer_id("B"))])
        # Counted with PUBSUB NUMSUB here: a connected daemon's ids are not taken over.
        yield self.assertFailure(b.register("ns", peer_id("A")), NotAuthorized)


class LifecycleTests(FleetTestCase):
    @inlineCallbacks
    def test_clean_stop_announces_at_once(self):  # type: ignore[no-untyped-def]
        """With a 60 s lease, only the stopping daemon itself can announce this in time."""
        one = yield self.daemon()
        two = yield self.daemon()
        a = yield self.client(one)
        yield a.register("ns", peer_id("A"), [tcp_addr(1)])
        yield a.register("ns2", peer_id("A"), [tcp_addr(1)])
        watcher = yield self.client(two)
        seen = Watcher()
        yield watcher.rendezvous("ns", seen)
        self.assertEqual(seen.events, [("register", peer_id("A"))])
        yield one.stopService()
        yield seen.until(2)
        self.assertEqual(seen.events[1], ("unregister", peer_id("A")))
        entries = yield watcher.discover("ns2")
        self.assertEqual(entries, [])

    @inlineCallbacks
    def spawn_daemon(self, lease: float):  # type: ignore[no-untyped-def]
        """`twistd rendezvous --store …` as a process; fires with it and a client of it."""
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        process: Process = spawn(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "rendezvous",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--store",
                self.redis.url,
                "--lease",
                str(lease),
            ],
            cwd,
        )
        self.addCleanup(process.kill)
        match = yield process.wait_for(LISTENING)
        yield process.wait_for("redis store ready")
        client = yield connect(reactor, f"127.0.0.1:{match.group(1)}")
        self.addCleanup(self.disconnect, client)
        return process, client

    @inlineCallbacks
    def test_sigterm_announces_at_once(self):  # type: ignore[no-untyped-def]
        """systemd's stop: the process tells its clients it is going away (so they move
        to another daemon) and removes their registrations before it exits; with a 60 s
        lease, only it can announce them in time."""
        watcher = yield self.client((yield self.daemon()))
        process, client = yield self.spawn_daemon(lease=60.0)
        yield client.register("ns", peer_id("T"))
        seen = Watcher()
        yield watcher.rendezvous("ns", seen)
        yield process.interrupt("TERM")
        self.assertIn("Server Shut Down.", process.output)
        self.assertIn("told 1 live sessions the server is going away", process.output)
        yield client.closed
        self.assertIn("shutting down", client.going_away or "")
        yield seen.until(2)
        self.assertEqual(seen.events[1], ("unregister", peer_id("T")))

    @inlineCallbacks
    def test_clients_of_a_killed_daemon_register_again_elsewhere(self):  # type: ignore[no-untyped-def]
        """kill -9: a reconnecting client moves to another daemon, whose REGISTER takes
        the id over at once: the dead daemon's pub/sub connection is gone, so its
        registrations end then and there, long before its lease (60 s) would run out."""
        survivor = yield self.daemon()
        process, doomed = yield self.spawn_daemon(self.lease)
        doomed_port = doomed.transport.getPeer().port
        survivor_port = survivor.live_ports[0].getHost().port  # type: ignore[attr-defined]
        yield doomed.register("ns", peer_id("N"))  # another of the dead daemon's
        states: list[StateEvent] = []
        client = ReconnectingClient(
            reactor,
            [f"127.0.0.1:{doomed_port}", f"127.0.0.1:{survivor_port}"],
            connector(reactor),
            on_state=states.append,
        )
        client.start()
        self.addCleanup(client.stop)
        yield client.register("ns", peer_id("M"), [tcp_addr(7)])
        watcher = yield self.client(survivor)
        seen = Watcher()
        yield watcher.rendezvous("ns", seen)
        self.assertEqual(
            sorted(seen.events), [("register", peer_id("M")), ("register", peer_id("N"))]
        )
        yield process.kill()
        yield seen.until(5)  # both gone with the dead daemon, then M back from the survivor
        self.assertEqual(
            sorted(seen.events[2:4]),
            [("unregister", peer_id("M")), ("unregister", peer_id("N"))],
        )
        self.assertEqual(seen.events[4], ("register", peer_id("M")))
        self.assertEqual([e for e in states if isinstance(e, RegistrationRefused)], [])
        self.assertEqual(client.server, f"127.0.0.1:{survivor_port}")
        found = yield watcher.discover("ns")
        self.assertEqual([entry.peer_id for entry in found], [peer_id("M")])

    @inlineCallbacks
    def test_a_live_daemons_ids_are_not_taken_over(self):  # type: ignore[no-untyped-def]
        """The takeover needs the holder's daemon gone from Redis: while it is connected,
        a REGISTER of its session's id elsewhere is refused, and nothing changes."""
        one = yield self.daemon()
        two = yield self.daemon()
        holder = yield self.client(one)
        yield holder.register("ns", peer_id("H"))
        squatter = yield self.client(two)
        error = yield self.assertFailure(
            squatter.register("ns", peer_id("H"), [tcp_addr(3)]), NotAuthorized
        )
        self.assertIn("another session", str(error))
        found = yield squatter.discover("ns")
        self.assertEqual([entry.peer_id for entry in found], [peer_id("H")])

    @inlineCallbacks
    def test_killed_daemon_is_reaped_once(self):  # type: ignore[no-untyped-def]
        """kill -9 of a daemon process: the others announce its registrations gone, once."""
        lease = 1.0
        two = yield self.daemon(lease)
        three = yield self.daemon(lease)
        process, doomed = yield self.spawn_daemon(lease)
        yield doomed.register("ns", peer_id("X"), [tcp_addr(9)])
        yield doomed.register("ns", peer_id("Y"))
        watchers = []
        for daemon in (two, three):
            client = yield self.client(daemon)
            seen = Watcher()
            yield client.rendezvous("ns", seen)
            watchers.append((client, seen))
        yield process.kill()
        for _, seen in watchers:
            yield seen.until(4)  # (how soon is bench/ territory: the lease is 1 s here)
        # A registration made after the reaping arrives after it: nothing came twice.
        client, _ = watchers[0]
        yield client.register("ns", peer_id("Z"))
        _, other = watchers[1]
        yield other.until(5)
        for _, seen in watchers:
            self.assertEqual(
                sorted(seen.events[:2]),
                sorted([("register", peer_id("X")), ("register", peer_id("Y"))]),
            )
            self.assertEqual(
                sorted(seen.events[2:4]),
                sorted([("unregister", peer_id("X")), ("unregister", peer_id("Y"))]),
            )
        self.assertEqual(other.events[4:], [("register", peer_id("Z"))])


class OutageTests(FleetTestCase):
    @inlineCallbacks
    def test_redis_restart(self):  # type: ignore[no-untyped-def]
        """Redis dies and comes back empty: refusals meanwhile, then the fleet recovers."""
        one = yield self.daemon(2.0)
        two = yield self.daemon(2.0)
        a = yield self.client(one)
        yield a.register("ns", peer_id("A"), [tcp_addr(1)])
        seen_by_a = Watcher()
        yield a.rendezvous("ns", seen_by_a)
        b = yield self.client(two)
        yield b.register("ns", peer_id("B"), [tcp_addr(2)])
        seen_by_b = Watcher()
        yield b.rendezvous("ns", seen_by_b)
        gone = yield self.client(two)
        yield gone.register("ns", peer_id("G"), [tcp_addr(3)])
        yield seen_by_a.until(2)
        yield seen_by_b.until(2)
        self.assertEqual(seen_by_a.events, [("register", peer_id("B")), ("register", peer_id("G"))])
        self.assertEqual(seen_by_b.events, [("register", peer_id("A")), ("register", peer_id("G"))])

        yield self.redis.stop()
        yield self.store(one).when(ready=False)
        yield self.store(two).when(ready=False)
        error = yield self.assertFailure(a.discover("ns"), RendezvousError)
        self.assertEqual(error.status, 400)
        error = yield self.assertFailure(b.register("ns", peer_id("B2")), RendezvousError)
        self.assertEqual(error.status, 400)
        # G leaves while Redis is away; the sessions of A and B stay open.
        yield self.disconnect(gone)
        self.assertTrue(a.connected and b.connected)

        yield self.redis.start()  # empty: it kept nothing
        yield self.store(one).when(ready=True)
        yield self.store(two).when(ready=True)
        # G's removal, missed by everyone, reaches both once, within a lease; A and B
        # were re-asserted by their daemons and nobody was told they left.
        yield seen_by_a.until(3)
        yield seen_by_b.until(3)
        self.assertEqual(seen_by_a.events[2:], [("unregister", peer_id("G"))])
        self.assertEqual(seen_by_b.events[2:], [("unregister", peer_id("G"))])
        entries = yield b.discover("ns")  # in the order of their re-assertion
        self.assertEqual(sorted(e.peer_id for e in entries), sorted([peer_id("A"), peer_id("B")]))
        # Pushes resume, both ways.
        c = yield self.client(one)
        yield c.register("ns", peer_id("C"))
        yield seen_by_a.until(4)
        yield seen_by_b.until(4)
        self.assertEqual(seen_by_a.events[3:], [("register", peer_id("C"))])
        self.assertEqual(seen_by_b.events[3:], [("register", peer_id("C"))])

    @inlineCallbacks
    def test_daemon_starts_while_redis_is_down(self):  # type: ignore[no-untyped-def]
        yield self.redis.stop()
        daemon = Daemon(
            DaemonConfig(listen=("tcp:0:interface=127.0.0.1",), store=self.redis.url),
            reactor,
        )
        daemon.startService()
        self.addCleanup(self.stop_daemon, daemon)
        client = yield self.client(daemon)
        error = yield self.assertFailure(client.discover("ns"), RendezvousError)
        self.assertEqual(error.status, 400)
        yield self.redis.start()
        yield self.store(daemon).when(ready=True)
        yield client.register("ns", peer_id("A"))
        entries = yield client.discover("ns")
        self.assertEqual([e.peer_id for e in entries], [peer_id("A")])


def _certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for ``localhost``, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(directory, exist_ok=True)
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


class TLSAndPasswordTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_rediss_with_password_from_a_file(self):  # type: ignore[no-untyped-def]
        directory = os.path.abspath(self.mktemp())
        cert, key = _certificate(os.path.join(directory, "tls"))
        redis = RedisServer(os.path.join(directory, "redis"), password="s3cret", tls=(cert, key))
        yield redis.start()
        self.addCleanup(redis.stop)
        password_file = os.path.join(directory, "password")
        with open(password_file, "w") as f:
            f.write("s3cret\n")
        daemons = []
        for _ in range(2):
            daemon = Daemon(
                DaemonConfig(
                    listen=("tcp:0:interface=127.0.0.1",),
                    store=redis.url,
                    store_password_file=password_file,
                    store_ca_file=cert,
                ),
                reactor,
            )
            daemon.startService()
            self.addCleanup(daemon.stopService)
            store = daemon.store
            assert isinstance(store, RedisStore)
            yield store.when(ready=True)
            daemons.append(daemon)
        clients = []
        for daemon in daemons:
            port = daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
            client = yield connect(reactor, f"127.0.0.1:{port}")
            self.addCleanup(client.transport.loseConnection)
            clients.append(client)
        seen = Watcher()
        yield clients[0].rendezvous("ns", seen)
        yield clients[1].register("ns", peer_id("A"))
        yield seen.until(1)
        self.assertEqual(seen.events, [("register", peer_id("A"))])


class Answers:
    """A store client whose answers fire Deferreds, in order."""

    def __init__(self) -> None:
        self.answers: list[Deferred[object]] = []

    def expect(self) -> Deferred[object]:
        d: Deferred[object] = Deferred()
        self.answers.append(d)
        return d

    def announce(self, announcement: object) -> None:
        pass

    def snapshot(self, namespace: str, registrations: list[object]) -> None:
        self.answers.pop(0).callback(("snapshot", registrations))

    def discovered(self, request_id: object, namespace: str, registrations: list[object]) -> None:
        self.answers.pop(0).callback(("discovered", registrations))

    def refused(self, request_id: object, refusal: Refused) -> None:
        self.answers.pop(0).callback(("refused", refusal.status))


class HungRedisTests(FleetTestCase):
    @staticmethod
    def resume(process: Process) -> None:
        if not process.ended.called and process.transport is not None:
            process.transport.signalProcess(signal.SIGCONT)

    @inlineCallbacks
    def test_redis_that_stops_answering(self):  # type: ignore[no-untyped-def]
        """No reset, no answer (a frozen server, a silent partition): refused after the
        reply timeout, then recovered when it answers again."""
        target = parse_target(self.redis.url, environ={})
        store = RedisStore(RedisLink(reactor, target, "rendezvous:", timeout=0.5), reactor)
        store.start()
        self.addCleanup(store.stop)
        yield store.when(ready=True)
        client = Answers()
        session = store.open_session(client)
        process = self.redis.process
        assert process is not None and process.transport is not None
        process.transport.signalProcess(signal.SIGSTOP)
        self.addCleanup(self.resume, process)
        answer = client.expect()
        store.discover(session, "ns", 10, 1)
        self.assertEqual((yield answer), ("refused", Status.UNAVAILABLE))
        self.assertTrue(session.open)
        yield store.when(ready=False)  # the link gave up on the silent connection
        self.resume(process)
        yield store.when(ready=True)
        answer = client.expect()
        store.discover(session, "ns", 10, 2)
        self.assertEqual((yield answer), ("discovered", []))


class WrongPasswordTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_refused_login_is_retried(self):  # type: ignore[no-untyped-def]
        """AUTH refused (the password is being rotated): the daemon keeps trying."""
        import txredisapi

        redis = RedisServer(os.path.abspath(self.mktemp()), password="old")
        yield redis.start()
        self.addCleanup(redis.stop)
        self.patch(os, "environ", {**os.environ, "RENDEZVOUS_REDIS_PASSWORD": "new"})
        daemon = Daemon(
            DaemonConfig(listen=("tcp:0:interface=127.0.0.1",), store=redis.url), reactor
        )
        daemon.startService()
        self.addCleanup(daemon.stopService)
        store = daemon.store
        assert isinstance(store, RedisStore)
        admin = yield txredisapi.Connection("127.0.0.1", redis.port, password="old")
        self.addCleanup(admin.disconnect)
        self.assertFalse(store.ready)
        yield admin.execute_command("CONFIG", "SET", "requirepass", "new")
        yield store.when(ready=True)


class Watching(Answers):
    """`Answers`, and the announcements pushed, with a Deferred for the n-th."""

    def __init__(self) -> None:
        super().__init__()
        self.pushed: list[tuple[str, str]] = []
        self.waiting: list[tuple[int, Deferred[None]]] = []

    def announce(self, announcement: object) -> None:
        assert isinstance(announcement, Announcement)
        self.pushed.append((announcement.change.value, announcement.registration.peer.id))
        for n, d in list(self.waiting):
            if len(self.pushed) >= n:
                self.waiting.remove((n, d))
                d.callback(None)

    def until(self, n: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.pushed) >= n:
            d.callback(None)
        else:
            self.waiting.append((n, d))
        return d


class BatchTests(FleetTestCase):
    @inlineCallbacks
    def test_the_registers_of_one_turn_on_a_real_redis(self):  # type: ignore[no-untyped-def]
        """One script run answers each REGISTER of a turn alone (one refused, the rest
        kept), numbers them in order, and another daemon's watcher is told each once."""
        stores = []
        for _ in range(2):
            target = parse_target(self.redis.url, environ={})
            store = RedisStore(RedisLink(reactor, target, "rendezvous:"), reactor)
            store.start()
            self.addCleanup(store.stop)
            yield store.when(ready=True)
            stores.append(store)
        one, two = stores
        watcher = Watching()
        snapshot = watcher.expect()
        two.subscribe(two.open_session(watcher), "ns", None)
        self.assertEqual((yield snapshot), ("snapshot", []))

        first, second = Answers(), Answers()
        s1, s2 = one.open_session(first), one.open_session(second)
        a, b, c = peer("A", tcp_addr(1)), peer("B", tcp_addr(2)), peer("C", tcp_addr(3))
        one.register(s1, "ns", a, 1)
        one.register(s1, "ns", b, 2)
        one.register(s2, "ns", peer("A", tcp_addr(9)), 3)  # s1's id
        one.register(s2, "ns", c, 4)
        refused, found_1, found_2 = second.expect(), first.expect(), second.expect()
        one.discover(s1, "ns", 10, 5)
        one.discover(s2, "ns", 10, 6)
        self.assertEqual((yield refused), ("refused", Status.NOT_AUTHORIZED))
        for answer in (found_1, found_2):
            _, found = yield answer
            self.assertEqual([r.peer.id for r in found], [a.id, b.id, c.id])
        seqs = [s1.entries[("ns", a.key)].seq, s1.entries[("ns", b.key)].seq]
        seqs.append(s2.entries[("ns", c.key)].seq)
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertEqual(list(s2.entries), [("ns", c.key)])
        self.assertEqual((yield one.link.call("GET", "rendezvous:seq")), str(seqs[-1]).encode())
        self.assertEqual((yield one.link.call("GET", "rendezvous:count")), b"3")
        yield watcher.until(3)
        self.assertEqual(
            watcher.pushed, [("register", a.id), ("register", b.id), ("register", c.id)]
        )
