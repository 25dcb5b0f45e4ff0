"""`Registry.discover_since` against a naive model, and the change index under it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.model import Peer, Refused, Registration
from rendezvous.registry import Registry, Session
from rendezvous.registry.changes import COMPACT_AFTER, Changes

from .helpers import peer, tcp_addr
from .test_registry import Recorder

NAMES = [f"P{i}" for i in range(12)]
NAMESPACES = ["a", "b"]


def make_peer(index: int, signed: bool, version: int = 0) -> Peer:
    p = peer(NAMES[index], tcp_addr(1 + version % 200))
    if signed:
        p.signed_peer_record = b"record %d" % version
    return p


class Model:
    """What should be held: (namespace, key) -> (registration, holding session or None)."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, bytes], tuple[Registration, Session | None]] = {}

    def put(self, registration: Registration, holder: Session | None) -> None:
        self.held[(registration.namespace, registration.peer.key)] = (registration, holder)

    def drop_session(self, session: Session) -> None:
        for slot, (_, holder) in list(self.held.items()):
            if holder is session:
                del self.held[slot]

    def discover_since(
        self, namespace: str | None, after: int, limit: int, signed_only: bool
    ) -> list[Registration]:
        found = sorted(
            (
                registration
                for registration, _ in self.held.values()
                if (namespace is None or registration.namespace == namespace)
                and registration.seq > after
                and (not signed_only or registration.peer.signed_peer_record is not None)
            ),
            key=lambda registration: registration.seq,
        )
        return found[: max(0, limit)]


def session_kind(slot: int) -> bytes | None:
    """Slots 0 and 1 are libp2p sessions of P0 and P1; 2 and 3 are anonymous."""
    return peer(NAMES[slot]).key if slot < 2 else None


namespace_or_all = st.sampled_from([*NAMESPACES, None])
peer_index = st.integers(0, len(NAMES) - 1)
register = st.tuples(
    st.just("register"), st.integers(0, 3), st.sampled_from(NAMESPACES), peer_index, st.booleans()
)
register_ttl = st.tuples(
    st.just("ttl"), st.sampled_from(NAMESPACES), peer_index, st.booleans(), st.integers(1, 40)
)
unregister = st.tuples(
    st.just("unregister"), st.integers(0, 3), st.sampled_from(NAMESPACES), peer_index
)
discover = st.tuples(
    st.just("discover"), namespace_or_all, st.integers(-1, 120), st.integers(-1, 8), st.booleans()
)
# Mostly (re)registrations, so that namespaces grow and refreshes leave runs of dead ones.
operations = st.lists(
    st.one_of(
        register,
        register_ttl,
        register_ttl,
        register_ttl,
        unregister,
        st.tuples(st.just("expire"), st.integers(0, 4)),
        st.tuples(st.just("close"), st.integers(0, 3)),
        discover,
    ),
    max_size=200,
)


class DiscoverSinceModelTests(SynchronousTestCase):
    @settings(max_examples=300)
    @given(operations)
    def test_matches_the_naive_model(self, ops: list[tuple]) -> None:
        registry = Registry()
        model = Model()
        sessions = [registry.open_session(Recorder(), session_kind(i)) for i in range(4)]
        now = 0.0
        for version, op in enumerate(ops):
            kind = op[0]
            try:
                if kind == "register":
                    _, slot, namespace, index, signed = op
                    registration = registry.register(
                        sessions[slot], namespace, make_peer(index, signed, version)
                    )
                    model.put(registration, sessions[slot])
                elif kind == "ttl":
                    _, namespace, index, signed, ttl = op
                    p = make_peer(index, signed, version)
                    registration = registry.register_ttl(p.key, namespace, p, now + ttl)
                    model.put(registration, None)
                elif kind == "unregister":
                    _, slot, namespace, index = op
                    key = peer(NAMES[index]).key
                    if registry.unregister(sessions[slot], namespace, key):
                        del model.held[(namespace, key)]
                elif kind == "expire":
                    now += op[1]
                    for gone in registry.expire(now):
                        del model.held[(gone.namespace, gone.peer.key)]
                elif kind == "close":
                    slot = op[1]
                    registry.close_session(sessions[slot])
                    model.drop_session(sessions[slot])
                    sessions[slot] = registry.open_session(Recorder(), session_kind(slot))
                else:
                    _, namespace, after, limit, signed_only = op
                    self.assertEqual(
                        registry.discover_since(namespace, after, limit, signed_only=signed_only),
                        model.discover_since(namespace, after, limit, signed_only),
                    )
            except Refused:
                pass
            self.assertEqual(registry.registration_count, len(model.held))
            for namespace in [*NAMESPACES, None]:
                for signed_only in (False, True):
                    for after in (0, registry.last_seq - 3):
                        for limit in (2, 100):
                            self.assertEqual(
                                registry.discover_since(
                                    namespace, after, limit, signed_only=signed_only
                                ),
                                model.discover_since(namespace, after, limit, signed_only),
                            )


class DiscoverSinceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = Registry()

    def ttl(self, name: str, namespace: str, signed: bool = True) -> Registration:
        p = peer(name)
        if signed:
            p.signed_peer_record = b"record"
        return self.registry.register_ttl(p.key, namespace, p, 100.0)

    def ids(self, registrations: list[Registration]) -> list[str]:
        return [registration.peer.id for registration in registrations]

    def test_a_refresh_moves_to_its_new_seq(self) -> None:
        first = [self.ttl(name, "app") for name in "ABC"]
        again = self.ttl("A", "app")
        found = self.registry.discover_since("app", 0, 10)
        self.assertEqual(self.ids(found), self.ids([first[1], first[2], again]))
        self.assertIs(found[-1], again)
        self.assertEqual(self.registry.discover_since("app", first[2].seq, 10), [again])

    def test_a_live_session_replacing_its_own_moves_too(self) -> None:
        session = self.registry.open_session(Recorder())
        old = self.registry.register(session, "app", peer("A", tcp_addr(1)))
        self.ttl("B", "app", signed=False)
        new = self.registry.register(session, "app", peer("A", tcp_addr(2)))
        found = self.registry.discover_since("app", 0, 10)
        self.assertEqual(self.ids(found), [peer("B").id, peer("A").id])
        self.assertIs(found[-1], new)
        self.assertEqual(self.registry.discover_since("app", old.seq, 10), found)

    def test_unsigned_and_signed_merge_in_order(self) -> None:
        made = [self.ttl(name, "app", signed=i % 2 == 0) for i, name in enumerate("ABCDEF")]
        self.assertEqual(self.registry.discover_since("app", 0, 10), made)
        self.assertEqual(self.registry.discover_since("app", made[0].seq, 3), made[1:4])
        self.assertEqual(self.registry.discover_since("app", 0, 10, signed_only=True), made[::2])

    def test_every_namespace_in_order(self) -> None:
        made = [self.ttl(name, ns) for name, ns in zip("ABCDEF", "xyzyxz", strict=True)]
        self.assertEqual(self.registry.discover_since(None, 0, 10), made)
        self.assertEqual(self.registry.discover_since(None, made[1].seq, 2), made[2:4])
        self.assertEqual(self.registry.discover_since("q", 0, 10), [])

    def test_removed_never_appear(self) -> None:
        made = [self.ttl(f"P{i}", "app") for i in range(50)]
        owner = self.registry.open_session(Recorder(), made[10].peer.key)
        self.assertTrue(self.registry.unregister(owner, "app", made[10].peer.key))
        self.registry.expire(100.0)
        self.assertEqual(self.registry.discover_since("app", 0, 100), [])
        self.assertEqual(self.registry.discover_since(None, 0, 100), [])
        self.assertNotIn("app", list(self.registry.namespaces()))

    def test_built_by_the_first_read_then_kept(self) -> None:
        """Changes cost nothing until a read needs the index (live-dialect daemons)."""
        session = self.registry.open_session(Recorder())
        for i in range(5):
            self.registry.register(session, "app", peer(f"L{i}", tcp_addr(1)))
        made = [self.ttl(f"P{i}", "app", signed=i % 2 == 0) for i in range(5)]
        again = self.registry.register(session, "app", peer("L0", tcp_addr(2)))
        self.registry.unregister(session, "app", peer("L1").key)
        namespace = self.registry._namespaces["app"]
        self.assertFalse(namespace.indexed or self.registry._changes.indexed)
        found = self.registry.discover_since("app", 0, 100)
        self.assertEqual(found[:3], [self.registry.discover("app", 10)[i] for i in (1, 2, 3)])
        self.assertEqual(self.ids(found[:3]), [peer(f"L{i}").id for i in (2, 3, 4)])
        self.assertEqual(found[3:], [*made, again])
        self.assertTrue(namespace.indexed)
        self.assertFalse(self.registry._changes.indexed)
        later = self.ttl("P9", "app")
        self.assertEqual(self.registry.discover_since("app", again.seq, 10), [later])
        self.assertEqual(self.registry.discover_since(None, again.seq, 10), [later])
        self.assertTrue(self.registry._changes.indexed)
        self.registry.close_session(session)
        self.assertEqual(self.registry.discover_since(None, 0, 100), [*made, later])

    def test_limit_zero_or_less(self) -> None:
        self.ttl("A", "app")
        self.assertEqual(self.registry.discover_since("app", 0, 0), [])
        self.assertEqual(self.registry.discover_since(None, 0, -1), [])


