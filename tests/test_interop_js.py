"""Interop with js-libp2p 3.x: a js peer dials our daemon (`npm ci` in interop/js first)."""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from rendezvous.addrs import multiaddr_to_text
from rendezvous.client import live
from rendezvous.p2p import identify, ping
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress
from rendezvous.peerid import peer_id_to_text

from .processes import ROOT, ProcessTestCase, node_missing

JS = os.path.join(ROOT, "interop", "js")
NODE = shutil.which("node")
P2P_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/(\w+))\n"
WS_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/ws/p2p/(\w+))\n"
LIVE_LISTENING = r"live dialect listening on tcp 127\.0\.0\.1:(\d+)"


class JsLibp2pTests(ProcessTestCase):
    timeout = 120
    skip = node_missing("js")

    @inlineCallbacks
    def start_daemon(self, ws: bool = False):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0/ws" if ws else "/ip4/127.0.0.1/tcp/0",
        )
        match = yield daemon.wait_for(WS_LISTENING if ws else P2P_LISTENING)
        return daemon, match.group(1), match.group(2)

    @inlineCallbacks
    def run_script(self, script: str, *args: str):  # type: ignore[no-untyped-def]
        assert NODE is not None
        node = self.spawn([NODE, script, *args], JS)
        code = yield node.ended
        self.assertEqual(code, 0, node.output + node.errors)
        return json.loads(node.output.strip().splitlines()[-1])

    @inlineCallbacks
    def test_ping_and_identify(self):  # type: ignore[no-untyped-def]
        yield self.check_ping_and_identify(ws=False)

    @inlineCallbacks
    def test_ping_and_identify_over_websocket(self):  # type: ignore[no-untyped-def]
        yield self.check_ping_and_identify(ws=True)

    @inlineCallbacks
    def check_ping_and_identify(self, ws: bool):  # type: ignore[no-untyped-def]
        daemon, target, peer_id = yield self.start_daemon(ws)
        result = yield self.run_script("ping.mjs", target)
        self.assertEqual(result["peerId"], peer_id)
        self.assertGreaterEqual(result["rtt"], 0)
        self.assertEqual(result["protocolVersion"], "ipfs/0.1.0")
        self.assertTrue(result["agentVersion"].startswith("rendezvous/"))
        for protocol in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/rendezvous/live/1.0.0"):
            self.assertIn(protocol, result["protocols"])
        listen = target.split("/p2p/")[0]
        self.assertEqual(result["listenAddrs"], [listen])
        self.assertEqual(result["signedPeerRecord"]["addresses"], [listen])
        self.assertTrue(result["observedAddr"].startswith("/ip4/127.0.0.1/tcp/"))
        self.assertEqual(result["observedAddr"].endswith("/ws"), ws)
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_live_dialect(self):  # type: ignore[no-untyped-def]
        """js peers on /rendezvous/live/1.0.0: push, refusal of another id, end of stream."""
        yield self.check_live_dialect(ws=False)

    @inlineCallbacks
    def test_live_dialect_over_websocket(self):  # type: ignore[no-untyped-def]
        yield self.check_live_dialect(ws=True)

    @inlineCallbacks
    def check_live_dialect(self, ws: bool):  # type: ignore[no-untyped-def]
        daemon, target, _ = yield self.start_daemon(ws)
        result = yield self.run_script("live.mjs", target)
        alice, bob = result["alice"], result["bob"]
        refused = result["refused"]
        self.assertEqual((refused["error"]["status"], refused["requestId"]), (200, 9))
        self.assertEqual([r["id"] for r in result["pushed"]["register"]], [alice])
        self.assertEqual([r["id"] for r in result["gone"]["unregister"]], [alice])
        self.assertNotEqual(alice, bob)
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_our_dialer_against_js(self):  # type: ignore[no-untyped-def]
        """Our host dials a js-libp2p listener: Noise initiator, yamux dialer, ping, identify."""
        yield self.check_our_dialer(ws=False)

    @inlineCallbacks
    def test_our_dialer_against_js_over_websocket(self):  # type: ignore[no-untyped-def]
        yield self.check_our_dialer(ws=True)

    @inlineCallbacks
    def check_our_dialer(self, ws: bool):  # type: ignore[no-untyped-def]
        assert NODE is not None
        node = self.spawn([NODE, "listen.mjs", *(["ws"] if ws else [])], JS)
        match = yield node.wait_for(WS_LISTENING if ws else P2P_LISTENING)
        address = TCPAddress.parse(match.group(1))
        self.assertEqual(address.ws, ws)
        host = Host(PrivateKey.generate(), reactor)
        connection = yield host.dial(address.client_endpoint(reactor), address.peer_id)
        rtt = yield ping.ping(connection, reactor)
        self.assertGreaterEqual(rtt, 0)
        info = yield identify.identify(connection)
        self.assertTrue(info.agentVersion.startswith("js-libp2p/"), info.agentVersion)
        self.assertIn(ping.PROTOCOL_ID, info.protocols)
        record, _ = open_peer_record(info.signedPeerRecord)
        self.assertEqual(record.peer_id, address.peer_id)
        connection.close()
        yield node.interrupt("TERM")

    # -- the standard dialect, /rendezvous/1.0.0, from a js-libp2p v3 peer --------

    @inlineCallbacks
    def run_standard(self, target: str, namespace: str, ws: bool):  # type: ignore[no-untyped-def]
        """standard.mjs: a js peer REGISTERs its signed peer record, then DISCOVERs."""
        result = yield self.run_script("standard.mjs", target, namespace, *(["ws"] if ws else []))
        self.assertEqual(result["register"], {"status": 0, "statusText": "", "ttl": 7200})
        self.assertEqual((result["discover"]["status"], result["discover"]["statusText"]), (0, ""))
        self.assertTrue(result["discover"]["cookie"])
        self.assertTrue(result["foundSelf"])
        [listen] = result["addrs"]
        self.assertTrue(listen.startswith("/ip4/127.0.0.1/tcp/"), listen)
        self.assertEqual(listen.endswith("/ws"), ws)
        return result

    def registered(self, result) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
        """The peers a standard.mjs DISCOVER returned, by id: their signed addresses."""
        return {r["id"]: r["addrs"] for r in result["discover"]["registrations"]}

    @inlineCallbacks
    def test_standard_register_and_discover(self):  # type: ignore[no-untyped-def]
        """A js v3 peer registers a signed peer record and discovers it on /rendezvous/1.0.0."""
        yield self.check_standard(ws=False)

    @inlineCallbacks
    def test_standard_register_and_discover_over_websocket(self):  # type: ignore[no-untyped-def]
        yield self.check_standard(ws=True)

    @inlineCallbacks
    def check_standard(self, ws: bool):  # type: ignore[no-untyped-def]
        daemon, target, _ = yield self.start_daemon(ws)
        result = yield self.run_standard(target, "js-ns", ws)
        self.assertEqual(self.registered(result), {result["id"]: result["addrs"]})
        [registration] = result["discover"]["registrations"]
        self.assertEqual(registration["ns"], "js-ns")
        self.assertLessEqual(registration["ttl"], 7200)
        self.assertGreater(registration["ttl"], 7000)
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_standard_second_peer_discovers_first(self):  # type: ignore[no-untyped-def]
        """The first js peer's registration outlives its stream and connection: a second
        js peer discovers it, its record opened and verified in js."""
        yield self.check_second_peer(ws=False)

    @inlineCallbacks
    def test_standard_second_peer_discovers_first_over_websocket(self):  # type: ignore[no-untyped-def]
        yield self.check_second_peer(ws=True)

    @inlineCallbacks
    def check_second_peer(self, ws: bool):  # type: ignore[no-untyped-def]
        daemon, target, _ = yield self.start_daemon(ws)
        first = yield self.run_standard(target, "shared", ws)
        second = yield self.run_standard(target, "shared", ws)
        self.assertNotEqual(first["id"], second["id"])
        self.assertEqual(
            self.registered(second),
            {first["id"]: first["addrs"], second["id"]: second["addrs"]},
        )
        other = yield self.run_standard(target, "elsewhere", ws)
        self.assertEqual(self.registered(other), {other["id"]: other["addrs"]})
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_standard_registration_reaches_live_subscriber(self):  # type: ignore[no-untyped-def]
        """A raw-TCP live subscriber is pushed the js peer's /rendezvous/1.0.0 REGISTER."""
        yield self.check_live_subscriber(ws=False)

    @inlineCallbacks
    def test_standard_registration_over_websocket_reaches_live_subscriber(self):  # type: ignore[no-untyped-def]
        yield self.check_live_subscriber(ws=True)

    @inlineCallbacks
    def check_live_subscriber(self, ws: bool):  # type: ignore[no-untyped-def]
        daemon, target, _ = yield self.start_daemon(ws)
        port = yield daemon.wait_for(LIVE_LISTENING)
        client = yield live.connect(reactor, f"127.0.0.1:{port.group(1)}")
        self.addCleanup(client.disconnect)
        pushed: Deferred[live.Event] = Deferred()

        def handler(event: live.Event) -> None:
            if not pushed.called:
                pushed.callback(event)

        yield client.rendezvous("watched", handler)  # fires once the (empty) snapshot is in
        self.assertFalse(pushed.called)
        result = yield self.run_standard(target, "watched", ws)
        event = yield pushed
        self.assertEqual(event.kind, "register")
        entry = event.entry
        self.assertEqual((entry.namespace, entry.peer_id), ("watched", result["id"]))
        self.assertEqual([multiaddr_to_text(a) for a in entry.addrs], result["addrs"])
        assert entry.signed_peer_record is not None
        record, _ = open_peer_record(entry.signed_peer_record)
        self.assertEqual(peer_id_to_text(record.peer_id), result["id"])
        self.assertEqual([multiaddr_to_text(a) for a in record.addrs], result["addrs"])
        client.disconnect()
        yield client.closed
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)
