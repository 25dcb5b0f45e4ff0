"""The seed's scenario through the relay fleet, with real `twistd rendezvous` and
`twistd rendezvous-relay` processes: two hosts without listeners find the relay by
rendezvous, reserve, register their circuit addresses in ``my-app``, see each other,
exchange bytes through the relay, and the one that stays is told when the other leaves."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from rendezvous.addrs import multiaddr_to_text
from rendezvous.client.live import Event, PeerEntry
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.relay import codec
from rendezvous.relay.fleet import (
    NoCircuitAddress,
    NoRelayFound,
    ReservationRefused,
    connect_to,
    join,
)

from .processes import P2P_LISTENING, ProcessTestCase

EXCHANGE = "/rendezvous-test/exchange/1.0.0"


class Events:
    """Collects a subscription's events; `wait` fires on a matching one, past or future."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._waiting: list[tuple[str, str, Deferred[Event]]] = []

    def __call__(self, event: Event) -> None:
        self.seen.append(event)
        for waiter in list(self._waiting):
            kind, peer_id, d = waiter
            if (event.kind, event.entry.peer_id) == (kind, peer_id):
                self._waiting.remove(waiter)
                d.callback(event)

    def wait(self, kind: str, peer_id: str) -> Deferred[Event]:
        d: Deferred[Event] = Deferred()
        for event in self.seen:
            if (event.kind, event.entry.peer_id) == (kind, peer_id):
                d.callback(event)
                return d
        self._waiting.append((kind, peer_id, d))
        return d


class Exchange(StreamProtocol):
    """Writes ``send`` (and half-closes) when it is the opener; answers ``send`` after the
    peer half-closed when it is the acceptor; ``done`` fires with what was received."""

    def __init__(self, send: bytes, opener: bool) -> None:
        self.send = send
        self.opener = opener
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        if self.opener:
            stream.write(self.send)
            stream.close()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def end_received(self) -> None:
        assert self.stream is not None
        if not self.opener:
            self.stream.write(self.send)
            self.stream.close()
        self.done.callback(self.received)


class FleetTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def start_daemon(self):  # type: ignore[no-untyped-def]
        """A `twistd rendezvous` with a libp2p listener: (process, its /p2p address)."""
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
        )
        match = yield daemon.wait_for(P2P_LISTENING)
        return daemon, match.group(1)

    @inlineCallbacks
    def start_relay(self, rendezvous: str, *flags: str):  # type: ignore[no-untyped-def]
        """A relay announcing itself to ``rendezvous``, once registered there."""
        relay = self.twistd(
            "rendezvous-relay",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--announce-to",
            rendezvous,
            *flags,
        )
        match = yield relay.wait_for(P2P_LISTENING)
        yield relay.wait_for(r"registered in \S+ at ")
        return relay, match.group(1), match.group(2)

    def host(self) -> Host:
        host = Host(PrivateKey.generate(), reactor)
        self.assertEqual(host.listen_addrs, [])
        return host

    @inlineCallbacks
    def test_two_peers_meet_through_the_fleet(self):  # type: ignore[no-untyped-def]
        daemon, rendezvous = yield self.start_daemon()
        relay, relay_address, _ = yield self.start_relay(rendezvous)
        target = TCPAddress.parse(rendezvous)

        alice_host, bob_host = self.host(), self.host()
        alice_id = alice_host.identity.peer_id_text()
        bob_id = bob_host.identity.peer_id_text()
        bob_side = Exchange(b"hello alice, from bob", opener=False)
        bob_host.set_handler(EXCHANGE, lambda: bob_side)

        alice_events, bob_events = Events(), Events()
        alice = yield join(reactor, alice_host, target, "my-app", alice_events)
        self.addCleanup(alice.leave)
        self.assertEqual(alice.circuit_address, f"{relay_address}/p2p-circuit/p2p/{alice_id}")
        self.assertEqual(alice.relay.peer_id, TCPAddress.parse(relay_address).peer_id)
        self.assertEqual(alice.reservation.voucher.peer, alice_host.peer_id)
        self.assertEqual(alice_events.seen, [])

        bob = yield join(reactor, bob_host, target, "my-app", bob_events)
        self.addCleanup(bob.leave)
        bob_circuit = f"{relay_address}/p2p-circuit/p2p/{bob_id}"
        self.assertEqual(bob.circuit_address, bob_circuit)
        # Bob's RENDEZVOUS snapshot holds alice; alice is pushed bob's REGISTER.
        (seen,) = bob_events.seen
        self.assertEqual(
            (seen.kind, seen.entry.namespace, seen.entry.peer_id), ("register", "my-app", alice_id)
        )
        self.assertEqual([multiaddr_to_text(a) for a in seen.entry.addrs], [alice.circuit_address])
        pushed = yield alice_events.wait("register", bob_id)
        self.assertEqual([multiaddr_to_text(a) for a in pushed.entry.addrs], [bob_circuit])

        # Alice dials bob's circuit address and they exchange bytes both ways.
        connection = yield connect_to(reactor, alice_host, pushed.entry)
        self.assertTrue(connection.relayed)
        self.assertEqual(connection.remote_peer_id, bob_host.peer_id)
        alice_side = Exchange(b"hello bob, from alice" * 500, opener=True)
        yield connection.open_stream(EXCHANGE, alice_side)
        self.assertEqual((yield bob_side.done), b"hello bob, from alice" * 500)
        self.assertEqual((yield alice_side.done), b"hello alice, from bob")

        # Bob leaves: alice is pushed his UNREGISTER.
        yield bob.leave()
        gone = yield alice_events.wait("unregister", bob_id)
        self.assertEqual(gone.entry.namespace, "my-app")
        self.assertEqual([e.kind for e in alice_events.seen], ["register", "unregister"])
        connection.close()
        yield alice.leave()
        yield alice.closed

        yield relay.interrupt("TERM")
        yield daemon.interrupt("TERM")
        relay_log = relay.output + relay.errors
        self.assertNotIn("Traceback", relay_log)
        self.assertNotIn("Traceback", daemon.output + daemon.errors)
        self.assertIn(f"reservation made for {alice_id}", relay_log)
        self.assertIn(f"reservation made for {bob_id}", relay_log)
        self.assertIn(f"circuit {alice_id} -> {bob_id} opened", relay_log)

    @inlineCallbacks
    def test_typed_failures(self):  # type: ignore[no-untyped-def]
        """No relay in the namespace; a relay that refuses us; a peer without a circuit."""
        daemon, rendezvous = yield self.start_daemon()
        stranger = PrivateKey.generate().peer_id_text()
        _, _, relay_id = yield self.start_relay(
            rendezvous, "--namespace", "closed-relays", "--allow-peer", stranger
        )
        target = TCPAddress.parse(rendezvous)
        host = self.host()
        events = Events()

        failure = yield self.assertFailure(
            join(reactor, host, target, "my-app", events, relay_namespace="empty-fleet"),
            NoRelayFound,
        )
        self.assertEqual(failure.namespace, "empty-fleet")

        refused = yield self.assertFailure(
            join(reactor, host, target, "my-app", events, relay_namespace="closed-relays"),
            ReservationRefused,
        )
        self.assertEqual(refused.refusals, ((relay_id, codec.PERMISSION_DENIED),))
        self.assertEqual(events.seen, [])

        entry = PeerEntry("my-app", stranger, ())
        yield self.assertFailure(connect_to(reactor, host, entry), NoCircuitAddress)
        yield daemon.interrupt("TERM")
