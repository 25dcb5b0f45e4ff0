"""A relay client that survives its relay, with real processes: a `twistd rendezvous`
daemon and three `twistd rendezvous-relay` relays. A peer joins ``my-app`` through the
fleet; the relay it uses is killed with SIGKILL; within two renewal intervals a
subscriber of ``my-app`` is pushed the peer's new circuit addresses, and another peer
reaches it through them."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed

from rendezvous.addrs import multiaddr_to_text
from rendezvous.client.connect import connect_to as connect_daemon
from rendezvous.client.live import Event
from rendezvous.p2p.transport import TCPAddress
from rendezvous.peerid import peer_id_to_text
from rendezvous.relay.fleet import (
    AddressesChanged,
    DnsResolver,
    PoolEvent,
    RelayAdded,
    RelayLost,
    RelayUnreachable,
    Retrying,
    connect_to,
    join,
)

from . import test_relay_fleet as fleet
from .processes import ProcessTestCase
from .test_relay_fleet import EXCHANGE, Exchange

RENEWAL = 2.0
"""The peer renews its reservations this often (seconds)."""


class Watch:
    """A subscription's events; `wait` fires on the first matching one from now on."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._waiting: list[tuple[Callable[[Event], bool], Deferred[Event]]] = []

    def __call__(self, event: Event) -> None:
        self.seen.append(event)
        for waiter in list(self._waiting):
            matches, d = waiter
            if matches(event):
                self._waiting.remove(waiter)
                d.callback(event)

    def wait(self, matches: Callable[[Event], bool], deadline: float) -> Deferred[Event]:
        d: Deferred[Event] = Deferred()
        self._waiting.append((matches, d))
        return d.addTimeout(deadline, reactor)


