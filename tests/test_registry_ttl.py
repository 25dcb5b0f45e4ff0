"""TTL registrations in the pure registry, and their expiry by the memory store's clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.model import Change, Peer, Refused, Registration, Status
from rendezvous.registry import Registry
from rendezvous.store.memory import MemoryStore

from .helpers import peer, tcp_addr
from .test_registry import Recorder


def signed(name: str, *addrs: bytes) -> Peer:
    """A peer standing for one with a signed record (the registry never opens it)."""
    p = peer(name, *addrs)
    p.signed_peer_record = b"record of " + name.encode()
    return p


class RegistryTTLTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = Registry(Limits(max_registrations_per_peer=2, max_registrations=4))
        self.watcher = Recorder()
        self.watching = self.registry.open_session(self.watcher)
        self.registry.subscribe(self.watching, "app")

    def test_register_announce_and_expire(self) -> None:
        a = signed("A", tcp_addr(1))
        registration = self.registry.register_ttl(a.key, "app", a, 100.0)
        self.assertEqual(registration.expires, 100.0)
        self.assertEqual(self.registry.next_expiry(), 100.0)
        self.assertEqual(self.registry.expire(99.9), [])
        [gone] = self.registry.expire(100.0)
        self.assertIs(gone, registration)
        self.assertEqual(
            self.watcher.seen, [(Change.REGISTER, "app", a.id), (Change.UNREGISTER, "app", a.id)]
        )
        self.assertIsNone(self.registry.next_expiry())
        self.assertEqual(self.registry.registration_count, 0)

    def test_only_the_authenticated_id(self) -> None:
        a = signed("A")
        e = self.assertRaises(Refused, self.registry.register_ttl, b"other", "app", a, 1.0)
        self.assertEqual(e.status, Status.NOT_AUTHORIZED)

    def test_reregister_replaces_and_moves_the_expiry(self) -> None:
        a = signed("A", tcp_addr(1))
        first = self.registry.register_ttl(a.key, "app", a, 10.0)
        second = self.registry.register_ttl(a.key, "app", signed("A", tcp_addr(2)), 50.0)
        self.assertGreater(second.seq, first.seq)
        self.assertEqual(self.registry.registration_count, 1)
        self.assertEqual(self.registry.next_expiry(), 50.0)
        self.assertEqual(self.registry.expire(10.0), [])
        self.assertEqual(self.registry.discover("app", 10), [second])

    def test_per_peer_and_total_limits(self) -> None:
        a = signed("A")
        self.registry.register_ttl(a.key, "one", a, 10.0)
        self.registry.register_ttl(a.key, "two", a, 10.0)
        self.registry.register_ttl(a.key, "two", a, 20.0)  # a replacement is no new one
        e = self.assertRaises(Refused, self.registry.register_ttl, a.key, "three", a, 10.0)
        self.assertEqual(e.status, Status.LIMIT_EXCEEDED)
        for name in ("B", "C"):
            p = signed(name)
            self.registry.register_ttl(p.key, "x", p, 10.0)
        d = signed("D")
        e = self.assertRaises(Refused, self.registry.register_ttl, d.key, "x", d, 10.0)
        self.assertEqual(e.status, Status.UNAVAILABLE)

    def test_unregister_by_the_authenticated_session(self) -> None:
        a = signed("A")
        self.registry.register_ttl(a.key, "app", a, 10.0)
        stranger = self.registry.open_session(Recorder(), b"someone else")
        self.assertRaises(Refused, self.registry.unregister, stranger, "app", a.key)
        owner = self.registry.open_session(Recorder(), a.key)
        self.assertTrue(self.registry.unregister(owner, "app", a.key))
        self.assertEqual(self.watcher.seen[-1], (Change.UNREGISTER, "app", a.id))
        self.assertIsNone(self.registry.next_expiry())

    def test_the_authenticated_id_unregisters_what_any_of_its_sessions_holds(self) -> None:
        a = signed("A")
        live_a = self.registry.open_session(Recorder(), a.key)
        self.registry.register(live_a, "app", peer("A"))
        standard_a = self.registry.open_session(Recorder(), a.key)
        self.assertTrue(self.registry.unregister(standard_a, "app", a.key))
        self.assertEqual(self.registry.discover("app", 10), [])
        self.assertEqual(live_a.registrations, [])
        self.assertFalse(self.registry.unregister(standard_a, "app", a.key))

    def test_live_and_ttl_registrations_of_one_id_replace_each_other(self) -> None:
        a = signed("A")
        live_a = self.registry.open_session(Recorder(), a.key)
        self.registry.register(live_a, "app", peer("A", tcp_addr(1)))
        ttl = self.registry.register_ttl(a.key, "app", a, 10.0)
        self.assertEqual(self.registry.discover("app", 10), [ttl])
        self.registry.close_session(live_a)  # no longer its registration: it stays
        self.assertEqual(self.registry.discover("app", 10), [ttl])
        again = self.registry.open_session(Recorder(), a.key)
        live = self.registry.register(again, "app", peer("A", tcp_addr(2)))
        self.assertEqual(self.registry.discover("app", 10), [live])
        self.assertEqual(self.registry.expire(10.0), [])
        self.assertEqual(self.registry.registration_count, 2 - 1)
        raw = self.registry.open_session(Recorder())
        b = signed("B")
        self.registry.register_ttl(b.key, "app", b, 10.0)
        e = self.assertRaises(Refused, self.registry.register, raw, "app", peer("B"))
        self.assertEqual(e.status, Status.NOT_AUTHORIZED)

    def test_who_holds_each_registration(self) -> None:
        a = signed("A")
        live_a = self.registry.open_session(Recorder(), a.key)
        live = self.registry.register(live_a, "app", peer("A", tcp_addr(1)))
        self.assertIs(live.holder, live_a)
        again = self.registry.register(live_a, "app", peer("A", tcp_addr(2)))
        self.assertIs(again.holder, live_a)
        self.assertIsNone(live.holder)  # replaced: it refers to no session any more
        ttl = self.registry.register_ttl(a.key, "app", a, 10.0)
        self.assertIsNone(ttl.holder)
        self.assertIsNone(again.holder)
        back = self.registry.register(live_a, "app", peer("A", tcp_addr(3)))
        self.registry.close_session(live_a)
        self.assertIsNone(back.holder)

    def test_equal_expiries_end_in_order_of_registration(self) -> None:
        registry = Registry()
        peers = [signed(name) for name in "CAB"]
        made = [registry.register_ttl(p.key, "app", p, 10.0) for p in peers]
        self.assertEqual(registry.next_expiry(), 10.0)
        self.assertEqual(registry.expire(10.0), made)

    def test_discover_since_pages_in_order_of_change(self) -> None:
        peers = [signed(name) for name in "ABC"]
        for p in peers:
            self.registry.register_ttl(p.key, "app" if p.id != peers[1].id else "other", p, 9.0)
        unsigned_session = self.registry.open_session(Recorder(), peer("U").key)
        self.registry.register(unsigned_session, "app", peer("U"))
        everything = self.registry.discover_since(None, 0, 10, signed_only=True)
        self.assertEqual([r.peer.id for r in everything], [p.id for p in peers])
        first = self.registry.discover_since("app", 0, 1, signed_only=True)
        self.assertEqual([r.peer.id for r in first], [peers[0].id])
        rest = self.registry.discover_since("app", first[-1].seq, 10)
        self.assertEqual([r.peer.id for r in rest], [peers[2].id, peer("U").id])
        self.registry.register_ttl(peers[0].key, "app", peers[0], 20.0)
        new = self.registry.discover_since("app", rest[-1].seq, 10)
        self.assertEqual([r.peer.id for r in new], [peers[0].id])
        self.assertEqual(self.registry.last_seq, new[-1].seq)

    def test_refreshes_leave_no_pile_of_stale_expiries(self) -> None:
        a, b = signed("A"), signed("B")
        self.registry.register_ttl(b.key, "app", b, 5_000.0)
        for n in range(1_000):
            self.registry.register_ttl(a.key, "app", a, 1_000.0 + n)
            self.assertLessEqual(len(self.registry._expiries.heap), 2 * 2 + 64 + 1)
        self.assertEqual(self.registry.next_expiry(), 1_999.0)
        self.assertEqual(self.registry.expire(1_998.0), [])
        [gone] = self.registry.expire(1_999.0)
        self.assertEqual(gone.peer.id, a.id)
        self.assertEqual(self.registry.next_expiry(), 5_000.0)
        self.assertEqual([r.peer.id for r in self.registry.expire(5_000.0)], [b.id])
        self.assertIsNone(self.registry.next_expiry())


class Answers:
    """A standard client that records what the store answers."""

    def __init__(self) -> None:
        self.made: list[Registration] = []
        self.refusals: list[Refused] = []

    def announce(self, announcement: object) -> None:
        pass

    def snapshot(self, namespace: str, registrations: list[Registration]) -> None:
        pass

    def discovered(self, request_id: object, namespace: str, found: list[Registration]) -> None:
        pass

    def refused(self, request_id: object, refusal: Refused) -> None:
        self.refusals.append(refusal)

    def registered(self, request_id: object, registration: Registration) -> None:
        self.made.append(registration)


class MemoryStoreExpiryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(Limits(), self.clock)
        self.watcher = Recorder()
        watching = self.store.open_session(self.watcher)  # type: ignore[arg-type]
        self.store.registry.subscribe(watching, "app")

    def register(self, name: str, ttl: int) -> Answers:
        p = signed(name)
        answers = Answers()
        session = self.store.open_session(answers, p.key)  # type: ignore[arg-type]
        self.store.register_ttl(session, "app", p, ttl, 1)
        return answers

    def test_expiry_is_scheduled_on_the_clock(self) -> None:
        a = self.register("A", 10)
        [registration] = a.made
        self.assertEqual(registration.expires, 10.0)
        self.register("B", 5)
        self.clock.advance(5)
        self.assertEqual(
            [c for c, _, _ in self.watcher.seen], [Change.REGISTER] * 2 + [Change.UNREGISTER]
        )
        self.clock.advance(5)
        self.assertEqual(self.watcher.seen[-1][0], Change.UNREGISTER)
        self.assertEqual(self.store.stats().registrations, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_later_expiries_keep_the_pending_call(self) -> None:
        """Even on a clock that moves between two readings (a real one): refreshes
        with later expiries must not cancel and make a delayed call every time."""
        clock = self.clock
        read = clock.seconds

        def moving() -> float:
            clock.rightNow += 0.000001
            return read()

        clock.seconds = moving  # type: ignore[method-assign]
        self.register("A", 10)
        [first] = clock.getDelayedCalls()
        for name in "BCD":
            self.register(name, 20)
        self.assertEqual(clock.getDelayedCalls(), [first])

    def test_stop_cancels_the_timer(self) -> None:
        self.register("A", 10)
        self.store.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_session_without_identity_cannot(self) -> None:
        answers = Answers()
        session = self.store.open_session(answers)  # type: ignore[arg-type]
        self.store.register_ttl(session, "app", signed("A"), 10, 1)
        self.assertEqual([r.status for r in answers.refusals], [Status.NOT_AUTHORIZED])
