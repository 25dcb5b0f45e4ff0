"""`rendezvous.client.connect`: one way to name a server, for every dialect, and a
reconnecting client built on it against a real daemon."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from rendezvous.client.connect import connect_to, connector
from rendezvous.client.live import Event, LiveClient
from rendezvous.client.reconnect import Connected, ReconnectingClient, StateEvent
from rendezvous.client.standard import StandardClient
from rendezvous.p2p.keys import PrivateKey
from rendezvous.service import Daemon, DaemonConfig


class ConnectTests(TestCase):
    timeout = 30

    def setUp(self) -> Deferred[None] | None:
        self.daemon = Daemon(
            DaemonConfig(
                listen=("tcp:0:interface=127.0.0.1",), p2p_listen=("/ip4/127.0.0.1/tcp/0",)
            ),
            reactor,
        )
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        raw_port = self.daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
        p2p_port = self.daemon.p2p_ports[0].getHost().port  # type: ignore[attr-defined]
        assert self.daemon.p2p_host is not None
        self.raw = f"127.0.0.1:{raw_port}"
        self.p2p = (
            f"/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{self.daemon.p2p_host.identity.peer_id_text()}"
        )
        return None

    @inlineCallbacks
    def test_every_kind_of_server(self):  # type: ignore[no-untyped-def]
        key = PrivateKey.generate()
        for server, dialect, kind in [
            (self.raw, "live", LiveClient),
            (self.p2p, "live", LiveClient),
            (self.p2p, "standard", StandardClient),
        ]:
            session = yield ensureDeferred(
                connect_to(reactor, server, dialect=dialect, identity=key)
            )
            self.assertIsInstance(session, kind)
            self.assertEqual((yield session.discover("app")), [])
            session.disconnect()
        for bad, dialect in [(self.raw, "standard"), (self.raw, "smoke signals")]:
            with self.assertRaises(ValueError):
                yield ensureDeferred(connect_to(reactor, bad, dialect=dialect))

    @inlineCallbacks
    def test_a_reconnecting_client_over_libp2p(self):  # type: ignore[no-untyped-def]
        key = PrivateKey.generate()
        states: list[StateEvent] = []
        client = ReconnectingClient(
            reactor, [self.p2p], connector(reactor, identity=key), on_state=states.append
        )
        client.start()
        self.addCleanup(client.stop)
        yield client.register("app", key.peer_id_text())
        self.assertEqual(states, [Connected(self.p2p)])
        watcher = yield ensureDeferred(connect_to(reactor, self.raw))
        self.addCleanup(watcher.disconnect)
        seen: list[Event] = []
        yield watcher.rendezvous("app", seen.append)
        self.assertEqual([e.entry.peer_id for e in seen], [key.peer_id_text()])
