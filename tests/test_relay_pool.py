"""`RelayPool`, the policy of `fleet.join`, on fakes and a `Clock`: ranking, ``k``
reservations, renewal, failover, refusals, backoff, and that nothing is left held."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rendezvous.addrs import multiaddr_from_text, multiaddr_to_text
from rendezvous.client.live import PeerEntry
from rendezvous.client.reconnect import Backoff
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress
from rendezvous.peerid import peer_id_to_text
from rendezvous.relay import codec
from rendezvous.relay.client import RelayError, RelayRefused, ReservationInfo
from rendezvous.relay.fleet import Membership
from rendezvous.relay.pool import (
    AddressesChanged,
    Dialled,
    HeldRelay,
    PoolEvent,
    RelayAdded,
    RelayDeclined,
    RelayLost,
    RelayPool,
    RelayUnreachable,
    Retrying,
    RoundFailed,
    describe_event,
)
from rendezvous.relay.resolve import Target, Unresolvable

ME = PrivateKey.generate().peer_id_text()


@dataclass(eq=False)
class FakeLink:
    relay: FakeRelay
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@dataclass(eq=False)
class FakeRelay:
    name: str
    number: int
    rtt: float
    peer_id: str = ""
    refuse: int | None = None
    """Answer RESERVE with this Status."""
    broken: bool = False
    """Dial fails (gone)."""
    unresolvable: bool = False
    ttl: int = 3600
    load: float | None = None

    def __post_init__(self) -> None:
        self.peer_id = PrivateKey.generate().peer_id_text()

    def entry(self) -> PeerEntry:
        addr = multiaddr_from_text(f"/ip4/10.0.0.{self.number}/tcp/4001")
        return PeerEntry("rendezvous/relays", self.peer_id, (addr,))


class Net:
    """The network the pool sees: relays to DISCOVER, dial and reserve on."""

    def __init__(self, clock: Clock, *relays: FakeRelay) -> None:
        self.clock = clock
        self.relays = list(relays)
        self.links: list[FakeLink] = []
        self.reserves: list[str] = []
        self.published: list[tuple[str, ...]] = []
        self.discover_fails = False

    def by_id(self, peer_id: str) -> FakeRelay:
        (relay,) = [r for r in self.relays if r.peer_id == peer_id]
        return relay

    def name(self, peer_id: str) -> str:
        return self.by_id(peer_id).name

    def discover(self) -> Deferred[list[PeerEntry]]:
        if self.discover_fails:
            return fail(ConnectionError("the daemon is gone"))
        return succeed([relay.entry() for relay in self.relays])

    def resolve(self, address: str, peer_id: str) -> Deferred[list[Target]]:
        if self.by_id(peer_id).unresolvable:
            return fail(Unresolvable("relay.example does not resolve"))
        return succeed([Target(TCPAddress.parse(f"{address}/p2p/{peer_id}"))])

    def dial(self, target: Target) -> Deferred[Dialled]:
        relay = self.by_id(peer_id_to_text(target.address.peer_id or b""))
        if relay.broken:
            return fail(ConnectionRefusedError("connection refused"))
        link = FakeLink(relay)
        self.links.append(link)
        return succeed(Dialled(link, relay.rtt))

    def reserve(self, link: FakeLink) -> Deferred[ReservationInfo]:  # type: ignore[override]
        relay = link.relay
        self.reserves.append(relay.name)
        if link.closed or relay.broken:
            return fail(RelayError("the connection closed"))
        if relay.refuse is not None:
            return fail(RelayRefused(relay.refuse))
        return succeed(ReservationInfo(int(self.clock.seconds()) + relay.ttl, (), None, None))

    def publish(self, held: list[HeldRelay]) -> Deferred[Sequence[str]]:
        names = tuple(self.name(relay.peer_id) for relay in held)
        self.published.append(names)
        return succeed([f"circuit via {name}" for name in names])

    def open_links(self) -> list[str]:
        return sorted(link.relay.name for link in self.links if not link.closed)


def make_pool(
    clock: Clock, events: list[PoolEvent], *relays: FakeRelay, k: int = 2, **kwargs: object
) -> tuple[RelayPool, Net]:
    """A pool on ``relays`` (fakes); its events go to ``events``; backoff draws at 1.0."""
    net = Net(clock, *relays)
    pool = RelayPool(
        clock,
        ME,
        discover=net.discover,
        resolve=net.resolve,
        dial=net.dial,
        reserve=net.reserve,  # type: ignore[arg-type]
        publish=net.publish,
        on_state=events.append,
        k=k,
        backoff=Backoff(initial=0.5, cap=8.0, random=lambda: 1.0),
        load=lambda entry: net.by_id(entry.peer_id).load,
        **kwargs,  # type: ignore[arg-type]
    )
    return pool, net


class PoolTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.events: list[PoolEvent] = []

    def make(self, *relays: FakeRelay, k: int = 2, **kwargs: object) -> tuple[RelayPool, Net]:
        return make_pool(self.clock, self.events, *relays, k=k, **kwargs)

    def names(self, pool: RelayPool, net: Net) -> list[str]:
        return [net.name(relay.peer_id) for relay in pool.held]

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]

    def test_ranks_by_round_trip_and_holds_k(self) -> None:
        pool, net = self.make(
            FakeRelay("far", 1, 0.080), FakeRelay("near", 2, 0.002), FakeRelay("mid", 3, 0.030)
        )
        self.successResultOf(pool.first_round())
        self.assertEqual(self.names(pool, net), ["near", "mid"])
        self.assertEqual(net.reserves, ["near", "mid"])
        self.assertEqual(net.open_links(), ["mid", "near"])  # "far" was hung up
        added = [e for e in self.events if isinstance(e, RelayAdded)]
        self.assertEqual([net.name(e.relay) for e in added], ["near", "mid"])
        self.assertEqual(added[0].rtt, 0.002)
        self.successResultOf(pool.publish_now())
        self.assertEqual(net.published, [("near", "mid")])
        self.assertEqual(self.events[-1], AddressesChanged(("circuit via near", "circuit via mid")))

    def test_load_decides_between_equal_round_trips(self) -> None:
        pool, net = self.make(
            FakeRelay("busy", 1, 0.0031, load=0.9),
            FakeRelay("idle", 2, 0.0042, load=0.1),
            FakeRelay("slow", 3, 0.200, load=0.0),
            k=1,
        )
        self.successResultOf(pool.first_round())
        self.assertEqual(self.names(pool, net), ["idle"])

    def test_a_refusal_moves_on_to_the_next(self) -> None:
        pool, net = self.make(
            FakeRelay("full", 1, 0.001, refuse=codec.RESERVATION_REFUSED),
            FakeRelay("b", 2, 0.010),
            FakeRelay("c", 3, 0.020),
        )
        self.assertEqual(self.successResultOf(pool.first_round()), "")
        self.assertEqual(self.names(pool, net), ["b", "c"])
        self.assertEqual(net.open_links(), ["b", "c"])  # the refusing relay hung up
        declined = self.events[0]
        assert isinstance(declined, RelayDeclined)
        self.assertEqual(
            describe_event(declined),
            f"relay {declined.relay} refused the reservation: RESERVATION_REFUSED",
        )

    def test_first_round_failures_are_typed_and_leave_nothing(self) -> None:
        pool, net = self.make(k=1)
        failure = self.failureResultOf(pool.first_round(), RoundFailed)
        self.assertEqual(str(failure.value), "none registered")

        pool, net = self.make(
            FakeRelay("a", 1, 0.001, refuse=codec.PERMISSION_DENIED),
            FakeRelay("b", 2, 0.002, refuse=codec.RESERVATION_REFUSED),
        )
        failure = self.failureResultOf(pool.first_round(), RoundFailed)
        self.assertEqual(
            sorted((net.name(r), s) for r, s in failure.value.refusals),
            [("a", codec.PERMISSION_DENIED), ("b", codec.RESERVATION_REFUSED)],
        )
        self.assertEqual(failure.value.attempts, ())
        self.assertEqual(net.open_links(), [])
        self.assertEqual(pool.held, [])

        dns = FakeRelay("dns", 1, 0.001, unresolvable=True)
        pool, net = self.make(dns, FakeRelay("gone", 2, 0.001, broken=True))
        failure = self.failureResultOf(pool.first_round(), RoundFailed)
        self.assertIn(f"{dns.peer_id}: relay.example does not resolve", str(failure.value))
        self.assertIn("connection refused", str(failure.value))
        unreachable = [e for e in self.events if isinstance(e, RelayUnreachable)]
        self.assertEqual(len(unreachable), 2)
        self.assertEqual(
            describe_event(unreachable[0]),
            f"cannot use relay {dns.peer_id}: relay.example does not resolve",
        )

    def test_fewer_than_k_is_not_a_failure(self) -> None:
        pool, net = self.make(FakeRelay("only", 1, 0.001), k=3)
        self.assertEqual(self.successResultOf(pool.first_round()), "no other relay")
        self.assertEqual(self.names(pool, net), ["only"])

    def test_failover_publishes_the_survivor_then_the_replacement(self) -> None:
        a, b, c = FakeRelay("a", 1, 0.001), FakeRelay("b", 2, 0.010), FakeRelay("c", 3, 0.020)
        pool, net = self.make(a, b, c)
        self.successResultOf(pool.first_round())
        self.successResultOf(pool.publish_now())
        pool.start()
        del self.events[:]
        in_use = pool.held[0]
        a.broken = True  # SIGKILLed: its connection closes, it is still registered
        pool.connection_lost(in_use.connection)
        self.assertEqual(net.published, [("a", "b"), ("b",), ("b", "c")])
        self.assertEqual(self.names(pool, net), ["b", "c"])
        self.assertEqual(
            self.kinds(),
            ["RelayLost", "AddressesChanged", "RelayUnreachable", "RelayAdded", "AddressesChanged"],
        )
        lost = self.events[0]
        assert isinstance(lost, RelayLost)
        self.assertEqual((lost.relay, lost.reason), (a.peer_id, "connection lost"))
        self.assertEqual(describe_event(lost), f"lost relay {a.peer_id}: connection lost")
        self.assertEqual(net.open_links(), ["b", "c"])

    def test_k1_failover_registers_once_without_an_unregistration(self) -> None:
        a, b = FakeRelay("a", 1, 0.001), FakeRelay("b", 2, 0.010)
        pool, net = self.make(a, b, k=1)
        self.successResultOf(pool.first_round())
        self.successResultOf(pool.publish_now())
        pool.start()
        a.broken = True
        pool.connection_lost(pool.held[0].connection)
        self.assertEqual(net.published, [("a",), ("b",)])

    def test_renewal_before_expiry_and_its_failure(self) -> None:
        a, b, c = (
            FakeRelay("a", 1, 0.001, ttl=20),
            FakeRelay("b", 2, 0.010, ttl=20),
            FakeRelay("c", 3, 0.020, ttl=20),
        )
        pool, net = self.make(a, b, c, renewal=4.0)
        self.successResultOf(pool.first_round())
        self.successResultOf(pool.publish_now())
        pool.start()
        self.assertEqual(net.reserves, ["a", "b"])
        self.clock.advance(4.0)
        self.assertEqual(net.reserves, ["a", "b", "a", "b"])
        self.assertEqual([r.renewals for r in pool.held], [1, 1])
        b.refuse = codec.RESERVATION_REFUSED  # b stops serving us: its renewal fails
        self.clock.advance(4.0)
        self.assertEqual(self.names(pool, net), ["a", "c"])
        lost = [e for e in self.events if isinstance(e, RelayLost)]
        self.assertEqual(
            [(e.relay, e.reason) for e in lost],
            [(b.peer_id, "renewal failed: RESERVATION_REFUSED")],
        )
        self.assertEqual(net.published[-1], ("a", "c"))
        self.assertEqual(net.open_links(), ["a", "c"])

    def test_without_renewal_option_renews_at_three_quarters(self) -> None:
        pool, net = self.make(FakeRelay("a", 1, 0.001, ttl=3600), k=1)
        self.successResultOf(pool.first_round())
        pool.start()
        self.clock.advance(2699)
        self.assertEqual(net.reserves, ["a"])
        self.clock.advance(1)
        self.assertEqual(net.reserves, ["a", "a"])

    def test_every_relay_gone_unregisters_and_retries_with_capped_backoff(self) -> None:
        a = FakeRelay("a", 1, 0.001)
        pool, net = self.make(a, k=1)
        self.successResultOf(pool.first_round())
        self.successResultOf(pool.publish_now())
        pool.start()
        del self.events[:]
        a.broken = True
        pool.connection_lost(pool.held[0].connection)
        self.assertEqual(net.published, [("a",), ()])  # nothing left registered
        self.assertEqual(
            self.kinds(), ["RelayLost", "RelayUnreachable", "AddressesChanged", "Retrying"]
        )
        self.assertEqual(self.events[2], AddressesChanged(()))
        self.assertEqual(
            describe_event(self.events[2]), "unregistered: no relay holds a reservation for us"
        )
        retries: list[float] = []
        for _ in range(7):
            retry = [e for e in self.events if isinstance(e, Retrying)][-1]
            retries.append(retry.retry_in)
            self.clock.advance(retry.retry_in)
        # Full jitter drawn at 1.0: doubling windows, capped at 8 s, never longer than
        # the outage so far (0, 0.5, 1, 2, 4, 8, 16 s in).
        self.assertEqual(retries, [0.5, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0])
        # The relay's trouble was told once, not once per round.
        self.assertEqual(self.kinds().count("RelayUnreachable"), 1)
        last = [e for e in self.events if isinstance(e, Retrying)][-1]
        self.assertEqual(last.held, 0)
        self.assertIn("connection refused", last.reason)
        self.assertTrue(describe_event(last).startswith("no relay: "))
        self.assertTrue(describe_event(last).endswith("; retrying in 8.0 s"))
        self.assertEqual(net.open_links(), [])

        a.broken = False  # back: the next retry holds it and registers again
        self.clock.advance(8.0)
        self.assertEqual(self.names(pool, net), ["a"])
        self.assertEqual(net.published[-1], ("a",))
        self.assertIsInstance(self.events[-1], AddressesChanged)
        # The backoff starts again from its beginning after a success.
        self.assertEqual(pool.backoff.attempts, 0)

    def test_discover_failing_keeps_what_is_held(self) -> None:
        a, b = FakeRelay("a", 1, 0.001), FakeRelay("b", 2, 0.010)
        pool, net = self.make(a, b, FakeRelay("c", 3, 0.02))
        self.successResultOf(pool.first_round())
        self.successResultOf(pool.publish_now())
        pool.start()
        net.discover_fails = True
        pool.connection_lost(pool.held[0].connection)
        self.assertEqual(self.names(pool, net), ["b"])
        retry = self.events[-1]
        assert isinstance(retry, Retrying)
        self.assertEqual((retry.held, retry.wanted), (1, 2))
        self.assertEqual(retry.reason, "DISCOVER failed: the daemon is gone")
        self.assertEqual(
            describe_event(retry),
            "holding 1 of 2 relays: DISCOVER failed: the daemon is gone; retrying in 0.5 s",
        )

    def test_stop_hangs_up_and_ends_renewals_and_retries(self) -> None:
        pool, net = self.make(FakeRelay("a", 1, 0.001), FakeRelay("b", 2, 0.01), k=3)
        self.successResultOf(pool.first_round())
        pool.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 3)  # two renewals, one retry
        pool.stop()
        self.assertEqual(pool.held, [])
        self.assertEqual(net.open_links(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        pool.connection_lost(object())  # nothing happens any more

    def test_stop_during_a_round_keeps_nothing(self) -> None:
        net_reserve: list[Deferred[ReservationInfo]] = []
        pool, net = self.make(FakeRelay("a", 1, 0.001), k=1)

        def slow_reserve(link: FakeLink) -> Deferred[ReservationInfo]:
            d: Deferred[ReservationInfo] = Deferred()
            net_reserve.append(d)
            return d

        pool.reserve = slow_reserve  # type: ignore[assignment]
        round_ = pool.first_round()
        pool.stop()
        net_reserve[0].callback(ReservationInfo(int(self.clock.seconds()) + 60, (), None, None))
        self.failureResultOf(round_, RoundFailed)
        self.assertEqual(pool.held, [])
        self.assertEqual(net.open_links(), [])

    def test_k_must_be_positive(self) -> None:
        with self.assertRaises(ValueError):
            self.make(k=0)

    def test_describe_added(self) -> None:
        event = RelayAdded("12D3KooWx", "/ip4/10.0.0.1/tcp/4001", 0.0123)
        self.assertEqual(
            describe_event(event),
            "reserved on relay 12D3KooWx at /ip4/10.0.0.1/tcp/4001 (round trip 12 ms)",
        )
        self.assertEqual(describe_event(AddressesChanged(("/x", "/y"))), "registered at /x /y")


class FakeSession:
    """The live session `Membership` registers through."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...], int | None]] = []

    def register(
        self, namespace: str, peer_id: str, addrs: tuple[bytes, ...], record: bytes
    ) -> Deferred[None]:
        texts = tuple(multiaddr_to_text(a) for a in addrs)
        opened, _ = open_peer_record(record)
        assert peer_id == peer_id_to_text(opened.peer_id)
        assert tuple(multiaddr_to_text(a) for a in opened.addrs) == texts
        self.calls.append(("register", texts, opened.seq))
        return succeed(None)

    def unregister(self, namespace: str, peer_id: str) -> Deferred[None]:
        self.calls.append(("unregister", (), None))
        return succeed(None)


