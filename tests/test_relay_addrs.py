"""Real processes: what a relay listening on 0.0.0.0, or told ``--p2p-announce``,
registers in the fleet's namespace and puts in its reservations; what the daemon tells
in identify."""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from rendezvous.addrs import multiaddr_from_text, multiaddr_to_text
from rendezvous.client.standard import connect_standard
from rendezvous.p2p.advertise import expand, is_unspecified, read_interface_ips
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.identify import identify
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress
from rendezvous.relay import client

from .processes import P2P_LISTENING, ProcessTestCase

ANY_LISTENING = r"listening on (/ip4/0\.0\.0\.0/tcp/(\d+))/p2p/(\w+)"
ANNOUNCED = "/dns4/relay1.example.org/tcp/443/tls/ws"


def interface_addrs(port: int) -> list[str]:
    """What this machine's interfaces make of ``/ip4/0.0.0.0/tcp/<port>``."""
    bound = [multiaddr_from_text(f"/ip4/0.0.0.0/tcp/{port}")]
    return [multiaddr_to_text(addr) for addr in expand(bound, read_interface_ips())]


class RelayAddressTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def daemon(self):  # type: ignore[no-untyped-def]
        """A rendezvous daemon on 0.0.0.0: (its 127.0.0.1 address, its process)."""
        daemon = self.twistd("rendezvous", "--p2p-listen", "/ip4/0.0.0.0/tcp/0")
        match = yield daemon.wait_for(ANY_LISTENING)
        return f"/ip4/127.0.0.1/tcp/{match.group(2)}/p2p/{match.group(3)}", daemon

    @inlineCallbacks
    def discover(self, rendezvous: str):  # type: ignore[no-untyped-def]
        """The addresses of the one relay registered in ``fleet``."""
        standard = yield connect_standard(
            reactor, TCPAddress.parse(rendezvous), PrivateKey.generate()
        )
        self.addCleanup(standard.disconnect)
        (entry,) = yield standard.discover("fleet")
        return [multiaddr_to_text(addr) for addr in entry.addrs]

    @inlineCallbacks
    def reserve(self, address: TCPAddress):  # type: ignore[no-untyped-def]
        """The addresses of a reservation on the relay at ``address``."""
        host = Host(PrivateKey.generate(), reactor)
        connection = yield host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(connection.close)
        info = yield client.reserve(connection)
        return [multiaddr_to_text(addr) for addr in info.addrs]

    @inlineCallbacks
    def test_unspecified_listen_is_never_advertised(self):  # type: ignore[no-untyped-def]
        rendezvous, daemon = yield self.daemon()
        relay = self.twistd(
            "rendezvous-relay",
            "--p2p-listen",
            "/ip4/0.0.0.0/tcp/0",
            "--announce-to",
            rendezvous,
            "--namespace",
            "fleet",
        )
        match = yield relay.wait_for(ANY_LISTENING)
        port, relay_id = int(match.group(2)), match.group(3)
        yield relay.wait_for("registered in fleet at ")
        expected = interface_addrs(port)
        self.assertTrue(expected)
        for text in expected:
            self.assertIn(f"advertising {text}/p2p/{relay_id}\n", relay.output)

        registered = yield self.discover(rendezvous)
        self.assertEqual(registered, expected)

        local = f"/ip4/127.0.0.1/tcp/{port}"
        addrs = yield self.reserve(TCPAddress.parse(f"{local}/p2p/{relay_id}"))
        in_order = [local, *(text for text in expected if text != local)]
        self.assertEqual(addrs, [f"{text}/p2p/{relay_id}" for text in in_order])
        for text in [*registered, *addrs]:
            self.assertFalse(is_unspecified(multiaddr_from_text(text)), text)

        # The daemon on 0.0.0.0 tells the same in identify and its signed peer record.
        host = Host(PrivateKey.generate(), reactor)
        address = TCPAddress.parse(rendezvous)
        connection = yield host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(connection.close)
        told = yield identify(connection)
        expected = interface_addrs(int(rendezvous.split("/")[4]))
        self.assertEqual([multiaddr_to_text(a) for a in told.listenAddrs], expected)
        record, _ = open_peer_record(told.signedPeerRecord)
        self.assertEqual([multiaddr_to_text(a) for a in record.addrs], expected)

        yield relay.interrupt("TERM")
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", relay.output + relay.errors + daemon.output + daemon.errors)

    @inlineCallbacks
    def test_announced_address(self):  # type: ignore[no-untyped-def]
        rendezvous, daemon = yield self.daemon()
        relay = self.twistd(
            "rendezvous-relay",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--p2p-announce",
            ANNOUNCED,
            "--announce-to",
            rendezvous,
            "--namespace",
            "fleet",
        )
        match = yield relay.wait_for(P2P_LISTENING)
        relay_id = match.group(2)
        yield relay.wait_for("registered in fleet at ")
        self.assertIn(f"advertising {ANNOUNCED}/p2p/{relay_id}\n", relay.output)
        self.assertEqual((yield self.discover(rendezvous)), [ANNOUNCED])
        addrs = yield self.reserve(TCPAddress.parse(match.group(1)))
        self.assertEqual(addrs, [f"{ANNOUNCED}/p2p/{relay_id}"])
        yield relay.interrupt("TERM")
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", relay.output + relay.errors)

    @inlineCallbacks
    def test_bad_announce_is_a_usage_error(self):  # type: ignore[no-untyped-def]
        relay = self.twistd("rendezvous-relay", "--p2p-announce", "/ip4/0.0.0.0/tcp/1")
        code = yield relay.ended
        self.assertNotEqual(code, 0)
        self.assertTrue(
            re.search(r"--p2p-announce: .*unspecified", relay.output + relay.errors),
            relay.output + relay.errors,
        )
