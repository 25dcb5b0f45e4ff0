"""The `rendezvous` client over libp2p (TCP and WebSocket) against a `twistd rendezvous`."""

from __future__ import annotations

import json
import os

from twisted.internet.defer import inlineCallbacks

from rendezvous.p2p.keys import PrivateKey, load_or_create_identity

from .helpers import peer_id
from .processes import CLI, ProcessTestCase

TCP_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)\n"
WS_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/ws/p2p/\w+)\n"


class P2PClientProcessTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def start_daemon(self):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0/ws",
        )
        tcp = yield daemon.wait_for(TCP_LISTENING)
        ws = yield daemon.wait_for(WS_LISTENING)
        return daemon, tcp.group(1), ws.group(1)

    @inlineCallbacks
    def test_tour_over_libp2p(self):  # type: ignore[no-untyped-def]
        """register (own id from --identity), watch over WebSocket, discover over TCP."""
        daemon, tcp, ws = yield self.start_daemon()
        key_path = os.path.join(self.cwd, "client.key")
        registered = self.spawn(
            [*CLI, "register", tcp, "my-app", "--identity", key_path, "-a", "/ip4/192.0.2.1/tcp/1"]
        )
        yield registered.wait_for(r"registered .*\n")
        me = load_or_create_identity(key_path).peer_id_text()
        self.assertEqual(registered.output, f"registered {me} in my-app\n")

        watch = self.spawn([*CLI, "watch", "--json", ws, "my-app"])
        line = yield watch.wait_for(r"\{.*\}\n")
        event = json.loads(line.group(0))
        self.assertEqual(
            (event["event"], event["id"], event["addrs"]),
            ("register", me, ["/ip4/192.0.2.1/tcp/1"]),
        )

        discover = self.spawn([*CLI, "discover", tcp, "my-app", "--dialect", "live"])
        self.assertEqual((yield discover.ended), 0, discover.errors)
        self.assertEqual(discover.output, f"{me} /ip4/192.0.2.1/tcp/1\n")

        code = yield registered.interrupt()
        self.assertEqual(code, 0, registered.output + registered.errors)
        self.assertIn(f"unregistered {me} from my-app", registered.output)
        yield watch.wait_for(r'"event": "unregister"')
        self.assertEqual((yield watch.interrupt()), 0)
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_fresh_identity_registers_itself(self):  # type: ignore[no-untyped-def]
        _, _, ws = yield self.start_daemon()
        registered = self.spawn([*CLI, "register", ws, "ns"])
        match = yield registered.wait_for(r"registered (\w+) in ns\n")
        discover = self.spawn([*CLI, "discover", ws, "ns"])
        self.assertEqual((yield discover.ended), 0, discover.errors)
        self.assertEqual(discover.output, f"{match.group(1)}\n")
        self.assertTrue(match.group(1).startswith("12D3KooW"))

    @inlineCallbacks
    def test_exit_codes(self):  # type: ignore[no-untyped-def]
        _, tcp, _ = yield self.start_daemon()
        other = self.spawn([*CLI, "register", tcp, "ns", "--id", peer_id("mallory")])
        self.assertEqual((yield other.ended), 1)
        self.assertIn("NOT_AUTHORIZED (200)", other.errors)

        impostor = tcp.split("/p2p/")[0] + "/p2p/" + PrivateKey.generate().peer_id_text()
        unreachable = self.spawn([*CLI, "discover", impostor, "ns"])
        self.assertEqual((yield unreachable.ended), 3)
        self.assertIn("cannot reach", unreachable.errors)

        watch = self.spawn([*CLI, "watch", tcp, "ns", "--dialect", "standard"])
        self.assertEqual((yield watch.ended), 2)
        self.assertIn("watch needs the live dialect", watch.errors)
        raw = self.spawn([*CLI, "discover", "127.0.0.1:1", "ns", "--dialect", "standard"])
        self.assertEqual((yield raw.ended), 2)
        self.assertIn("standard dialect runs over libp2p", raw.errors)
        not_ours = [*CLI, "register", tcp, "ns", "--dialect", "standard", "--id", peer_id("x")]
        self.assertEqual((yield self.spawn(not_ours).ended), 2)
        dialect = self.spawn([*CLI, "discover", tcp, "ns", "--dialect", "nonsense"])
        self.assertEqual((yield dialect.ended), 2)
        self.assertIn("--dialect must be one of live, standard", dialect.errors)

        raw_identity = self.spawn([*CLI, "discover", "127.0.0.1:1", "ns", "--identity", "k"])
        self.assertEqual((yield raw_identity.ended), 2)
        self.assertIn("--identity applies to libp2p", raw_identity.errors)

        bad = self.spawn([*CLI, "discover", "/ip4/127.0.0.1/udp/1", "ns"])
        self.assertEqual((yield bad.ended), 2)

    @inlineCallbacks
    def test_standard_dialect(self):  # type: ignore[no-untyped-def]
        """register and discover on /rendezvous/1.0.0; a live watcher is told of both ends."""
        daemon, tcp, ws = yield self.start_daemon()
        # Whether it subscribes before or after the REGISTER, the watcher is told of it.
        watch = self.spawn([*CLI, "watch", "--json", tcp, "ns"])
        registered = self.spawn(
            [*CLI, "register", ws, "ns", "--dialect", "standard", "-a", "/ip4/192.0.2.7/tcp/7"]
        )
        match = yield registered.wait_for(r"registered (\w+) in ns\n")
        me = match.group(1)
        line = yield watch.wait_for(r"\{.*\}\n")
        event = json.loads(line.group(0))
        self.assertEqual(
            (event["event"], event["id"], event["addrs"]),
            ("register", me, ["/ip4/192.0.2.7/tcp/7"]),
        )
        self.assertIn("signed_peer_record", event)

        discover = self.spawn([*CLI, "discover", tcp, "ns", "--dialect", "standard"])
        self.assertEqual((yield discover.ended), 0, discover.errors)
        self.assertEqual(discover.output, f"{me} /ip4/192.0.2.7/tcp/7\n")
        refused = self.spawn([*CLI, "discover", tcp, "x" * 300, "--dialect", "standard"])
        self.assertEqual((yield refused.ended), 1)
        self.assertIn("INVALID_NAMESPACE (100)", refused.errors)

        self.assertEqual((yield registered.interrupt()), 0, registered.errors)
        self.assertIn(f"unregistered {me} from ns", registered.output)
        yield watch.wait_for(r'"event": "unregister"')
        self.assertEqual((yield watch.interrupt()), 0)
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)