class Index(Changes):
    """A change index on its own: alive is what the test holds; checks are counted."""

    __slots__ = ("checks", "live")

    def __init__(self) -> None:
        super().__init__()
        self.indexed = True
        self.live: set[int] = set()
        self.checks = 0

    def alive(self, registration: Registration) -> bool:
        self.checks += 1
        return registration.seq in self.live

    def put(self, registration: Registration) -> None:
        self.live.add(registration.seq)
        self.add(registration)

    def drop(self, registration: Registration) -> None:
        self.live.discard(registration.seq)
        self.discard(registration)


def registration(seq: int, signed: bool = True) -> Registration:
    p = peer("A")
    if signed:
        p.signed_peer_record = b"record"
    return Registration("app", p, seq=seq)


class ChangeIndexTests(SynchronousTestCase):
    def test_reads_do_not_grow_with_the_index(self) -> None:
        index = Index()
        held = [registration(seq) for seq in range(1, 20_001)]
        for r in held:
            index.put(r)
        # A long run of dead ones right where readers start (too few to sweep).
        for gone in held[1_000:9_000]:
            index.drop(gone)
        run = index._signed
        assert run is not None
        self.assertEqual((len(run.registrations), run.dead), (20_000, 8_000))
        index.take(999, 10, True)  # walks over them once, and compacts what it walked
        self.assertEqual((len(run.registrations), run.dead), (12_000, 0))
        for after in (0, 999, 5_000, 15_000):
            index.checks = 0
            found = index.take(after, 10, True)
            self.assertEqual(
                found, [r for r in held if r.seq > after and not 1_000 < r.seq <= 9_000][:10]
            )
            self.assertLessEqual(index.checks, 10)

    def test_a_few_dead_are_walked_over_not_compacted(self) -> None:
        index = Index()
        held = [registration(seq) for seq in range(1, 1_001)]
        for r in held:
            index.put(r)
        for gone in held[100 : 100 + COMPACT_AFTER]:
            index.drop(gone)
        index.checks = 0
        self.assertEqual(index.take(100, 5, False), held[100 + COMPACT_AFTER : 105 + COMPACT_AFTER])
        self.assertEqual(index.checks, 5 + COMPACT_AFTER)
        run = index._signed
        assert run is not None
        self.assertEqual((len(run.registrations), run.dead), (1_000, COMPACT_AFTER))

    def test_dead_are_swept_out(self) -> None:
        index = Index()
        held = [registration(seq, signed=seq % 3 != 0) for seq in range(1, 301)]
        for r in held:
            index.put(r)
        for gone in held[:270]:
            index.drop(gone)
            for run in (index._signed, index._unsigned):
                assert run is not None
                dead = sum(r.seq not in index.live for r in run.registrations)
                self.assertEqual(run.dead, dead)
                self.assertLessEqual(dead * 2, len(run.registrations))
        self.assertEqual(index.take(0, 100, False), held[270:])
        self.assertEqual(index.take(0, 100, True), [r for r in held[270:] if r.seq % 3])
        for gone in held[270:]:
            index.drop(gone)
        self.assertEqual((index._signed, index._unsigned), (None, None))


change_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.booleans(), st.integers(1, 3)),
        st.tuples(st.just("discard"), st.integers(0, 10**6)),
        st.tuples(st.just("take"), st.integers(-1, 400), st.integers(0, 20), st.booleans()),
    ),
    max_size=400,
)


class ChangesModelTests(SynchronousTestCase):
    @settings(max_examples=200)
    @given(change_ops)
    def test_matches_a_sorted_list(self, ops: list[tuple]) -> None:
        """Adds, removals anywhere (sweeps, compactions) and reads from any seq."""
        index = Index()
        held: list[Registration] = []
        seq = 0
        for op in ops:
            if op[0] == "add":
                for _ in range(op[2]):
                    seq += 1
                    r = registration(seq, signed=op[1])
                    index.put(r)
                    held.append(r)
            elif op[0] == "discard":
                if held:
                    index.drop(held.pop(op[1] % len(held)))
            else:
                _, after, limit, signed_only = op
                expected = [
                    r
                    for r in held
                    if r.seq > after and (not signed_only or r.peer.signed_peer_record)
                ]
                self.assertEqual(index.take(after, limit, signed_only), expected[:limit])
        self.assertEqual(index.take(0, len(held), False), held)
