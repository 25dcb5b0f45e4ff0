"""Interop with py-libp2p 0.8 (trio-based, in its own virtualenv): it pings and identifies
our daemon over TCP and over WebSocket.

The interpreter is ``$RENDEZVOUS_PY_LIBP2P``, by default ``interop/py/venv/bin/python``
(``python3.11 -m venv interop/py/venv && interop/py/venv/bin/pip install -r
interop/py/requirements.txt``).
"""

from __future__ import annotations

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from .processes import ROOT, TWISTD, Process, spawn

PY = os.path.join(ROOT, "interop", "py")
PYTHON = os.environ.get("RENDEZVOUS_PY_LIBP2P", os.path.join(PY, "venv", "bin", "python"))
P2P_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+(?:/ws)?/p2p/(\w+))\n"


class PyLibp2pTests(TestCase):
    timeout = 120
    if not os.access(PYTHON, os.X_OK):
        skip = (
            f"no py-libp2p interpreter at {PYTHON}: create interop/py/venv and "
            "pip install -r interop/py/requirements.txt there, or set RENDEZVOUS_PY_LIBP2P"
        )

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    def run_script(self, *args: str) -> Process:
        """Run ``ping.py`` with the py-libp2p interpreter, outside our PYTHONPATH."""
        process = Process()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        reactor.spawnProcess(  # type: ignore[attr-defined]
            process, PYTHON, [PYTHON, os.path.join(PY, "ping.py"), *args], env=env, path=PY
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
