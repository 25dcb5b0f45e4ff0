"""The command-line client survives a daemon restart (real processes): ``register``
registers again, ``watch`` subscribes again and prints only what changed."""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from rendezvous.client.live import Event, connect

from .helpers import peer_id
from .processes import CLI, ProcessTestCase

SHUTTING_DOWN = r"lost 127\.0\.0\.1:\d+: the server is shutting down"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def replay(lines: str) -> dict[str, list[str]]:
    """Each peer's events, in order, from ``watch``'s output."""
    seen: dict[str, list[str]] = {}
    for line in lines.splitlines():
        kind, peer = line.split()[:2]
        seen.setdefault(peer, []).append(kind)
    return seen


class RestartTests(ProcessTestCase):
    timeout = 120

    @inlineCallbacks
    def start_daemon(self, port: int):  # type: ignore[no-untyped-def]
        daemon = self.twistd("rendezvous", "--listen", f"tcp:{port}:interface=127.0.0.1")
        yield daemon.wait_for(r"live dialect listening on tcp 127\.0\.0\.1:\d+")
        return daemon

    @inlineCallbacks
    def sees(self, target: str, namespace: str, wanted: str):  # type: ignore[no-untyped-def]
        """Fires once ``wanted`` is registered in ``namespace`` at ``target``."""
        client = yield connect(reactor, target)
        self.addCleanup(client.disconnect)
        found: Deferred[None] = Deferred()

        def pushed(event: Event) -> None:
            if event.kind == "register" and event.entry.peer_id == wanted and not found.called:
                found.callback(None)

        yield client.rendezvous(namespace, pushed)
        yield found

    @inlineCallbacks
    def test_register_and_watch_survive_a_restart(self):  # type: ignore[no-untyped-def]
        port = free_port()
        target = f"127.0.0.1:{port}"
        daemon = yield self.start_daemon(port)
        alice, bob = peer_id("alice"), peer_id("bob")
        registered = self.spawn([*CLI, "register", target, "my-app", "--id", alice])
        yield registered.wait_for("registered")
        watch = self.spawn([*CLI, "watch", target, "my-app"])
        yield watch.wait_for(rf"\+ {alice}")

        yield daemon.interrupt("TERM")
        # The daemon said goodbye: both clients knew at once why they lost it.
        yield registered.wait_for(SHUTTING_DOWN)
        yield watch.wait_for(SHUTTING_DOWN)

        yield self.start_daemon(port)
        yield self.sees(target, "my-app", alice)  # registered again
        yield watch.wait_for(r"(?s)connected to.*connected to")

        self.assertEqual((yield registered.interrupt()), 0, registered.errors)
        self.assertIn(f"unregistered {alice} from my-app", registered.output)
        # bob's arrival is pushed after alice's departure: the watcher has both then.
        bob_registered = self.spawn([*CLI, "register", target, "my-app", "--id", bob])
        yield bob_registered.wait_for("registered")
        yield watch.wait_for(rf"\+ {bob}")
        events = replay(watch.output)
        self.assertEqual(events[bob], ["+"])
        # Whatever the order of the reconnections: alternating, ending unregistered.
        self.assertEqual(events[alice][-1], "-")
        self.assertTrue(all(a != b for a, b in zip(events[alice], events[alice][1:], strict=False)))
        self.assertEqual((yield watch.interrupt()), 0)

    @inlineCallbacks
    def test_several_servers_and_once(self):  # type: ignore[no-untyped-def]
        down = f"127.0.0.1:{free_port()}"
        port = free_port()
        daemon = yield self.start_daemon(port)
        alice = peer_id("alice")
        # The first server is down: the next in the list (comma-separated) serves.
        registered = self.spawn(
            [*CLI, "register", f"{down},127.0.0.1:{port}", "my-app", "--id", alice]
        )
        yield registered.wait_for("registered")
        self.assertRegex(registered.errors, rf"cannot reach {down}: connection refused")
        once = self.spawn([*CLI, "watch", "--once", down, f"127.0.0.1:{port}", "my-app"])
        yield once.wait_for(rf"\+ {alice}")
        yield daemon.interrupt("TERM")
        self.assertEqual((yield once.ended), 3)
        yield registered.wait_for(r"lost 127\.0\.0\.1:\d+: the server is shutting down")
        self.assertEqual((yield registered.interrupt()), 0, registered.errors)

    @inlineCallbacks
    def test_standard_dialect_registers_again_after_a_restart(self):  # type: ignore[no-untyped-def]
        live_port, p2p_port = free_port(), free_port()
        args = (
            "rendezvous",
            "--identity",
            "daemon.key",
            "--listen",
            f"tcp:{live_port}:interface=127.0.0.1",
            "--p2p-listen",
            f"/ip4/127.0.0.1/tcp/{p2p_port}",
        )
        daemon = self.twistd(*args)
        match = yield daemon.wait_for(r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)")
        registered = self.spawn(
            [
                *CLI,
                "register",
                "--dialect",
                "standard",
                "--identity",
                "me.key",
                match.group(1),
                "ns",
            ]
        )
        line = yield registered.wait_for(r"registered (\w+) in ns")
        me = line.group(1)
        yield daemon.interrupt("TERM")
        yield registered.wait_for(r"lost /ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+: ")
        again = self.twistd(*args)  # the same identity: the address stays valid
        yield again.wait_for(r"live dialect listening on tcp 127\.0\.0\.1:\d+")
        yield self.sees(f"127.0.0.1:{live_port}", "ns", me)
        self.assertEqual((yield registered.interrupt()), 0, registered.errors)