class MembershipPublishTests(TestCase):
    """What `fleet.join` registers whenever the relays held change."""

    def test_registers_every_circuit_best_first_then_unregisters(self) -> None:
        clock = Clock()
        host = Host(PrivateKey.generate(), clock)
        me = host.identity.peer_id_text()
        session = FakeSession()
        pool, net = make_pool(clock, [], FakeRelay("a", 1, 0.001), FakeRelay("b", 2, 0.010))
        membership = Membership("my-app", me, session, pool, host)  # type: ignore[arg-type]
        pool.publish = membership._publish
        self.successResultOf(pool.first_round())
        self.successResultOf(pool.publish_now())
        a, b = (relay.peer_id for relay in pool.held)
        expected = tuple(
            f"/ip4/10.0.0.{n}/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{me}"
            for n, relay in ((1, a), (2, b))
        )
        self.assertEqual(membership.circuit_addresses, list(expected))
        self.assertEqual(membership.circuit_address, expected[0])
        self.assertEqual(peer_id_to_text(membership.relay.peer_id), a)  # type: ignore[union-attr]
        pool.running = True
        net.by_id(a).broken = True
        pool.connection_lost(pool.held[0].connection)  # the clock did not move
        net.by_id(b).broken = True
        pool.connection_lost(pool.held[0].connection)
        kinds = [call[0] for call in session.calls]
        self.assertEqual(kinds[:2], ["register", "register"])
        self.assertEqual(session.calls[0][1], expected)
        self.assertEqual(session.calls[1][1], expected[1:])
        self.assertGreater(session.calls[1][2], session.calls[0][2])  # type: ignore[operator]
        self.assertEqual(kinds[-1], "unregister")
        self.assertEqual((membership.circuit_address, membership.relay), ("", None))
        self.assertIsNone(membership.reservation)
        pool.stop()
