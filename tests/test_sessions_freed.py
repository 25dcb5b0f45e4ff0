"""A closed session is freed at once by reference counting, never left for the cycle
collector: under churn the daemon's memory then stays flat between full collections
(bench/soak.py's saw-tooth was closed standard-dialect sessions, each holding its whole
libp2p connection in a stream <-> handler cycle; then every closed libp2p connection,
held by its fired ``ready`` Deferred)."""

from __future__ import annotations

import gc

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from rendezvous.client.connect import connect_to
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.keys import PrivateKey
from rendezvous.service import Daemon, DaemonConfig

from .helpers import peer_id, tcp_addr

# Server-side objects of a session: none may be garbage the collector has to find.
SERVER_MODULES = (
    "rendezvous.live.",
    "rendezvous.standard.",
    "rendezvous.store.",
    "rendezvous.registry",
    "twisted.internet.tcp.Server",
)


def server_side(o: object) -> str | None:
    """The class of a server-side object, else None. The clients run in this process
    too, and both ends use the libp2p classes: an accepted connection is the daemon's
    (its Noise and yamux state, its streams, hang from it)."""
    name = f"{type(o).__module__}.{type(o).__qualname__}"
    if name.startswith(SERVER_MODULES):
        return name
    if isinstance(o, Connection) and not o.dialer:
        return f"{name} (accepted)"
    return None


class ClosedSessionsTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.daemon = Daemon(
            DaemonConfig(
                listen=("tcp:0:interface=127.0.0.1",),
                p2p_listen=("/ip4/127.0.0.1/tcp/0",),
            ),
            reactor,
        )
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        raw = self.daemon.live_ports[0].getHost()
        self.raw = f"127.0.0.1:{raw.port}"  # type: ignore[attr-defined]
        host = self.daemon.p2p_host
        assert host is not None
        port = self.daemon.p2p_ports[0].getHost().port  # type: ignore[attr-defined]
        self.multiaddr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{host.identity.peer_id_text()}"
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        self.addCleanup(self.restore_gc)

    def restore_gc(self) -> None:
        gc.set_debug(0)
        del gc.garbage[:]
        gc.enable()

    def server_garbage(self) -> list[str]:
        """Server-side objects only the cycle collector would have freed."""
        gc.collect()
        names = {server_side(o) for o in gc.garbage}
        del gc.garbage[:]
        return sorted(name for name in names if name is not None)

    @inlineCallbacks
    def until_sessions(self, count: int):  # type: ignore[no-untyped-def]
        """Wait (at most 10 s) for the daemon to hold ``count`` sessions."""
        for _ in range(1000):
            if self.daemon.store.stats().sessions == count:
                return
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail(f"the daemon still holds {self.daemon.store.stats().sessions} sessions")

    @inlineCallbacks
    def churn(self, target: str, dialect: str, rounds: int = 5):  # type: ignore[no-untyped-def]
        for i in range(rounds):
            key = PrivateKey.generate()
            client = yield ensureDeferred(
                connect_to(reactor, target, dialect=dialect, identity=key)
            )
            own = peer_id(f"churn{i}") if not target.startswith("/") else key.peer_id_text()
            yield client.register("ns", own, [tcp_addr(1)])
            yield client.register("ns", own, [tcp_addr(2)])
            if dialect == "live":
                yield client.rendezvous("ns", lambda event: None)
            yield client.discover("ns")
            closed: Deferred[None] = client.closed
            client.disconnect()
            yield closed
        yield self.until_sessions(0)

    @inlineCallbacks
    def test_raw_live_sessions(self):  # type: ignore[no-untyped-def]
        yield self.churn(self.raw, "live")
        self.assertEqual(self.server_garbage(), [])

    @inlineCallbacks
    def test_libp2p_live_sessions(self):  # type: ignore[no-untyped-def]
        yield self.churn(self.multiaddr, "live")
        self.assertEqual(self.server_garbage(), [])

    @inlineCallbacks
    def test_libp2p_standard_sessions(self):  # type: ignore[no-untyped-def]
        yield self.churn(self.multiaddr, "standard")
        self.assertEqual(self.server_garbage(), [])
