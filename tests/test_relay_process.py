"""`twistd rendezvous-relay` as a real process: our hosts reserve and relay through it."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.web.client import Agent, readBody

from rendezvous.addrs import multiaddr_to_text
from rendezvous.client.standard import open_point
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey, load_or_create_identity
from rendezvous.p2p.stream import StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.circuit_pb2 import Limit
from rendezvous.peerid import peer_id_to_text
from rendezvous.relay import client, codec
from rendezvous.relay.client import RelayRefused, StopHandler

from .helpers import Collect
from .processes import P2P_LISTENING, ProcessTestCase


class ProcessBase(ProcessTestCase):
    timeout = 60


class RelayProcessTests(ProcessBase):
    @inlineCallbacks
    def test_reserve_and_relay(self):  # type: ignore[no-untyped-def]
        relay = self.twistd(
            "rendezvous-relay",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--identity",
            "relay.key",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        )
        match = yield relay.wait_for(P2P_LISTENING)
        metrics = yield relay.wait_for(r"metrics listening on tcp 127\.0\.0\.1:(\d+)")
        key = load_or_create_identity(os.path.join(self.cwd, "relay.key"))
        self.assertEqual(match.group(2), key.peer_id_text())
        address = TCPAddress.parse(match.group(1))

        bob_key, alice_key = PrivateKey.generate(), PrivateKey.generate()
        bob_host = Host(bob_key, reactor)
        bob_side = Collect(reply=b"pong from bob")

        def accept(source: bytes, limit: Limit | None) -> StreamProtocol:
            self.assertEqual(source, alice_key.peer_id())
            return bob_side

        bob_host.set_handler(codec.STOP_PROTOCOL_ID, lambda: StopHandler(accept))
        bob = yield bob_host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(bob.close)
        info = yield client.reserve(bob)
        self.assertEqual([multiaddr_to_text(a) for a in info.addrs], [match.group(1)])
        self.assertEqual(info.voucher.peer, bob_key.peer_id())

        alice_host = Host(alice_key, reactor)
        alice = yield alice_host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(alice.close)
        circuit = yield client.connect(alice, bob_key.peer_id())
        alice_side = Collect()
        circuit.attach(alice_side)
        circuit.stream.write(b"ping from alice" * 1000)
        circuit.stream.close()
        received = yield bob_side.done
        self.assertEqual(received, b"ping from alice" * 1000)
        self.assertEqual((yield alice_side.done), b"pong from bob")

        url = f"http://127.0.0.1:{metrics.group(1)}/metrics".encode()
        response = yield Agent(reactor).request(b"GET", url)
        text = (yield readBody(response)).decode()
        for line in [
            "relay_reservations_opened_total 1.0",
            "relay_circuits_opened_total 1.0",
            'relay_bytes_relayed_total{direction="to target"} 15000.0',
            'relay_bytes_relayed_total{direction="to initiator"} 13.0',
        ]:
            self.assertIn(line + "\n", text)

        # A peer without a reservation cannot be reached.
        nobody = client.connect(alice, PrivateKey.generate().peer_id())
        refusal = yield self.assertFailure(nobody, RelayRefused)
        self.assertEqual(refusal.status, codec.NO_RESERVATION)

        code = yield relay.interrupt("TERM")
        self.assertIn(code, (0, -1))
        log = relay.output + relay.errors
        self.assertNotIn("Traceback", log)
        self.assertIn("reservation made for " + bob_key.peer_id_text(), log)
        self.assertIn("circuit " + alice_key.peer_id_text(), log)


def _stop_handler(side: StreamProtocol):  # type: ignore[no-untyped-def]
    """A stop handler factory whose circuits all go to ``side``."""
    return lambda: StopHandler(lambda source, limit: side)


class ChurnTests(ProcessBase):
    """Reservations end with their connections, at once."""

    @inlineCallbacks
    def test_sixteen_peers_from_one_address(self):  # type: ignore[no-untyped-def]
        """One after another from 127.0.0.1, each reserves, is reached through the relay
        and leaves: all sixteen served with the default cap of 8 reservations per IP."""
        relay = self.twistd("rendezvous-relay", "--p2p-listen", "/ip4/127.0.0.1/tcp/0")
        match = yield relay.wait_for(P2P_LISTENING)
        address = TCPAddress.parse(match.group(1))
        alice_host = Host(PrivateKey.generate(), reactor)
        alice = yield alice_host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(alice.close)
        for n in range(16):
            key = PrivateKey.generate()
            side = Collect(reply=b"pong %d" % n)
            host = Host(key, reactor)
            host.set_handler(codec.STOP_PROTOCOL_ID, _stop_handler(side))
            peer = yield host.dial(address.client_endpoint(reactor), address.peer_id)
            yield client.reserve(peer)
            circuit = yield client.connect(alice, key.peer_id())
            alice_side = Collect()
            circuit.attach(alice_side)
            circuit.stream.write(b"ping %d" % n)
            circuit.stream.close()
            self.assertEqual((yield side.done), b"ping %d" % n)
            self.assertEqual((yield alice_side.done), b"pong %d" % n)
            peer.close()
            yield relay.wait_for(f"reservation of {key.peer_id_text()} ended: disconnected")
        yield relay.interrupt("TERM")
        log = relay.output + relay.errors
        self.assertEqual(log.count("reservation made for "), 16)
        self.assertNotIn("reservation refused", log)
        self.assertNotIn("Traceback", log)


class AnnounceTests(ProcessBase):
    """``--announce-to``: the relay registers in the standard dialect; DISCOVER finds it."""

    @inlineCallbacks
    def test_relay_found_by_discover(self):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
        )
        match = yield daemon.wait_for(P2P_LISTENING)
        rendezvous = match.group(1)
        relay = self.twistd(
            "rendezvous-relay",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--announce-to",
            rendezvous,
            "--namespace",
            "fleet",
        )
        relay_match = yield relay.wait_for(P2P_LISTENING)
        yield relay.wait_for(r"registered in fleet at ")
        address = TCPAddress.parse(rendezvous)
        host = Host(PrivateKey.generate(), reactor)
        connection = yield host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(connection.close)
        point = yield open_point(connection)
        answer = yield point.discover("fleet")
        (registration,) = answer.discoverResponse.registrations
        record, _ = open_peer_record(registration.signedPeerRecord)
        self.assertEqual(peer_id_to_text(record.peer_id), relay_match.group(2))
        self.assertEqual(
            [multiaddr_to_text(a) for a in record.addrs], [relay_match.group(1).split("/p2p/")[0]]
        )
        yield relay.interrupt("TERM")
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", relay.output + relay.errors)
