"""Interop with py-libp2p 0.8 (trio-based, in its own virtualenv): it pings and identifies
our daemon over TCP and over WebSocket, and its own rendezvous client
(``libp2p.discovery.rendezvous``, the pre-spec layout) registers, discovers and
unregisters, seen by other py-libp2p peers and by live-dialect subscribers.

The interpreter is ``$RENDEZVOUS_PY_LIBP2P``, by default ``interop/py/venv/bin/python``
(``python3.11 -m venv interop/py/venv && interop/py/venv/bin/pip install -r
interop/py/requirements.txt``).
"""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from rendezvous.addrs import multiaddr_to_text
from rendezvous.client.live import Event, connect

from .processes import ROOT, TWISTD, Process, ProcessTestCase, node_missing, spawn

PY = os.path.join(ROOT, "interop", "py")
PYTHON = os.environ.get("RENDEZVOUS_PY_LIBP2P", os.path.join(PY, "venv", "bin", "python"))
P2P_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+(?:/ws)?/p2p/(\w+))\n"
LIVE_LISTENING = r"live dialect listening on tcp (127\.0\.0\.1:\d+) "


class PyLibp2pTests(ProcessTestCase):
    timeout = 120
    if not os.access(PYTHON, os.X_OK):
        skip = (
            f"no py-libp2p interpreter at {PYTHON}: create interop/py/venv and "
            "pip install -r interop/py/requirements.txt there, or set RENDEZVOUS_PY_LIBP2P"
        )

    def run_script(self, *args: str, script: str = "ping.py") -> Process:
        """Run ``script`` with the py-libp2p interpreter, outside our PYTHONPATH."""
        process = Process()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        reactor.spawnProcess(  # type: ignore[attr-defined]
            process, PYTHON, [PYTHON, os.path.join(PY, script), *args], env=env, path=PY
        )
        self.addCleanup(process.kill)
        return process

    def test_ping_and_identify(self) -> Deferred[None]:
        return self.check_ping_and_identify("/ip4/127.0.0.1/tcp/0")

    def test_ping_and_identify_over_websocket(self) -> Deferred[None]:
        return self.check_ping_and_identify("/ip4/127.0.0.1/tcp/0/ws")

    @inlineCallbacks
    def check_ping_and_identify(self, listen: str):  # type: ignore[no-untyped-def]
        daemon = spawn(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "rendezvous",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--p2p-listen",
                listen,
            ],
            self.cwd,
        )
        self.addCleanup(daemon.kill)
        match = yield daemon.wait_for(P2P_LISTENING)
        target, peer_id = match.group(1), match.group(2)

        peer = self.run_script(target)
        code = yield peer.ended
        self.assertEqual(code, 0, peer.output + peer.errors)
        result = json.loads(peer.output.strip().splitlines()[-1])
        self.assertEqual(result["peerId"], peer_id)
        self.assertGreaterEqual(result["rtt"], 0)
        self.assertEqual(result["protocolVersion"], "ipfs/0.1.0")
        self.assertTrue(result["agentVersion"].startswith("rendezvous/"))
        for protocol in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/rendezvous/live/1.0.0"):
            self.assertIn(protocol, result["protocols"])
        self.assertEqual(result["listenAddrs"], [target.split("/p2p/")[0]])
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    # -- py-libp2p's rendezvous client (pre-spec layout) --------------------------

    @inlineCallbacks
    def start_daemon(self):  # type: ignore[no-untyped-def]
        """A daemon with a live-dialect TCP listener and a libp2p TCP listener:
        ``(daemon, p2p target, daemon peer id, live host:port)``."""
        daemon = spawn(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "rendezvous",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--p2p-listen",
                "/ip4/127.0.0.1/tcp/0",
            ],
            self.cwd,
        )
        self.addCleanup(daemon.kill)
        match = yield daemon.wait_for(P2P_LISTENING)
        live = yield daemon.wait_for(LIVE_LISTENING)
        return daemon, match.group(1), match.group(2), live.group(1)

    @inlineCallbacks
    def rendezvous_client(self, *args: str):  # type: ignore[no-untyped-def]
        """Run ``rendezvous_client.py`` to completion: its JSON lines, by event, in order."""
        peer = self.run_script(*args, script="rendezvous_client.py")
        code = yield peer.ended
        self.assertEqual(code, 0, peer.output + peer.errors)
        steps = [json.loads(line) for line in peer.output.strip().splitlines()]
        return steps

    def discovered(self, step: dict[str, object]) -> dict[str, list[str]]:
        self.assertEqual(step["event"], "discovered")
        return {peer["id"]: peer["addrs"] for peer in step["peers"]}  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_rendezvous_register_and_discover(self):  # type: ignore[no-untyped-def]
        """py-libp2p's RendezvousClient: REGISTER (its default TTL, 2 h) is granted and
        DISCOVER returns the peer with the addresses it advertised."""
        daemon, target, peer_id, _ = yield self.start_daemon()
        steps = yield self.rendezvous_client(target, "py-interop")
        connected, registered, discovered = steps
        self.assertEqual(connected["event"], "connected")
        self.assertEqual(connected["peerId"], peer_id)
        self.assertGreaterEqual(connected["rtt"], 0)
        self.assertEqual(registered, {"event": "registered", "ns": "py-interop", "ttl": 7200})
        me = connected["self"]
        advertised = [addr.split("/p2p/")[0] for addr in connected["addrs"]]
        self.assertEqual(self.discovered(discovered), {me: advertised})
        self.assertTrue(discovered["cookie"])
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_rendezvous_second_peer_discovers_first(self):  # type: ignore[no-untyped-def]
        """The first peer registers with py-libp2p's minimum TTL (120 s) and leaves; its
        registration outlives the connection and a second py-libp2p peer discovers it."""
        daemon, target, _, _ = yield self.start_daemon()
        first = yield self.rendezvous_client(target, "py-pair", "--ttl", "120")
        self.assertEqual(first[1], {"event": "registered", "ns": "py-pair", "ttl": 120})
        second = yield self.rendezvous_client(target, "py-pair")
        alice, bob = first[0], second[0]
        self.assertNotEqual(alice["self"], bob["self"])
        self.assertEqual(
            self.discovered(second[2]),
            {
                alice["self"]: [addr.split("/p2p/")[0] for addr in alice["addrs"]],
                bob["self"]: [addr.split("/p2p/")[0] for addr in bob["addrs"]],
            },
        )
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_rendezvous_seen_by_live_subscriber(self):  # type: ignore[no-untyped-def]
        """A live-dialect subscriber over raw TCP is pushed the py-libp2p peer's REGISTER,
        then its UNREGISTER; the peer's DISCOVER after unregistering is empty."""
        daemon, target, _, live = yield self.start_daemon()
        subscriber = yield connect(reactor, live)
        pushed: dict[str, Deferred[Event]] = {"register": Deferred(), "unregister": Deferred()}
        events: list[Event] = []

        def handler(event: Event) -> None:
            events.append(event)
            if not pushed[event.kind].called:
                pushed[event.kind].callback(event)

        yield subscriber.rendezvous("py-live", handler)
        self.assertEqual(events, [])

        steps = yield self.rendezvous_client(target, "py-live", "--unregister")
        self.assertEqual(
            [step["event"] for step in steps],
            ["connected", "registered", "discovered", "unregistered", "discovered"],
        )
        me = steps[0]["self"]
        self.assertEqual(list(self.discovered(steps[2])), [me])
        self.assertEqual(self.discovered(steps[4]), {})

        registered = yield pushed["register"]
        unregistered = yield pushed["unregister"]
        self.assertEqual(registered.entry.namespace, "py-live")
        self.assertEqual(registered.entry.peer_id, me)
        self.assertEqual(
            [multiaddr_to_text(addr) for addr in registered.entry.addrs],
            [addr.split("/p2p/")[0] for addr in steps[0]["addrs"]],
        )
        self.assertEqual(
            (unregistered.entry.namespace, unregistered.entry.peer_id), ("py-live", me)
        )
        self.assertEqual([event.kind for event in events], ["register", "unregister"])

        subscriber.disconnect()
        yield subscriber.closed
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_a_peer_that_only_discovers_reads_everyone(self):  # type: ignore[no-untyped-def]
        """A py-libp2p peer that never registered on its connection is answered in the
        layout its client reads (told by its identify agent version), and finds a
        py-libp2p peer and a js-libp2p peer registered before it."""
        node_reason = node_missing("js")
        if node_reason:
            self.skipTest(node_reason)
        daemon, target, _, _ = yield self.start_daemon()
        py_peer = yield self.rendezvous_client(target, "mixed", "--ttl", "120")
        node = shutil.which("node")
        assert node is not None
        js = self.spawn(
            [node, "standard.mjs", target, "mixed"], os.path.join(ROOT, "interop", "js")
        )
        self.assertEqual((yield js.ended), 0, js.output + js.errors)
        js_peer = json.loads(js.output.strip().splitlines()[-1])
        only_discovers = yield self.rendezvous_client(target, "mixed", "--no-register")
        found = self.discovered(only_discovers[-1])
        self.assertEqual(
            found[py_peer[0]["self"]], [addr.split("/p2p/")[0] for addr in py_peer[0]["addrs"]]
        )
        self.assertIn(js_peer["id"], found)
        self.assertTrue(found[js_peer["id"]])
        self.assertEqual(len(found), 2)
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)
