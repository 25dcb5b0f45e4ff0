"""`twistd rendezvous` and the `rendezvous` client as real processes: the README tour."""

from __future__ import annotations

import json
import socket

from twisted.internet.defer import inlineCallbacks

from .helpers import peer_id
from .processes import CLI, TWISTD, ProcessTestCase

LISTENING = r"live dialect listening on tcp 127\.0\.0\.1:(\d+)"


class DaemonProcessTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def start_daemon(self, *extra: str):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
            *extra,
        )
        match = yield daemon.wait_for(LISTENING)
        return daemon, f"127.0.0.1:{match.group(1)}"

    @inlineCallbacks
    def test_cli_tour(self):  # type: ignore[no-untyped-def]
        daemon, target = yield self.start_daemon()
        yield daemon.wait_for(r"metrics listening on tcp 127\.0\.0\.1:(\d+)")
        alice = peer_id("alice")
        registered = self.spawn(
            [*CLI, "register", target, "my-app", "--id", alice, "--addr", "/ip4/192.0.2.1/tcp/4001"]
        )
        yield registered.wait_for("registered")
        watch = self.spawn([*CLI, "watch", "--json", target, "my-app"])
        line = yield watch.wait_for(r"\{.*\}\n")
        event = json.loads(line.group(0))
        self.assertEqual(
            (event["event"], event["id"], event["addrs"]),
            ("register", alice, ["/ip4/192.0.2.1/tcp/4001"]),
        )

        discover = self.spawn([*CLI, "discover", target, "my-app"])
        code = yield discover.ended
        self.assertEqual(code, 0)
        self.assertEqual(discover.output, f"{alice} /ip4/192.0.2.1/tcp/4001\n")

        code = yield registered.interrupt()
        self.assertEqual(code, 0, registered.output + registered.errors)
        yield watch.wait_for(r'"event": "unregister"')
        code = yield watch.interrupt()
        self.assertEqual(code, 0)

        # systemd stops the daemon with SIGTERM: it shuts down cleanly.
        yield daemon.interrupt("TERM")
        self.assertIn("rendezvous 0.1.0 starting", daemon.output)
        self.assertIn("Server Shut Down.", daemon.output)

    @inlineCallbacks
    def test_cli_exit_codes(self):  # type: ignore[no-untyped-def]
        _, target = yield self.start_daemon()
        refused = self.spawn([*CLI, "discover", target, ""])
        self.assertEqual((yield refused.ended), 1)
        self.assertIn("INVALID_NAMESPACE (100)", refused.errors)
        usage = self.spawn([*CLI, "register", target, "ns"])
        self.assertEqual((yield usage.ended), 2)
        self.assertIn("--id is required", usage.errors)
        bad_addr = self.spawn(
            [*CLI, "register", target, "ns", "--id", peer_id("x"), "--addr", "/nonsense"]
        )
        self.assertEqual((yield bad_addr.ended), 2)
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        unreachable = self.spawn([*CLI, "discover", f"127.0.0.1:{port}", "ns"])
        self.assertEqual((yield unreachable.ended), 3)
        self.assertIn("cannot reach", unreachable.errors)

    @inlineCallbacks
    def test_bind_error_fails_start_up(self):  # type: ignore[no-untyped-def]
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            daemon = self.twistd("rendezvous", "--listen", f"tcp:{port}:interface=127.0.0.1")
            code = yield daemon.ended
        self.assertNotEqual(code, 0)
        self.assertIn("Address already in use", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_help(self):  # type: ignore[no-untyped-def]
        daemon = self.spawn([*TWISTD, "rendezvous", "--help"])
        self.assertEqual((yield daemon.ended), 0)
        for flag in ("--listen", "--metrics", "--max-sessions", "--max-pending-bytes"):
            self.assertIn(flag, daemon.output)
        cli = self.spawn([*CLI, "--help"])
        self.assertEqual((yield cli.ended), 0)
        self.assertIn("discover", cli.output)

    @inlineCallbacks
    def test_id_of_an_identity_file(self):  # type: ignore[no-untyped-def]
        """``rendezvous id`` names the peer id a daemon started with that file will have."""
        made = self.spawn([*CLI, "id", "--identity", "rdv.key"])
        self.assertEqual((yield made.ended), 0, made.errors)
        peer = made.output.strip()
        again = self.spawn([*CLI, "id", "--identity", "rdv.key"])
        self.assertEqual((yield again.ended), 0)
        self.assertEqual(again.output.strip(), peer)
        daemon = self.twistd(
            "rendezvous", "--identity", "rdv.key", "--p2p-listen", "/ip4/127.0.0.1/tcp/0"
        )
        yield daemon.wait_for(rf"listening on /ip4/127\.0\.0\.1/tcp/\d+/p2p/{peer}")
        missing = self.spawn([*CLI, "id"])
        self.assertEqual((yield missing.ended), 2)
        self.assertIn("--identity FILE is required", missing.errors)
