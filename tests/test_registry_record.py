"""TTL registrations of peers known by their signed record alone: the registry keeps them
as `RecordRegistration` (80 bytes), which must behave as any registration; and the
per-peer count of TTL registrations, looked up in the namespaces while they are few."""

from __future__ import annotations

import heapq
import operator

from twisted.trial.unittest import SynchronousTestCase

from rendezvous.entry import entry_bytes
from rendezvous.limits import Limits
from rendezvous.model import (
    Change,
    HeldRegistration,
    Peer,
    RecordRegistration,
    Refused,
    Registration,
    Status,
)
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.keys import PrivateKey
from rendezvous.registry import Registry
from rendezvous.registry.expiry import SCAN_NAMESPACES

from .helpers import tcp_addr
from .test_registry import Recorder


def record_peer(n: int) -> Peer:
    """The peer a standard-dialect REGISTER makes: its id's bytes and its sealed record."""
    key = PrivateKey.from_seed(bytes([n]) * 32)
    record = seal_peer_record(key, PeerRecord(key.peer_id(), 1, (tcp_addr(n),)))
    return Peer.from_record(key.peer_id(), record)


class RecordRegistrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = Registry(Limits(max_registrations_per_peer=3))
        self.watcher = Recorder()
        self.registry.subscribe(self.registry.open_session(self.watcher), "app")

    def test_kept_as_a_record_registration(self) -> None:
        a = record_peer(1)
        registration = self.registry.register_ttl(a.key, "app", a, 100.5)
        self.assertIs(type(registration), RecordRegistration)
        self.assertIsInstance(registration, Registration)
        self.assertEqual(registration.namespace, "app")
        self.assertEqual(registration.peer, a)
        self.assertEqual(registration.peer.id, a.id)
        self.assertEqual(registration.peer.addrs, (tcp_addr(1),))
        self.assertEqual(registration.key, a.key)
        self.assertIs(registration.record, a.signed_peer_record)
        self.assertEqual(registration.expires, 100.5)
        self.assertIs(type(registration.expires), float)
        self.assertEqual(registration.seq, self.registry.last_seq)
        self.assertIsNone(registration.holder)
        self.assertTrue(registration)
        self.assertEqual(self.watcher.seen, [(Change.REGISTER, "app", a.id)])
        self.assertEqual(self.registry.discover("app", 10), [registration])

    def test_equal_to_the_same_registration_with_its_peer(self) -> None:
        a = record_peer(1)
        registration = self.registry.register_ttl(a.key, "app", a, 100.0)
        same = Registration("app", a, 100.0, seq=registration.seq)
        self.assertIs(type(same), HeldRegistration)
        self.assertEqual(registration, same)
        self.assertEqual(same, registration)
        self.assertNotEqual(registration, Registration("app", a, 101.0, seq=registration.seq))
        self.assertNotEqual(registration, Registration("other", a, 100.0, seq=registration.seq))
        self.assertNotEqual(registration, 100.0)
        self.assertFalse(registration == 100.0)
        self.assertFalse(operator.eq(100.0, registration))
        self.assertFalse(registration != same)
        self.assertRaises(TypeError, lambda: registration <= same)
        self.assertFalse(registration > same)
        self.assertEqual(repr(registration), repr(same))
        self.assertRaises(TypeError, hash, registration)

    def test_its_live_entry_is_an_explicit_peers(self) -> None:
        a = record_peer(1)
        registration = self.registry.register_ttl(a.key, "app", a, 100.0)
        explicit = Peer(a.id, a.key, a.addrs, a.signed_peer_record)
        self.assertEqual(entry_bytes(registration), entry_bytes(Registration("app", explicit)))
        self.assertIs(registration.wire, entry_bytes(registration))  # made once

    def test_peers_with_explicit_addresses_keep_their_peer(self) -> None:
        a = record_peer(1)
        explicit = Peer(a.id, a.key, (tcp_addr(9),), a.signed_peer_record)
        registration = self.registry.register_ttl(a.key, "app", explicit, 100.0)
        self.assertIs(type(registration), HeldRegistration)
        self.assertIs(registration.peer, explicit)

    def test_ordered_by_expiry_with_either_kind(self) -> None:
        a, b = record_peer(1), record_peer(2)
        first = RecordRegistration("app", a.key, b"x", 5.0, 2)
        held = Registration("app", b, 5.0, seq=3)
        later = RecordRegistration("app", b.key, b"y", 6.0, 4)
        sooner = RecordRegistration("app", a.key, b"z", 4.0, 9)
        self.assertTrue(sooner < first)
        self.assertFalse(first < sooner)
        self.assertTrue(first < held)  # by seq at the same time
        self.assertFalse(held < first)
        self.assertTrue(held < later)
        self.assertTrue(later > held)
        self.assertFalse(first < RecordRegistration("app", b.key, b"w", 5.0, 7))
        heap: list[Registration] = [later, held, first, sooner]
        heapq.heapify(heap)
        order = [heapq.heappop(heap) for _ in range(4)]
        self.assertEqual([r.seq for r in order], [9, 2, 3, 4])

    def test_expiry_in_order_of_expiry_then_registration(self) -> None:
        peers = [record_peer(n) for n in range(1, 40)]
        for p in reversed(peers[1:]):
            self.registry.register_ttl(p.key, "app", p, 50.0)
        self.registry.register_ttl(peers[0].key, "app", peers[0], 40.0)
        self.assertEqual(self.registry.next_expiry(), 40.0)
        ended = self.registry.expire(50.0)
        self.assertEqual([r.peer for r in ended], [peers[0], *reversed(peers[1:])])
        self.assertEqual(self.registry.registration_count, 0)

    def test_ties_of_either_kind_end_in_order_of_registration(self) -> None:
        made = []
        for n in range(1, 30):
            p = record_peer(n)
            if n % 3 == 0:  # a peer with explicit addresses: a HeldRegistration
                p = Peer(p.id, p.key, (tcp_addr(n),), p.signed_peer_record)
            made.append(self.registry.register_ttl(p.key, "app", p, 50.0 + n % 2))
        refreshed = self.registry.register_ttl(made[4].key, "app", made[4].peer, 50.0)
        made.remove(made[4])
        made.append(refreshed)
        ended = self.registry.expire(51.0)
        expected = sorted(made, key=lambda r: (r.expires, r.seq))
        self.assertEqual([r.seq for r in ended], [r.seq for r in expected])


