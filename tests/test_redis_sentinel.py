"""Redis Sentinel (real processes): daemons find the master through three sentinels,
follow a failover while clients churn, and refuse to start without a master.

A master, a replica and three ``redis-sentinel`` processes (quorum 2) run on loopback;
the master is killed with SIGKILL while clients register and leave; once the sentinels
have promoted the replica, every subscriber's view and every daemon's DISCOVER must
equal the registrations of the clients still connected. Like the other Redis tests,
these are skipped without ``redis-server``/``redis-sentinel`` and fail instead under
``$RENDEZVOUS_REQUIRE_REDIS``.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall, deferLater

from rendezvous.client.connect import connector
from rendezvous.client.errors import RendezvousError
from rendezvous.client.live import connect
from rendezvous.client.reconnect import ReconnectingClient

from .helpers import peer_id
from .processes import Process, ProcessTestCase, spawn
from .redis_server import RedisServer, free_port, unavailable

LISTENING = r"live dialect listening on tcp 127\.0\.0\.1:(\d+)"
READY = r"redis store ready"
MASTER = "rdv"
NAMESPACE = "app"


def sentinel_path() -> str:
    path = os.environ.get("RENDEZVOUS_REDIS_SENTINEL") or shutil.which("redis-sentinel")
    if not path:
        raise unavailable(
            "redis-sentinel not found (install the redis-sentinel package or set "
            "$RENDEZVOUS_REDIS_SENTINEL): the Sentinel tests need real sentinels"
        )
    return path


class Sentinel:
    """One ``redis-sentinel`` process watching ``MASTER`` (when given its port)."""

    def __init__(self, directory: str, master_port: int | None) -> None:
        self.path = sentinel_path()
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.port = free_port()
        self.config = os.path.join(directory, "sentinel.conf")
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            "daemonize no",
            f"dir {directory}",
        ]
        if master_port is not None:
            lines += [
                f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2",
                f"sentinel down-after-milliseconds {MASTER} 800",
                f"sentinel failover-timeout {MASTER} 4000",
                f"sentinel parallel-syncs {MASTER} 1",
            ]
        with open(self.config, "w") as f:  # the sentinel rewrites it: it must be its own
            f.write("\n".join(lines) + "\n")
        self.process: Process | None = None

    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        process = self.process = spawn([self.path, self.config], self.directory)
        try:
            yield process.wait_for(r"Sentinel ID is")
        except RuntimeError as e:
            raise unavailable(f"redis-sentinel could not start: {e}") from None

    def stop(self) -> Deferred[int] | None:
        process, self.process = self.process, None
        return None if process is None else process.kill()


class FailoverTests(ProcessTestCase):
    timeout = 90

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        super().setUp()
        sentinel_path()  # skip (or fail) before starting anything
        self.master = RedisServer(os.path.join(self.cwd, "master"))
        yield self.master.start()
        self.addCleanup(self.master.stop)
        self.replica = RedisServer(
            os.path.join(self.cwd, "replica"),
            extra_args=("--replicaof", "127.0.0.1", str(self.master.port)),
        )
        yield self.replica.start()
        self.addCleanup(self.replica.stop)
        assert self.replica.process is not None
        yield self.replica.process.wait_for(r"MASTER <-> REPLICA sync: Finished with success")
        self.sentinels = [
            Sentinel(os.path.join(self.cwd, f"sentinel{i}"), self.master.port) for i in range(3)
        ]
        for sentinel in self.sentinels:
            yield sentinel.start()
            self.addCleanup(sentinel.stop)
        # Each knows the replica and the two others (a failover needs a quorum and a vote).
        replica = rf"\+slave slave 127\.0\.0\.1:{self.replica.port}"
        for sentinel in self.sentinels:
            assert sentinel.process is not None
            yield sentinel.process.wait_for(replica)
            yield sentinel.process.wait_for(r"(?s)\+sentinel sentinel.*\+sentinel sentinel")
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        self.url = f"redis-sentinel://{hosts}/{MASTER}/0"

    @inlineCallbacks
    def daemon(self, lease: str = "3"):  # type: ignore[no-untyped-def]
        """A daemon on the Sentinel-watched Redis, ready: (process, live port)."""
        process = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--store",
            self.url,
            "--lease",
            lease,
        )
        listening = yield process.wait_for(LISTENING)
        yield process.wait_for(READY)
        return process, int(listening.group(1))

    def client(self, port: int) -> ReconnectingClient:
        client = ReconnectingClient(reactor, [f"127.0.0.1:{port}"], connector(reactor))
        client.start()
        self.addCleanup(client.stop)
        return client

    @inlineCallbacks
    def discover(self, port: int):  # type: ignore[no-untyped-def]
        session = yield connect(reactor, f"127.0.0.1:{port}")
        try:
            entries = yield session.discover(NAMESPACE, 1000)
        finally:
            session.disconnect()
        return {entry.peer_id for entry in entries}

    @inlineCallbacks
    def until(self, condition: Callable[[], Deferred[bool]], within: float):  # type: ignore[no-untyped-def]
        """Polls ``condition`` until it holds; False if it does not within ``within`` s."""
        deadline = reactor.seconds() + within  # type: ignore[attr-defined]
        while True:
            if (yield condition()):
                return True
            if reactor.seconds() > deadline:  # type: ignore[attr-defined]
                return False
            yield deferLater(reactor, 0.2, lambda: None)

    @inlineCallbacks
    def test_failover_while_clients_churn(self):  # type: ignore[no-untyped-def]
        one, one_port = yield self.daemon()
        two, two_port = yield self.daemon()
        ports = [one_port, two_port]
        watchers = [self.client(port) for port in ports for _ in range(2)]
        for watcher in watchers:
            yield watcher.rendezvous(NAMESPACE, lambda event: None)

        rng = random.Random(13)
        clients: dict[str, ReconnectingClient] = {}
        held: dict[str, bool | None] = {}
        """Each registration: True once accepted, False if refused, None while unsure."""
        steps = [0]

        def step() -> None:
            steps[0] += 1
            n = steps[0]
            if clients and rng.random() < 0.35:
                name = rng.choice(sorted(clients))
                clients.pop(name).stop()
                held.pop(name, None)
                return
            name = peer_id(f"peer{n}")
            client = clients[name] = self.client(ports[n % 2])
            held[name] = None

            def settled(ok: bool, _: object = None) -> None:
                if name in held:
                    held[name] = ok

            client.register(NAMESPACE, name).addCallbacks(
                lambda _: settled(True), lambda _: settled(False)
            )

        churn = LoopingCall(step)
        churn.start(0.05)
        self.addCleanup(lambda: churn.stop() if churn.running else None)
        yield self.until(lambda: _now(steps[0] >= 30), 10)

        yield self.master.stop("KILL")
        # While Redis is away the daemons answer ERROR 400.
        yield one.wait_for(r"redis \S+ connection lost")
        error = yield self.assertFailure(self.discover(one_port), RendezvousError)
        self.assertEqual(error.status, 400)
        # The sentinels promote the replica; both daemons follow and recover.
        promoted = rf"redis master is now 127\.0\.0\.1:{self.replica.port}"
        for daemon in (one, two):
            yield daemon.wait_for(promoted)
            yield daemon.wait_for(rf"(?s){promoted}.*{READY}")
        before = steps[0]
        yield self.until(lambda: _now(steps[0] >= before + 30), 10)
        churn.stop()
        self.assertTrue((yield self.until(lambda: _now(None not in held.values()), 15)))
        self.assertIn(False, held.values())  # refused during the outage
        expected = {name for name, ok in held.items() if ok}
        self.assertGreater(len(expected), 10)

        views: list[set[str]] = []
        found: list[set[str]] = []

        @inlineCallbacks
        def converged():  # type: ignore[no-untyped-def]
            views[:] = [set(watcher.view(NAMESPACE)) for watcher in watchers]
            found.clear()
            for port in ports:
                found.append((yield self.discover(port)))
            return all(view == expected for view in views + found)

        ok = yield self.until(converged, 20)
        for seen in views + found:
            self.assertEqual(
                (sorted(expected - seen), sorted(seen - expected)), ([], []), "missing, extra"
            )
        self.assertTrue(ok)

    @inlineCallbacks
    def test_a_manual_failover_is_followed_at_once(self):  # type: ignore[no-untyped-def]
        """SENTINEL FAILOVER: the old master stays up (demoted to a replica) and the
        daemon, told by the sentinel, moves at once, not at its next write (its lease,
        renewed every 20 s, would be the next)."""
        daemon, port = yield self.daemon(lease="60")
        watcher = self.client(port)
        yield watcher.rendezvous(NAMESPACE, lambda event: None)
        alice = self.client(port)
        yield alice.register(NAMESPACE, peer_id("alice"))
        cli = shutil.which("redis-cli")
        if cli is None:
            raise unavailable("redis-cli not found (the redis-tools package)")
        failover = self.spawn(
            [cli, "-p", str(self.sentinels[0].port), "SENTINEL", "FAILOVER", MASTER]
        )
        self.assertEqual((yield failover.ended), 0)
        self.assertIn("OK", failover.output)
        master = rf"127\.0\.0\.1:{self.replica.port}"
        yield daemon.wait_for(rf"sentinels switched the master to {master}")
        yield daemon.wait_for(rf"(?s)redis master is now {master}.*{READY}")
        bob = self.client(port)
        yield bob.register(NAMESPACE, peer_id("bob"))
        expected = {peer_id("alice"), peer_id("bob")}

        @inlineCallbacks
        def converged():  # type: ignore[no-untyped-def]
            found = yield self.discover(port)
            return found == expected and set(watcher.view(NAMESPACE)) == expected

        self.assertTrue((yield self.until(converged, 10)))
        self.assertNotIn("READONLY", daemon.output)


def _now(value: bool) -> Deferred[bool]:
    d: Deferred[bool] = Deferred()
    d.callback(value)
    return d


class StartupTests(ProcessTestCase):
    timeout = 30

    @inlineCallbacks
    def test_unreachable_sentinels(self):  # type: ignore[no-untyped-def]
        a, b = free_port(), free_port()
        yield self.assert_start_refused(
            f"redis-sentinel://127.0.0.1:{a},127.0.0.1:{b}/{MASTER}/0",
            rf"no sentinel named the master '{MASTER}': 127\.0\.0\.1:{a} unreachable "
            rf"\(Connection refused\); 127\.0\.0\.1:{b} unreachable \(Connection refused\)",
        )

    @inlineCallbacks
    def test_unknown_master_name(self):  # type: ignore[no-untyped-def]
        sentinel = Sentinel(os.path.join(self.cwd, "sentinel"), None)
        yield sentinel.start()
        self.addCleanup(sentinel.stop)
        yield self.assert_start_refused(
            f"redis-sentinel://127.0.0.1:{sentinel.port}/nosuch/0",
            rf"127\.0\.0\.1:{sentinel.port} knows no master named 'nosuch'",
        )
