"""``rendezvous join`` as a real process against a real daemon and relays: it says what
happens to its relays one line at a time, survives its relay being killed, and reports
a fleet it cannot use clearly (retrying, or exiting with --once)."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from rendezvous.addrs import multiaddr_to_text
from rendezvous.client.connect import connect_to as connect_daemon
from rendezvous.p2p.keys import PrivateKey

from . import test_relay_fleet as fleet
from .processes import CLI, ProcessTestCase
from .test_relay_failover import Watch


class JoinCommandTests(ProcessTestCase):
    timeout = 90
    start_daemon = fleet.FleetTests.start_daemon
    start_relay = fleet.FleetTests.start_relay

    @inlineCallbacks
    def test_survives_its_relay(self):  # type: ignore[no-untyped-def]
        daemon, rendezvous = yield self.start_daemon()
        relays = {}
        for _ in range(2):
            process, _, peer_id = yield self.start_relay(rendezvous)
            relays[peer_id] = process
        watcher = yield connect_daemon(reactor, rendezvous)
        self.addCleanup(watcher.disconnect)
        watch = Watch()
        yield watcher.rendezvous("my-app", watch)
        registered = watch.wait(lambda e: e.kind == "register", 30)

        join = self.spawn([*CLI, "join", rendezvous, "my-app", "-k", "1", "--renewal", "2"])
        joined = yield join.wait_for(r"joined my-app as (\S+/p2p/(\w+)/p2p-circuit/p2p/(\w+))\n")
        circuit, in_use, me = joined.groups()
        self.assertRegex(
            join.errors,
            rf"rendezvous: reserved on relay {in_use} at /ip4/127\.0\.0\.1/tcp/\d+ "
            r"\(round trip \d+ ms\)\n",
        )
        self.assertIn(f"rendezvous: registered at {circuit}\n", join.errors)
        self.assertEqual((yield registered).entry.peer_id, me)

        (other,) = set(relays) - {in_use}
        yield relays[in_use].kill()
        yield join.wait_for(f"rendezvous: lost relay {in_use}: connection lost\n")
        moved = yield join.wait_for(
            rf"rendezvous: registered at (\S+/p2p/{other}/p2p-circuit/p2p/{me})\n"
        )
        self.assertIn(f"rendezvous: reserved on relay {other} at ", join.errors)

        gone = watch.wait(lambda e: e.kind == "unregister", 30)
        code = yield join.interrupt("INT")
        self.assertEqual(code, 0, join.errors)
        self.assertIn("left my-app\n", join.output)
        self.assertEqual((yield gone).entry.peer_id, me)
        self.assertNotIn("Traceback", join.errors)
        # Each line on stderr is one change, in the order it happened.
        lines = [line for line in join.errors.splitlines() if line.startswith("rendezvous: ")]
        self.assertEqual(lines.index(f"rendezvous: lost relay {in_use}: connection lost"), 2)
        self.assertEqual(lines[-1], f"rendezvous: registered at {moved.group(1)}")
        yield daemon.interrupt("TERM")

    @inlineCallbacks
    def test_every_relay_gone_and_back(self):  # type: ignore[no-untyped-def]
        """Its only relay killed: it unregisters (nothing stays registered that cannot be
        reached), says so and retries; a new relay: registered again through it."""
        daemon, rendezvous = yield self.start_daemon()
        relay, _, first = yield self.start_relay(rendezvous)
        watcher = yield connect_daemon(reactor, rendezvous)
        self.addCleanup(watcher.disconnect)
        watch = Watch()
        yield watcher.rendezvous("my-app", watch)

        join = self.spawn([*CLI, "join", rendezvous, "my-app", "--relays", "1"])
        joined = yield join.wait_for(r"joined my-app as \S+/p2p-circuit/p2p/(\w+)\n")
        me = joined.group(1)
        gone = watch.wait(lambda e: e.kind == "unregister", 30)
        yield relay.kill()
        yield join.wait_for(f"rendezvous: lost relay {first}: connection lost\n")
        yield join.wait_for("rendezvous: unregistered: no relay holds a reservation for us\n")
        yield join.wait_for(rf"rendezvous: no relay: {first}: [^\n]*; retrying in [\d.]+ s\n")
        self.assertEqual((yield gone).entry.peer_id, me)

        back = watch.wait(lambda e: e.kind == "register", 60)
        _, _, second = yield self.start_relay(rendezvous)
        moved = yield join.wait_for(
            rf"rendezvous: registered at (\S+/p2p/{second}/p2p-circuit/p2p/{me})\n"
        )
        pushed = yield back
        self.assertEqual([multiaddr_to_text(a) for a in pushed.entry.addrs], [moved.group(1)])
        self.assertEqual((yield join.interrupt("INT")), 0)
        self.assertNotIn("Traceback", join.errors)
        yield daemon.interrupt("TERM")

    @inlineCallbacks
    def test_a_fleet_it_cannot_use(self):  # type: ignore[no-untyped-def]
        daemon, rendezvous = yield self.start_daemon()
        stranger = PrivateKey.generate().peer_id_text()
        _, _, closed = yield self.start_relay(
            rendezvous, "--namespace", "closed-relays", "--allow-peer", stranger
        )

        # No relay registered: --once exits 3 saying so.
        once = self.spawn(
            [*CLI, "join", rendezvous, "my-app", "--relay-namespace", "empty", "--once"]
        )
        self.assertEqual((yield once.ended), 3)
        self.assertEqual(
            once.errors,
            "rendezvous: cannot join my-app: no relay found in 'empty': none registered\n",
        )

        # Every relay refuses: said, and retried with backoff until interrupted.
        refused = self.spawn(
            [*CLI, "join", rendezvous, "my-app", "--relay-namespace", "closed-relays"]
        )
        yield refused.wait_for(
            r"(cannot join my-app: reservation refused[^\n]*retrying in [\d.]+ s\n[\s\S]*){2}"
        )
        self.assertIn(
            f"rendezvous: relay {closed} refused the reservation: PERMISSION_DENIED\n",
            refused.errors,
        )
        self.assertIn(
            f"rendezvous: cannot join my-app: reservation refused by {closed}: "
            "PERMISSION_DENIED; retrying in ",
            refused.errors,
        )
        self.assertEqual((yield refused.interrupt("INT")), 0)
        self.assertEqual(refused.output, "")

        # The daemon unreachable.
        nowhere = self.spawn(
            [*CLI, "join", f"/ip4/127.0.0.1/tcp/1/p2p/{stranger}", "my-app", "--once"]
        )
        self.assertEqual((yield nowhere.ended), 3)
        self.assertRegex(nowhere.errors, r"^rendezvous: cannot join my-app: .*refused")

        # Bad usage.
        bad = self.spawn([*CLI, "join", "/dns4/rdv.example.org/tcp/1", "my-app"])
        self.assertEqual((yield bad.ended), 2)
        self.assertIn("not a TCP multiaddr", bad.errors)
        yield daemon.interrupt("TERM")