class PerPeerCountTests(SynchronousTestCase):
    """The limit of TTL registrations per peer id, whether the registry counts a peer's
    by looking in the few namespaces that hold any or keeps a count per peer id."""

    LIMIT = SCAN_NAMESPACES + 4

    def setUp(self) -> None:
        self.registry = Registry(Limits(max_registrations_per_peer=self.LIMIT))
        self.a = record_peer(1)

    def register(self, name: str, p: Peer | None = None, expires: float = 100.0) -> Registration:
        p = p or self.a
        return self.registry.register_ttl(p.key, name, p, expires)

    def assert_refused(self, name: str) -> None:
        e = self.assertRaises(Refused, self.register, name)
        self.assertEqual(e.status, Status.LIMIT_EXCEEDED)

    def counting(self) -> bool:
        return self.registry._expiries._per_peer is not None

    def test_few_namespaces(self) -> None:
        registry = self.registry = Registry(Limits(max_registrations_per_peer=3))
        b = record_peer(2)
        for name in ("x", "y", "z"):
            self.register(name)
            self.register(name, b)
        self.assert_refused("w")
        self.register("x")  # a refresh is no new registration
        self.assertFalse(self.counting())
        registry.unregister(registry.open_session(Recorder(), self.a.key), "y", self.a.key)
        self.register("w")
        self.assert_refused("v")

    def test_a_live_registration_replaced_counts_as_a_new_one(self) -> None:
        registry = self.registry = Registry(Limits(max_registrations_per_peer=2))
        session = registry.open_session(Recorder(), self.a.key)
        registry.register(session, "live", self.a)
        self.register("x")
        self.register("live")  # the live one is replaced by a TTL one: now two
        self.assert_refused("y")

    def test_many_namespaces_then_few_again(self) -> None:
        b = record_peer(2)
        names = [f"ns-{i}" for i in range(self.LIMIT)]
        for i, name in enumerate(names):
            self.register(name, expires=100.0 + i)
            self.assertEqual(self.counting(), i >= SCAN_NAMESPACES)
        self.register(names[0], b)
        self.assert_refused("extra")
        self.register(names[0], expires=500.0)  # a refresh
        # Expire all but a's refreshed one: few namespaces again.
        self.registry.expire(100.0 + self.LIMIT)
        self.assertEqual(self.registry.registration_count, 1)
        self.assertTrue(self.counting())  # kept while TTL registrations are held
        self.registry.expire(1000.0)
        self.assertFalse(self.counting())
        for name in names[1:]:
            self.register(name)
        self.register(names[0])
        self.assert_refused("extra")
        self.assertTrue(self.counting())