class States(list[PoolEvent]):
    """What ``on_state`` was told; `wait` fires on the next event of a kind."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: list[tuple[type, Deferred[PoolEvent]]] = []

    def __call__(self, event: PoolEvent) -> None:
        self.append(event)
        for waiter in list(self._waiting):
            if isinstance(event, waiter[0]):
                self._waiting.remove(waiter)
                waiter[1].callback(event)

    def wait(self, kind: type, deadline: float) -> Deferred[PoolEvent]:
        d: Deferred[PoolEvent] = Deferred()
        self._waiting.append((kind, d))
        return d.addTimeout(deadline, reactor)


def addrs(event: Event) -> list[str]:
    return [multiaddr_to_text(a) for a in event.entry.addrs]


class FailoverTests(ProcessTestCase):
    timeout = 90
    start_daemon = fleet.FleetTests.start_daemon
    start_relay = fleet.FleetTests.start_relay
    host = fleet.FleetTests.host

    @inlineCallbacks
    def start_fleet(self):  # type: ignore[no-untyped-def]
        """The daemon, three relays registered there, and a subscriber of ``my-app``."""
        daemon, rendezvous = yield self.start_daemon()
        relays = {}
        for _ in range(3):
            process, _, peer_id = yield self.start_relay(rendezvous)
            relays[peer_id] = process
        watcher = yield connect_daemon(reactor, rendezvous)
        self.addCleanup(watcher.disconnect)
        watch = Watch()
        yield watcher.rendezvous("my-app", watch)
        return daemon, TCPAddress.parse(rendezvous), relays, watch

    @inlineCallbacks
    def reach(self, entry_event: Event, alice_host):  # type: ignore[no-untyped-def]
        """Carol, with no relay of her own, reaches alice through the pushed addresses."""
        carol_host = self.host()
        connection = yield connect_to(reactor, carol_host, entry_event.entry)
        self.addCleanup(connection.close)
        self.assertTrue(connection.relayed)
        self.assertEqual(connection.remote_peer_id, alice_host.peer_id)
        carol_side = Exchange(b"still there?", opener=True)
        yield connection.open_stream(EXCHANGE, carol_side)
        self.assertEqual((yield carol_side.done), b"yes, through another relay")

    @inlineCallbacks
    def joined(self, target, watch, k):  # type: ignore[no-untyped-def]
        alice_host = self.host()
        alice_id = alice_host.identity.peer_id_text()
        alice_host.set_handler(
            EXCHANGE, lambda: Exchange(b"yes, through another relay", opener=False)
        )
        states = States()
        registered = watch.wait(lambda e: e.entry.peer_id == alice_id, 30)
        alice = yield join(
            reactor, alice_host, target, "my-app", lambda e: None,
            k=k, on_state=states, renewal=RENEWAL,
        )  # fmt: skip
        self.addCleanup(alice.leave)
        first = yield registered
        self.assertEqual(addrs(first), alice.circuit_addresses)
        self.assertEqual(len(alice.circuit_addresses), k)
        self.assertEqual([type(s) for s in states], [RelayAdded] * k + [AddressesChanged])
        return alice_host, alice_id, alice, states

    @inlineCallbacks
    def test_k1_fails_over_to_another_relay(self):  # type: ignore[no-untyped-def]
        daemon, target, relays, watch = yield self.start_fleet()
        alice_host, alice_id, alice, states = yield self.joined(target, watch, 1)
        in_use = peer_id_to_text(alice.relay.peer_id)
        del states[:]

        moved = watch.wait(
            lambda e: e.entry.peer_id == alice_id and f"/p2p/{in_use}/" not in " ".join(addrs(e)),
            2 * RENEWAL,
        )
        told = states.wait(AddressesChanged, 2 * RENEWAL)
        yield relays[in_use].kill()
        pushed = yield moved
        yield told
        self.assertEqual(pushed.kind, "register")
        self.assertEqual(len(addrs(pushed)), 1)
        self.assertNotEqual(peer_id_to_text(alice.relay.peer_id), in_use)
        self.assertEqual(addrs(pushed), alice.circuit_addresses)
        # What alice was told, in order: the relay lost, another added, then registered.
        lost = states[0]
        assert isinstance(lost, RelayLost)
        self.assertEqual(lost.relay, in_use)
        kinds = [type(s) for s in states]
        self.assertLess(kinds.index(RelayAdded), kinds.index(AddressesChanged))
        self.assertEqual(states[-1], AddressesChanged(tuple(alice.circuit_addresses)))
        # k=1: the registration was replaced, never withdrawn.
        self.assertNotIn("unregister", [e.kind for e in watch.seen])
        yield self.reach(pushed, alice_host)
        gone = watch.wait(lambda e: e.kind == "unregister", 10)
        yield alice.leave()
        self.assertEqual((yield gone).entry.peer_id, alice_id)
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_k2_stays_reachable_and_replaces_the_lost_relay(self):  # type: ignore[no-untyped-def]
        daemon, target, relays, watch = yield self.start_fleet()
        alice_host, alice_id, alice, states = yield self.joined(target, watch, 2)
        in_use = peer_id_to_text(alice.relay.peer_id)
        survivor = peer_id_to_text(alice.relays[1].target.address.peer_id)
        (third,) = set(relays) - {in_use, survivor}

        def without_killed(e: Event) -> bool:
            return e.entry.peer_id == alice_id and f"/p2p/{in_use}/" not in " ".join(addrs(e))

        moved = watch.wait(without_killed, 2 * RENEWAL)
        replaced = watch.wait(lambda e: without_killed(e) and len(addrs(e)) == 2, 2 * RENEWAL)
        yield relays[in_use].kill()
        pushed = yield moved
        # At once the survivor alone; then the third relay too (the lost one replaced).
        self.assertIn(f"/p2p/{survivor}/p2p-circuit/p2p/{alice_id}", addrs(pushed)[0])
        full = yield replaced
        self.assertEqual(
            sorted(a.split("/p2p/")[1].split("/")[0] for a in addrs(full)),
            sorted([survivor, third]),
        )
        self.assertEqual(addrs(full), alice.circuit_addresses)
        lost = [s for s in states if isinstance(s, RelayLost)]
        self.assertEqual([s.relay for s in lost], [in_use])
        added = [s.relay for s in states if isinstance(s, RelayAdded)]
        self.assertEqual(added[-1], third)
        self.assertLess(states.index(lost[0]), len(states) - 1)
        self.assertNotIn("unregister", [e.kind for e in watch.seen])
        yield self.reach(pushed, alice_host)
        yield self.reach(full, alice_host)
        yield daemon.interrupt("TERM")


class FakeDns:
    """Names for the test's relays, answered here: no query leaves the machine."""

    def __init__(self) -> None:
        self.hosts: dict[str, list[str]] = {}
        self.txt: dict[str, list[str]] = {}

    def lookup_host(self, name: str, family: int) -> Deferred[list[str]]:
        return succeed(self.hosts.get(name, []) if family == 4 else [])

    def lookup_txt(self, name: str) -> Deferred[list[str]]:
        if name not in self.txt:
            return fail(LookupError(f"no TXT record at {name}"))
        return succeed(self.txt[name])

    def resolver(self) -> DnsResolver:
        return DnsResolver(self.lookup_host, self.lookup_txt)


