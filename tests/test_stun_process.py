"""``twistd rendezvous-relay --stun`` as a real process: it answers a Binding request
sent over loopback UDP, counts it on /metrics, and registers its STUN addresses in
``rendezvous/stun`` at a real ``twistd rendezvous``, where the live client finds them."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.web.client import Agent, readBody

from rendezvous.addrs import multiaddr_to_text
from rendezvous.client.live import connect
from rendezvous.p2p.advertise import expand, read_interface_ips
from rendezvous.stun.codec import binding_request, parse_binding_success
from rendezvous.stun.fleet import udp_multiaddr

from .processes import P2P_LISTENING, ProcessTestCase

LIVE_LISTENING = r"live dialect listening on tcp 127\.0\.0\.1:(\d+)"
METRICS_LISTENING = r"metrics listening on tcp 127\.0\.0\.1:(\d+)"


class Answers(DatagramProtocol):
    """Fires ``first`` with the first datagram received."""

    noisy = False

    def __init__(self) -> None:
        self.first: Deferred[bytes] = Deferred()

    def datagramReceived(self, datagram: bytes, addr: object) -> None:
        if not self.first.called:
            self.first.callback(datagram)


class StunProcessTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def test_answers_and_registers_in_the_fleet(self):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "tcp:0:interface=127.0.0.1",
        )
        rendezvous = yield daemon.wait_for(P2P_LISTENING)
        live = yield daemon.wait_for(LIVE_LISTENING)
        relay = self.twistd(
            "rendezvous-relay",
            "--log-addresses",  # a line checked below names the client
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--stun",
            "udp:0:interface=127.0.0.1",
            "--stun",
            "udp:0",
            "--announce-to",
            rendezvous.group(1),
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        )
        relay_match = yield relay.wait_for(P2P_LISTENING)
        relay_id = relay_match.group(2)
        loopback = yield relay.wait_for(r"stun listening on udp 127\.0\.0\.1:(\d+)")
        anywhere = yield relay.wait_for(r"stun listening on udp 0\.0\.0\.0:(\d+)")
        metrics = yield relay.wait_for(METRICS_LISTENING)
        port = int(loopback.group(1))

        # A Binding request from a real socket: the answer maps that socket's address.
        answers = Answers()
        client = reactor.listenUDP(0, answers, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(client.stopListening)
        transaction_id = os.urandom(12)
        client.write(b"\x00" * 20, ("127.0.0.1", port))  # wrong magic cookie: dropped
        client.write(binding_request(transaction_id, fingerprint=True), ("127.0.0.1", port))
        answer = yield answers.first
        tid, ip, mapped_port = parse_binding_success(answer)
        self.assertEqual(
            (tid, str(ip), mapped_port), (transaction_id, "127.0.0.1", client.getHost().port)
        )
        self.assertEqual(answer[-8:-4], bytes.fromhex("80280004"))  # FINGERPRINT, as asked

        # The relay registered its STUN addresses (never 0.0.0.0) in rendezvous/stun.
        yield relay.wait_for(r"registered in rendezvous/stun at ")
        yield relay.wait_for(r"registered in rendezvous/relays at ")
        session = yield connect(reactor, f"127.0.0.1:{live.group(1)}")
        self.addCleanup(session.disconnect)
        (entry,) = yield session.discover("rendezvous/stun")
        self.assertEqual(entry.peer_id, relay_id)
        expanded = expand([udp_multiaddr(bytes(4), int(anywhere.group(1)))], read_interface_ips())
        self.assertEqual(
            [multiaddr_to_text(a) for a in entry.addrs],
            [f"/ip4/127.0.0.1/udp/{port}", *(multiaddr_to_text(a) for a in expanded)],
        )
        self.assertNotIn("/ip4/0.0.0.0/", " ".join(multiaddr_to_text(a) for a in entry.addrs))
        # ...and its libp2p addresses, without the STUN ones, in rendezvous/relays.
        (relay_entry,) = yield session.discover("rendezvous/relays")
        self.assertEqual(
            [multiaddr_to_text(a) for a in relay_entry.addrs],
            [relay_match.group(1).split("/p2p/")[0]],
        )

        url = f"http://127.0.0.1:{metrics.group(1)}/metrics".encode()
        response = yield Agent(reactor).request(b"GET", url)
        text = (yield readBody(response)).decode()
        self.assertIn("stun_requests_answered_total 1.0", text)
        self.assertIn('stun_dropped_total{reason="magic cookie"} 1.0', text)
        self.assertIn("stun_rate_limited_total 0.0", text)

        session.disconnect()
        yield relay.interrupt("TERM")
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", relay.output + relay.errors)
        self.assertNotIn("Traceback", daemon.output + daemon.errors)
        self.assertIn(
            "stun: dropped a datagram from 127.0.0.1:"
            f"{client.getHost().port}: magic cookie: 0x00000000",
            relay.output,
        )

    @inlineCallbacks
    def test_a_port_in_use_stops_start_up(self):  # type: ignore[no-untyped-def]
        taken = reactor.listenUDP(0, Answers(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        relay = self.twistd(
            "rendezvous-relay",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--stun",
            f"udp:{port}:interface=127.0.0.1",
        )
        code = yield relay.ended
        self.assertNotEqual(code, 0)
        self.assertIn(f"stun cannot listen on udp 127.0.0.1:{port}: ", relay.output)
        self.assertIn("Address already in use", relay.output)
