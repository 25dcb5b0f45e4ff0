"""``--workers``: the daemon with real worker processes, on loopback sockets."""

from __future__ import annotations

import os
import re
import signal
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from rendezvous.limits import Limits
from rendezvous.service import Daemon, DaemonConfig
from rendezvous.workers.pool import WorkerPool

from .helpers import peer_id, tcp_addr
from .processes import CLI, ProcessTestCase
from .test_integration import DaemonTestCase, Watcher, _self_signed


class LogWatch:
    """Fires Deferreds when the daemon logs a line matching a pattern."""

    def __init__(self, test: TestCase) -> None:
        self._waiting: list[tuple[re.Pattern[str], Deferred[re.Match[str]]]] = []
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict[str, Any]) -> None:
        text = formatEvent(event)
        for pattern, d in list(self._waiting):
            match = pattern.search(text)
            if match:
                self._waiting.remove((pattern, d))
                d.callback(match)

    def next(self, pattern: str) -> Deferred[re.Match[str]]:
        d: Deferred[re.Match[str]] = Deferred()
        self._waiting.append((re.compile(pattern), d))
        return d


def until(condition: Any, every: float = 0.05) -> Deferred[None]:
    """Fires once ``condition()`` is true, checking it every ``every`` seconds."""
    d: Deferred[None] = Deferred()

    def check() -> None:
        if condition():
            loop.stop()
            d.callback(None)

    loop = LoopingCall(check)
    loop.start(every)
    return d


class WorkerDaemonTests(DaemonTestCase):
    timeout = 60

    def start_workers(self, count: int = 2, *listen: str) -> Daemon:
        config = DaemonConfig(
            listen=listen or ("tcp:0:interface=127.0.0.1",),
            limits=Limits(max_sessions=100),
            workers=count,
        )
        daemon = Daemon(config, reactor)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        return daemon

    def pool(self, daemon: Daemon) -> WorkerPool:
        (pool,) = [s for s in daemon if isinstance(s, WorkerPool)]
        return pool

    @inlineCallbacks
    def test_one_registry_across_workers_and_a_worker_that_dies(self):  # type: ignore[no-untyped-def]
        logs = LogWatch(self)
        daemon = self.start_workers()
        pool = self.pool(daemon)
        target = self.target(daemon)
        # Connections go to the least loaded worker: the watcher to 1, alice to 2.
        watcher = yield self.client(target)
        seen = Watcher()
        yield watcher.rendezvous("ns", seen)
        alice = yield self.client(target)
        yield alice.register("ns", peer_id("alice"), [tcp_addr(1)])
        yield seen.until(1)
        self.assertEqual(seen.events, [("register", peer_id("alice"))])
        first, second = pool.workers
        self.assertEqual((first.handed, second.handed), (1, 1))

        # The worker holding alice is killed: the watcher, on the other, is told.
        restarted = logs.next(r"worker 2 started \(pid (\d+)\)")
        os.kill(second.process.pid, signal.SIGKILL)
        yield seen.until(2)
        self.assertEqual(seen.events[1], ("unregister", peer_id("alice")))
        self.assertEqual(daemon.store.stats().registrations, 0)

        # It is started again and serves new connections.
        match = yield restarted
        self.assertNotEqual(int(match.group(1)), first.process.pid)
        bob = yield self.client(target)
        yield bob.register("ns", peer_id("bob"))
        yield seen.until(3)
        entries = yield watcher.discover("ns")
        self.assertEqual([e.peer_id for e in entries], [peer_id("bob")])
        self.assertEqual(second.handed, 1)

        sample = daemon.metrics.registry.get_sample_value
        self.assertEqual(sample("rendezvous_worker_restarts_total"), 1)
        self.assertEqual(sample("rendezvous_workers"), 2)

        # Worker counters reach the daemon's metrics (alice's may have died unreported).
        yield until(lambda: second.link.counts["received"]["register"] == 1)
        value = daemon.metrics.registry.get_sample_value(
            "rendezvous_messages_received_total", {"type": "register"}
        )
        self.assertIn(value, (1, 2))

    @inlineCallbacks
    def test_unix_goes_to_workers_tls_stays_here(self):  # type: ignore[no-untyped-def]
        directory = self.mktemp()
        os.makedirs(directory)
        key_path, cert_path = _self_signed(directory)
        socket_path = os.path.join(directory, "rdv.sock")
        daemon = self.start_workers(
            1,
            f"unix:{socket_path}",
            f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}",
        )
        (worker,) = self.pool(daemon).workers
        tls_port = daemon.live_ports[1].getHost().port  # type: ignore[attr-defined]
        over_unix = yield self.client(f"unix:path={socket_path}")
        over_tls = yield self.client(f"ssl:host=127.0.0.1:port={tls_port}")
        watcher = Watcher()
        yield over_tls.rendezvous("ns", watcher)
        yield over_unix.register("ns", peer_id("U"))
        yield watcher.until(1)
        self.assertEqual(watcher.events, [("register", peer_id("U"))])
        self.assertEqual(worker.handed, 1)
        self.assertEqual(len(worker.link.sessions), 1)  # the TLS session is the main process's
        self.assertEqual(daemon.store.stats().sessions, 2)

    @inlineCallbacks
    def test_stopping_stops_every_worker(self):  # type: ignore[no-untyped-def]
        daemon = self.start_workers(3)
        pool = self.pool(daemon)
        pids = [worker.process.pid for worker in pool.workers]
        client = yield self.client(self.target(daemon))
        yield client.register("ns", peer_id("alice"))
        yield daemon.stopService()
        self.assertTrue(all(worker.process is None for worker in pool.workers))
        for pid in pids:
            with self.assertRaises(ProcessLookupError):
                os.kill(pid, 0)
        self.assertEqual(daemon.store.stats().sessions, 0)


class WorkerProcessTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def test_twistd_with_workers(self):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous", "--listen", "tcp:0:interface=127.0.0.1", "--workers", "2"
        )
        match = yield daemon.wait_for(r"live dialect listening on tcp 127\.0\.0\.1:(\d+)")
        target = f"127.0.0.1:{match.group(1)}"
        yield daemon.wait_for("worker 2 started")
        registered = self.spawn([*CLI, "register", target, "ns", "--id", peer_id("alice")])
        yield registered.wait_for("registered")
        discover = self.spawn([*CLI, "discover", target, "ns"])
        self.assertEqual((yield discover.ended), 0)
        self.assertEqual(discover.output, f"{peer_id('alice')}\n")
        yield daemon.interrupt("TERM")
        self.assertIn("worker 1 stopped", daemon.output)
        self.assertIn("worker 2 stopped", daemon.output)
        self.assertIn("Server Shut Down.", daemon.output)