class DnsRelayTests(ProcessTestCase):
    timeout = 60
    start_daemon = fleet.FleetTests.start_daemon
    start_relay = fleet.FleetTests.start_relay
    host = fleet.FleetTests.host

    @inlineCallbacks
    def test_relays_named_by_dnsaddr_and_dns4(self):  # type: ignore[no-untyped-def]
        """A relay registered as ``/dnsaddr/fleet.test`` is found through its TXT record
        and ``/dns4`` name; one whose name does not resolve is reported and skipped."""
        daemon, rendezvous = yield self.start_daemon()
        named = ("--namespace", "dns-relays")
        _, address, good = yield self.start_relay(
            rendezvous, *named, "--p2p-announce", "/dnsaddr/fleet.test"
        )
        _, _, bad = yield self.start_relay(
            rendezvous, *named, "--p2p-announce", "/dns4/nowhere.test/tcp/4010"
        )
        port = TCPAddress.parse(address).port
        dns = FakeDns()
        dns.txt["_dnsaddr.fleet.test"] = [
            f"dnsaddr=/dns4/relay-a.test/tcp/{port}/p2p/{bad}",  # another peer's: ignored
            f"dnsaddr=/dns4/relay-a.test/tcp/{port}/p2p/{good}",
        ]
        dns.hosts["relay-a.test"] = ["127.0.0.1"]

        alice_host = self.host()
        alice_id = alice_host.identity.peer_id_text()
        alice_host.set_handler(
            EXCHANGE, lambda: Exchange(b"yes, through another relay", opener=False)
        )
        states = States()
        retrying = states.wait(Retrying, 30)
        alice = yield join(
            reactor, alice_host, TCPAddress.parse(rendezvous), "my-app", lambda e: None,
            "dns-relays", k=2, on_state=states, resolver=dns.resolver(),
        )  # fmt: skip
        self.addCleanup(alice.leave)
        self.assertEqual(
            alice.circuit_addresses,
            [f"/ip4/127.0.0.1/tcp/{port}/p2p/{good}/p2p-circuit/p2p/{alice_id}"],
        )
        unreachable = [s for s in states if isinstance(s, RelayUnreachable)]
        self.assertEqual(
            [(s.relay, s.reason) for s in unreachable], [(bad, "nowhere.test does not resolve")]
        )
        # One relay of the two wanted: more are sought, with backoff.
        more = yield retrying
        self.assertEqual((more.held, more.wanted), (1, 2))
        self.assertEqual(more.reason, f"{bad}: nowhere.test does not resolve")

        carol_host = self.host()
        connection = yield connect_to(reactor, carol_host, alice.circuit_address)
        self.addCleanup(connection.close)
        self.assertEqual(connection.remote_peer_id, alice_host.peer_id)
        # A circuit address naming its relay by DNS is resolved first.
        by_name = alice.circuit_address.replace("/ip4/127.0.0.1/", "/dns4/relay-a.test/")
        other = yield connect_to(reactor, carol_host, by_name, resolver=dns.resolver())
        self.addCleanup(other.close)
        self.assertEqual(other.remote_peer_id, alice_host.peer_id)
        yield alice.leave()
        yield daemon.interrupt("TERM")
