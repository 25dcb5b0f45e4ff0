"""`connect_p2p`: the live client over a libp2p stream, against an in-process daemon."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from rendezvous.client.errors import NotAuthorized
from rendezvous.client.live import Event
from rendezvous.client.p2p import connect_p2p
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress
from rendezvous.service import Daemon, DaemonConfig

from .helpers import peer_id, tcp_addr


class LiveClientStreamTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        config = DaemonConfig(
            listen=(), p2p_listen=("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws")
        )
        self.daemon = Daemon(config, reactor)
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        assert self.daemon.p2p_host is not None
        server = self.daemon.p2p_host.peer_id
        tcp, ws = (port.getHost().port for port in self.daemon.p2p_ports)
        self.tcp = TCPAddress("127.0.0.1", tcp, peer_id=server)
        self.ws = TCPAddress("127.0.0.1", ws, peer_id=server, ws=True)

    @inlineCallbacks
    def test_register_push_refusal_and_disconnect(self):  # type: ignore[no-untyped-def]
        alice_key, bob_key = PrivateKey.generate(), PrivateKey.generate()
        alice = yield connect_p2p(reactor, self.tcp, alice_key)
        bob = yield connect_p2p(reactor, self.ws, bob_key)
        events: list[Event] = []
        gone: Deferred[None] = Deferred()

        def record(event: Event) -> None:
            events.append(event)
            if event.kind == "unregister":
                gone.callback(None)

        yield bob.rendezvous("ns", record)
        yield alice.register("ns", alice_key.peer_id_text(), [tcp_addr(1)])
        yield self.assertFailure(alice.register("ns", peer_id("mallory")), NotAuthorized)
        found = yield bob.discover("ns")
        self.assertEqual([e.peer_id for e in found], [alice_key.peer_id_text()])
        self.assertEqual([(e.kind, e.entry.addrs) for e in events], [("register", (tcp_addr(1),))])

        alice.disconnect()
        yield alice.closed
        self.assertFalse(alice.connected)
        yield gone  # the daemon saw alice's connection end
        self.assertEqual([e.kind for e in events], ["register", "unregister"])
        self.assertEqual((yield bob.discover("ns")), [])
        bob.disconnect()
        yield bob.closed
