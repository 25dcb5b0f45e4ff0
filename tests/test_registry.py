"""The pure registry: semantics of the seed, ownership, limits, cleanup."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.model import Announcement, Change, Refused, Status
from rendezvous.registry import Registry

from .helpers import peer, tcp_addr


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Change, str, str]] = []

    def announce(self, announcement: Announcement) -> None:
        registration = announcement.registration
        self.seen.append((announcement.change, registration.namespace, registration.peer.id))


class RegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = Registry(
            Limits(
                max_registrations_per_session=3,
                max_subscriptions_per_session=2,
                max_registrations=5,
                max_sessions=4,
            )
        )
        self.a, self.b = Recorder(), Recorder()
        self.session_a = self.registry.open_session(self.a)
        self.session_b = self.registry.open_session(self.b)

    def test_snapshot_then_push_without_echo(self) -> None:
        pa, pb = peer("A", tcp_addr(1)), peer("B", tcp_addr(2))
        self.registry.register(self.session_a, "app", pa)
        self.assertEqual(self.registry.subscribe(self.session_a, "app"), [])
        self.registry.register(self.session_b, "app", pb)
        snapshot = self.registry.subscribe(self.session_b, "app")
        self.assertEqual([r.peer for r in snapshot], [pa])
        self.assertEqual(self.a.seen, [(Change.REGISTER, "app", pb.id)])
        self.assertEqual(self.b.seen, [])

    def test_reregister_replaces_and_is_announced(self) -> None:
        self.registry.subscribe(self.session_b, "app")
        self.registry.register(self.session_a, "app", peer("A", tcp_addr(1)))
        self.registry.register(self.session_a, "app", peer("A", tcp_addr(9)))
        self.assertEqual(len(self.b.seen), 2)
        [only] = self.registry.discover("app", 10)
        self.assertEqual(only.peer.addrs, (tcp_addr(9),))
        self.assertEqual(self.registry.registration_count, 1)

    def test_own_unregister_not_echoed(self) -> None:
        pa = peer("A")
        self.registry.subscribe(self.session_a, "app")
        self.registry.register(self.session_a, "app", pa)
        self.registry.unregister(self.session_a, "app", pa.key)
        self.assertEqual(self.a.seen, [])

    def test_unregister_announced_once_and_unknown_ignored(self) -> None:
        pa = peer("A")
        self.registry.subscribe(self.session_b, "app")
        self.registry.register(self.session_a, "app", pa)
        self.assertTrue(self.registry.unregister(self.session_a, "app", pa.key))
        self.assertFalse(self.registry.unregister(self.session_a, "app", pa.key))
        self.assertEqual([c for c, _, _ in self.b.seen], [Change.REGISTER, Change.UNREGISTER])
        self.assertEqual(self.registry.namespace_count, 1)  # b still subscribes

    def test_close_session_announces_everything(self) -> None:
        self.registry.subscribe(self.session_b, "one")
        self.registry.subscribe(self.session_b, "two")
        self.registry.register(self.session_a, "one", peer("A"))
        self.registry.register(self.session_a, "two", peer("A"))
        self.registry.subscribe(self.session_a, "one")
        self.registry.close_session(self.session_a)
        self.assertEqual(
            [(c, ns) for c, ns, _ in self.b.seen],
            [
                (Change.REGISTER, "one"),
                (Change.REGISTER, "two"),
                (Change.UNREGISTER, "one"),
                (Change.UNREGISTER, "two"),
            ],
        )
        self.assertEqual(self.registry.registration_count, 0)
        self.assertEqual(self.registry.session_count, 1)
        self.registry.close_session(self.session_a)  # twice is harmless
        self.registry.close_session(self.session_b)
        self.assertEqual(self.registry.namespace_count, 0)

    def test_other_session_cannot_take_an_owned_id(self) -> None:
        pa = peer("A")
        self.registry.register(self.session_a, "app", pa)
        for attempt in (
            lambda: self.registry.register(self.session_b, "app", pa),
            lambda: self.registry.register(self.session_b, "elsewhere", pa),
            lambda: self.registry.unregister(self.session_b, "app", pa.key),
        ):
            e = self.assertRaises(Refused, attempt)
            self.assertEqual(e.status, Status.NOT_AUTHORIZED)
        self.registry.close_session(self.session_a)
        self.registry.register(self.session_b, "app", pa)

    def test_ownership_released_when_last_registration_goes(self) -> None:
        pa = peer("A")
        self.registry.register(self.session_a, "app", pa)
        self.assertTrue(self.registry.unregister(self.session_a, "app", pa.key))
        taken = self.registry.register(self.session_b, "app", pa)
        self.assertEqual(taken.peer, pa)
        self.assertEqual([r.peer for r in self.registry.discover("app", 10)], [pa])

    def test_ownership_kept_while_any_registration_of_the_id_remains(self) -> None:
        pa = peer("A")
        for namespace in ("one", "two"):
            self.registry.register(self.session_a, namespace, pa)
        self.registry.subscribe(self.session_a, "two")
        self.registry.unregister(self.session_a, "one", pa.key)
        e = self.assertRaises(Refused, self.registry.register, self.session_b, "one", pa)
        self.assertEqual(e.status, Status.NOT_AUTHORIZED)
        self.registry.register(self.session_a, "two", peer("A", tcp_addr(5)))
        self.assertEqual(self.a.seen, [])  # still its own: not echoed
        self.registry.unregister(self.session_a, "two", pa.key)
        self.registry.register(self.session_b, "one", pa)
        self.registry.register(self.session_b, "two", pa)
        self.assertEqual(self.a.seen, [(Change.REGISTER, "two", pa.id)])

    def test_registrations_share_their_namespace_name(self) -> None:
        first = self.registry.register(self.session_a, "".join(["a", "pp"]), peer("A"))
        second = self.registry.register(self.session_b, "".join(["ap", "p"]), peer("B"))
        self.assertIs(first.namespace, second.namespace)

    def test_authenticated_session_registers_only_itself(self) -> None:
        pa, pb = peer("A"), peer("B")
        watcher = Recorder()
        authenticated = self.registry.open_session(watcher, identity=pa.key)
        self.registry.register(authenticated, "app", pa)
        e = self.assertRaises(Refused, self.registry.register, authenticated, "app", pb)
        self.assertEqual(e.status, Status.NOT_AUTHORIZED)
        self.registry.subscribe(authenticated, "app")
        self.registry.register(self.session_b, "app", pb)
        self.assertEqual(watcher.seen, [(Change.REGISTER, "app", pb.id)])

    def test_session_limits(self) -> None:
        for n in range(3):
            self.registry.register(self.session_a, f"ns{n}", peer("A"))
        e = self.assertRaises(Refused, self.registry.register, self.session_a, "ns4", peer("A"))
        self.assertEqual(e.status, Status.LIMIT_EXCEEDED)
        self.registry.register(self.session_a, "ns0", peer("A", tcp_addr(3)))  # replace is fine
        self.registry.subscribe(self.session_a, "x")
        self.registry.subscribe(self.session_a, "y")
        self.registry.subscribe(self.session_a, "x")  # again: a resync, not a new one
        e = self.assertRaises(Refused, self.registry.subscribe, self.session_a, "z")
        self.assertEqual(e.status, Status.LIMIT_EXCEEDED)

    def test_registry_and_session_caps(self) -> None:
        for n in range(3):
            self.registry.register(self.session_a, "app", peer(f"a{n}"))
        for n in range(2):
            self.registry.register(self.session_b, "app", peer(f"b{n}"))
        third = self.registry.open_session(Recorder())
        e = self.assertRaises(Refused, self.registry.register, third, "app", peer("c"))
        self.assertEqual(e.status, Status.UNAVAILABLE)
        self.registry.open_session(Recorder())
        e = self.assertRaises(Refused, self.registry.open_session, Recorder())
        self.assertEqual(e.status, Status.UNAVAILABLE)

    def test_discover_limit_and_order(self) -> None:
        for n in range(3):
            self.registry.register(self.session_a, "app", peer(f"p{n}"))
        self.assertEqual(
            [r.peer.id for r in self.registry.discover("app", 2)], [peer("p0").id, peer("p1").id]
        )
        self.assertEqual(self.registry.discover("missing", 5), [])
        self.assertEqual(self.registry.namespace_count, 1)

    def test_subscriber_dropped_during_fan_out(self) -> None:
        """A subscriber that closes its session while being told must not upset the others."""
        registry = self.registry

        class Closer(Recorder):
            def announce(self, announcement: Announcement) -> None:
                super().announce(announcement)
                registry.close_session(closer_session)

        closer = Closer()
        closer_session = registry.open_session(closer)
        registry.subscribe(closer_session, "app")
        registry.subscribe(self.session_b, "app")
        registry.register(self.session_a, "app", peer("A"))
        self.assertEqual(len(closer.seen), 1)
        self.assertEqual(len(self.b.seen), 1)
        self.assertEqual(registry.subscription_count, 1)
