"""Interop with js-libp2p 3.x: a js peer dials our daemon (`npm ci` in interop/js first)."""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from rendezvous.p2p import identify, ping
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress

from .processes import ROOT, TWISTD, Process, spawn

JS = os.path.join(ROOT, "interop", "js")
NODE = shutil.which("node")
P2P_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/(\w+))\n"
WS_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/ws/p2p/(\w+))\n"


class JsLibp2pTests(TestCase):
    timeout = 120
    if NODE is None:
        skip = "node is not installed"
    elif not os.path.isdir(os.path.join(JS, "node_modules")):
        skip = "interop/js/node_modules is missing: run `npm ci` in interop/js"

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    def spawn(self, args: list[str], cwd: str) -> Process:
        process = spawn(args, cwd)
        self.addCleanup(process.kill)
        return process

    @inlineCallbacks
    def start_daemon(self, ws: bool = False):  # type: ignore[no-untyped-def]
        daemon = self.spawn(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "rendezvous",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--p2p-listen",
                "/ip4/127.0.0.1/tcp/0/ws" if ws else "/ip4/127.0.0.1/tcp/0",
            ],
            self.cwd,
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
