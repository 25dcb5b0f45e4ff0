"""The store contract: the cases every `rendezvous.store.base.Store` must pass.

`StoreContract` holds them, written once against a small fixture API that each concrete
test class (``tests/test_store_contract.py``) gives for its store; a new store is done
when it passes them all. The rules, from the seed (``SEED.md``) and the registry:

* a REGISTER lasts until its session unregisters it or ends (a TTL registration of
  the standard dialect lasts its TTL, whoever sent it);
* on a raw stream the first session to register an id owns it, in every namespace,
  until it holds no registration of it: any other session is refused (NOT_AUTHORIZED)
  its REGISTER and UNREGISTER; an authenticated (libp2p) session speaks for its own id
  only, and may end the registration another session of that id holds;
* RENDEZVOUS answers the namespace's registrations (the snapshot), then pushes every
  change there, in order, until the session ends;
* no session is pushed its own change, nor any change of an id it speaks for; a
  session that ended is told nothing more;
* once the store settled, what a subscriber was told (snapshot and pushes) is what
  DISCOVER answers.

The fixture API (a "daemon" is one store of a fleet sharing one registry):

* ``make_stores(n)``: ``n`` stores of one fleet, started and ready; as many daemons
  as the store has (`fleet`), handed out in turn (a fleet of one: the same store);
* ``answered(d)``: ``d`` once the store answered (memory: at once; the hub: after
  its flushes; Redis: after the round trips);
* ``settle()``: every store has done all that was asked of it before, and every
  subscriber was pushed every change made so far;
* ``flush_requests()``: what the stores keep until the end of the reactor turn goes
  now (a REGISTER on its way, not answered yet);
* ``now()`` and ``advance(seconds)``: the stores' clock, and time passing on it (then
  a settle);
* ``lose_daemon(store)`` (when `can_lose_daemon`): a daemon is gone, as killed, its
  sessions never closed;
* ``restart_backend(while_down)`` (when `can_restart_backend`): the server behind the
  store dies and starts again empty; ``while_down`` runs meanwhile;
* ``hold(store)``: ``store``'s requests wait on their way until released (pushes
  still come); ``stop_daemon(store)``: a clean stop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest

from rendezvous.limits import Limits
from rendezvous.model import Announcement, Peer, Refused, Registration, Status
from rendezvous.store.base import Store

from .helpers import peer, tcp_addr

T = TypeVar("T")

LIMITS = Limits(
    max_registrations_per_session=8, max_subscriptions_per_session=4, max_registrations_per_peer=3
)
"""The limits every store of the contract is made with."""

NS = "my-app"
OTHER = "other-app"
SYNC = "contract/sync"
"""The namespace of the DISCOVERs that wait for a session's earlier answers."""


def live(name: str, n: int = 1) -> Peer:
    """A peer as a live session registers it: an id, one address."""
    return peer(name, tcp_addr(n))


def signed(name: str, n: int = 1) -> Peer:
    """A peer standing for one with a signed peer record (no store opens it)."""
    p = peer(name, tcp_addr(n))
    p.signed_peer_record = b"record of " + name.encode()
    return p


def R(p: Peer) -> tuple[str, str, tuple[bytes, ...]]:
    """A REGISTER of ``p`` as a subscriber is pushed it."""
    return ("register", p.id, p.addrs)


def U(p: Peer) -> tuple[str, str, tuple[bytes, ...]]:
    """An UNREGISTER of ``p``: it carries the registration that ended."""
    return ("unregister", p.id, p.addrs)


def found(registrations: list[Registration]) -> list[tuple[str, tuple[bytes, ...]]]:
    return [(r.peer.id, r.peer.addrs) for r in registrations]


def held(*peers: Peer) -> list[tuple[str, tuple[bytes, ...]]]:
    return [(p.id, p.addrs) for p in peers]


class Recorder:
    """A session's client (standard-dialect too): every answer and push, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.closed = False
        self.after_close: list[tuple[Any, ...]] = []
        """What the store told the session after it was closed."""
        self._waiting: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def _add(self, event: tuple[Any, ...]) -> None:
        if self.closed:
            self.after_close.append(event)
        self.events.append(event)
        for waiter in list(self._waiting):
            match, d = waiter
            value = match()
            if value is not None:
                self._waiting.remove(waiter)
                d.callback(value)

    def until(self, match: Callable[[], T | None]) -> Deferred[T]:
        """Fires with what ``match`` returns once it is not None."""
        d: Deferred[T] = Deferred()
        value = match()
        if value is not None:
            d.callback(value)
        else:
            self._waiting.append((match, d))
        return d

    # -- Client, StandardClient ------------------------------------------------------

    def announce(self, announcement: Announcement) -> None:
        r = announcement.registration
        self._add((announcement.change.value, r.namespace, r.peer.id, r.peer.addrs))

    def snapshot(self, namespace: str, registrations: list[Registration]) -> None:
        self._add(("snapshot", namespace, list(registrations)))

    def discovered(
        self, request_id: int | None, namespace: str, registrations: list[Registration]
    ) -> None:
        self._add(("discovered", request_id, namespace, list(registrations)))

    def refused(self, request_id: int | None, refusal: Refused) -> None:
        self._add(("refused", request_id, refusal.status))

    def registered(self, request_id: int | None, registration: Registration) -> None:
        self._add(("registered", request_id, registration))

    # -- what it was told ------------------------------------------------------------

    def pushes(self, namespace: str = NS) -> list[tuple[str, str, tuple[bytes, ...]]]:
        return [
            (e[0], e[2], e[3])
            for e in self.events
            if e[0] in ("register", "unregister") and e[1] == namespace
        ]

    def view(self, namespace: str = NS) -> dict[str, tuple[bytes, ...]]:
        """The namespace as told: the latest snapshot, then the pushes after it. An
        UNREGISTER of a registration never told, or a push before any snapshot, is an
        error."""
        current: dict[str, tuple[bytes, ...]] | None = None
        for event in self.events:
            kind = event[0]
            if kind == "snapshot" and event[1] == namespace:
                current = dict(found(event[2]))
            elif kind in ("register", "unregister") and event[1] == namespace:
                if current is None:
                    raise AssertionError(f"{kind} of {event[2]} pushed before the snapshot")
                if kind == "register":
                    current[event[2]] = event[3]
                elif current.pop(event[2], None) is None:
                    raise AssertionError(f"unregister of {event[2]}, never told registered")
        return current or {}


class Party:
    """One session of a store, and the requests a test makes in it."""

    def __init__(self, contract: StoreContract, store: Store, identity: bytes | None) -> None:
        self.contract = contract
        self.store = store
        self.client = Recorder()
        self.session = store.open_session(self.client, identity)
        self._rid = 0

    def _next(self) -> int:
        self._rid += 1
        return self._rid

    def _answer(self, rid: int, kind: str, namespace: str | None = None) -> Deferred[Any]:
        """The answer to request ``rid``: its refusal, or the next ``kind`` answer (of
        ``namespace`` for a snapshot, which carries no request id)."""
        client = self.client
        start = len(client.events)

        def match() -> tuple[Any, ...] | None:
            for event in client.events[start:]:
                if event[0] == "refused" and event[1] == rid:
                    return event
                if event[0] == kind and (
                    event[1] == namespace if kind == "snapshot" else event[1] == rid
                ):
                    return event
            return None

        return client.until(match)

    async def _ask(self, d: Deferred[Any]) -> Any:
        answer = await self.contract.answered(d)
        if answer[0] == "refused":
            raise Refused(answer[2], "refused")
        return answer

    # -- requests ----------------------------------------------------------------

    def register(self, namespace: str, p: Peer) -> int:
        """Sent; a refusal, if any, comes before the answer to a later request."""
        rid = self._next()
        self.store.register(self.session, namespace, p, rid)
        return rid

    def unregister(self, namespace: str, p: Peer) -> int:
        rid = self._next()
        self.store.unregister(self.session, namespace, p.key, rid)
        return rid

    def send_subscribe(self, namespace: str = NS) -> Deferred[Any]:
        rid = self._next()
        d = self._answer(rid, "snapshot", namespace)
        self.store.subscribe(self.session, namespace, rid)
        return d

    async def subscribe(self, namespace: str = NS) -> list[Registration]:
        """RENDEZVOUS: the snapshot (raises `Refused`)."""
        return (await self._ask(self.send_subscribe(namespace)))[2]  # type: ignore[no-any-return]

    def send_discover(self, namespace: str = NS, limit: int = 100) -> Deferred[Any]:
        rid = self._next()
        d = self._answer(rid, "discovered")
        self.store.discover(self.session, namespace, limit, rid)
        return d

    async def discover(self, namespace: str = NS, limit: int = 100) -> list[Registration]:
        return (await self._ask(self.send_discover(namespace, limit)))[3]  # type: ignore[no-any-return]

    async def discover_since(
        self, namespace: str | None, after: int, limit: int = 100, *, signed_only: bool = True
    ) -> list[Registration]:
        rid = self._next()
        d = self._answer(rid, "discovered")
        self.store.discover_since(
            self.session, namespace, after, limit, rid, signed_only=signed_only
        )
        return (await self._ask(d))[3]  # type: ignore[no-any-return]

    def send_register_ttl(self, namespace: str, p: Peer, ttl: int) -> Deferred[Any]:
        rid = self._next()
        d = self._answer(rid, "registered")
        self.store.register_ttl(self.session, namespace, p, ttl, rid)
        return d

    async def register_ttl(self, namespace: str, p: Peer, ttl: int) -> Registration:
        """A TTL registration: the registration as held (raises `Refused`)."""
        return (await self._ask(self.send_register_ttl(namespace, p, ttl)))[2]  # type: ignore[no-any-return]

    async def sync(self) -> None:
        """Every earlier request of this session is answered (answers keep their order)."""
        d = self.send_discover(SYNC, 1)
        await self.contract.answered(d)

    def refusal(self, rid: int) -> Status | None:
        for event in self.client.events:
            if event[0] == "refused" and event[1] == rid:
                return event[2]  # type: ignore[no-any-return]
        return None

    async def registers(self, namespace: str, p: Peer) -> None:
        """REGISTER, accepted."""
        rid = self.register(namespace, p)
        await self.sync()
        status = self.refusal(rid)
        if status is not None:
            raise AssertionError(f"REGISTER of {p.id} in {namespace!r} refused: {status!r}")

    async def refused_register(self, namespace: str, p: Peer) -> Status | None:
        rid = self.register(namespace, p)
        await self.sync()
        return self.refusal(rid)

    async def unregisters(self, namespace: str, p: Peer) -> Status | None:
        """UNREGISTER: its refusal, or None."""
        rid = self.unregister(namespace, p)
        await self.sync()
        return self.refusal(rid)

    def close(self) -> None:
        self.client.closed = True
        self.store.close_session(self.session)


class StoreContract:
    """The contract cases; mixed into a `twisted.trial.unittest.TestCase` with a fixture."""

    fleet = 1
    """How many daemons ``make_stores`` can hand out."""
    can_lose_daemon = False
    can_restart_backend = False
    one_order = True
    """Whether DISCOVER over every namespace follows one order of changes (a cluster's
    follows each partition's, partition after partition)."""
    lease = 60.0
    """How long a lost daemon's registrations may outlive it (where the store has leases)."""

    # -- the fixture API (see the module docstring) ----------------------------------

    async def make_stores(self, n: int) -> list[Store]:
        raise NotImplementedError

    async def answered(self, d: Deferred[T]) -> T:
        raise NotImplementedError

    async def settle(self) -> None:
        raise NotImplementedError

    def flush_requests(self) -> None:
        raise NotImplementedError

    def now(self) -> float:
        raise NotImplementedError

    async def advance(self, seconds: float) -> None:
        raise NotImplementedError

    async def lose_daemon(self, store: Store) -> None:
        raise NotImplementedError

    async def restart_backend(self, while_down: Callable[[], Awaitable[None]]) -> None:
        raise NotImplementedError

    async def hold(self, store: Store) -> Callable[[], Awaitable[None]]:
        """The requests of ``store``'s sessions wait on their way (a slow server, a
        busy channel) until the function returned is called; pushes still come."""
        raise NotImplementedError

    async def stop_daemon(self, store: Store) -> None:
        """The daemon stops cleanly (`Store.stop`), its process ends."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------

    def party(self, store: Store, identity: bytes | None = None) -> Party:
        return Party(self, store, identity)

    async def watcher(self, store: Store, namespace: str = NS) -> Party:
        """A session in rendezvous with ``namespace``."""
        w = self.party(store)
        await w.subscribe(namespace)
        return w

    async def pushed(self, party: Party, count: int, namespace: str = NS) -> None:
        """Once ``party`` has been pushed ``count`` changes of ``namespace``."""
        client = party.client
        await self.answered(client.until(lambda: len(client.pushes(namespace)) >= count or None))

    async def assert_told(self, watchers: list[Party], namespace: str = NS) -> None:
        """What each watcher was told is what DISCOVER answers, once settled."""
        await self.settle()
        for w in watchers:
            truth = dict(found(await w.discover(namespace)))
            self.assertEqual(w.client.view(namespace), truth)  # type: ignore[attr-defined]

    async def refusal_of(self, ask: Awaitable[Any]) -> Status:
        try:
            await ask
        except Refused as refusal:
            return refusal.status
        raise AssertionError("not refused")

    def need_fleet(self, n: int) -> None:
        if self.fleet < n:
            raise SkipTest(f"a fleet of {n} daemons: this store is one")

    # -- the seed -------------------------------------------------------------------------

    async def test_seed_interaction(self) -> None:
        """SEED.md's interaction: A, B and C register and enter rendezvous (each on its
        own daemon where the store has several), D discovers."""
        one, two, three = await self.make_stores(3)
        pa, pb, pc = live("A", 1), live("B", 2), live("C", 3)
        a = self.party(one)
        a.register(NS, pa)
        self.assertEqual(await a.subscribe(), [])  # its own is not in it
        elsewhere = await self.watcher(two, OTHER)

        b = self.party(two)
        b.register(NS, pb)
        self.assertEqual(found(await b.subscribe()), held(pa))
        await self.pushed(a, 1)

        c = self.party(three)
        c.register(NS, pc)
        self.assertEqual(found(await c.subscribe()), held(pa, pb))
        await self.pushed(a, 2)
        await self.pushed(b, 1)

        d = self.party(one)
        self.assertEqual(found(await d.discover()), held(pa, pb, pc))
        await self.settle()
        self.assertEqual(a.client.pushes(), [R(pb), R(pc)])
        self.assertEqual(b.client.pushes(), [R(pc)])
        self.assertEqual(c.client.pushes(), [])
        self.assertEqual(elsewhere.client.pushes(OTHER), [])
        # Each was told the others, never itself.
        self.assertEqual(a.client.view(), dict(held(pb, pc)))
        self.assertEqual(b.client.view(), dict(held(pa, pc)))
        self.assertEqual(c.client.view(), dict(held(pa, pb)))

    async def test_registrations_last_until_unregistered_or_disconnected(self) -> None:
        """A live registration has no TTL: time passing ends none."""
        one, two, _ = await self.make_stores(3)
        pa = live("A")
        a = self.party(one)
        await a.registers(NS, pa)
        await a.registers(OTHER, pa)
        await self.advance(3 * 24 * 3600.0)
        d = self.party(two)
        self.assertEqual(found(await d.discover(NS)), held(pa))
        self.assertEqual(found(await d.discover(OTHER)), held(pa))
        self.assertIsNone(await a.unregisters(NS, pa))
        self.assertEqual(found(await d.discover(NS)), [])
        self.assertEqual(found(await d.discover(OTHER)), held(pa))
        a.close()
        await self.settle()
        self.assertEqual(found(await d.discover(OTHER)), [])

    async def test_unregister_removes_and_is_pushed_once(self) -> None:
        one, two, _ = await self.make_stores(3)
        pa = live("A")
        w = await self.watcher(two)
        a = self.party(one)
        await a.registers(NS, pa)
        self.assertIsNone(await a.unregisters(NS, pa))
        self.assertIsNone(await a.unregisters(NS, pa))  # nothing left: no refusal, no push
        pb = live("B")
        a.register(NS, pb)  # and in one reactor turn
        a.unregister(NS, pb)
        await a.sync()
        await self.settle()
        self.assertEqual(w.client.pushes(), [R(pa), U(pa), R(pb), U(pb)])
        self.assertEqual(await a.discover(), [])
        await self.assert_told([w])

    async def test_reregister_replaces_in_place_and_is_pushed(self) -> None:
        one, two, _ = await self.make_stores(3)
        pa, pb, moved = live("A", 1), live("B", 2), live("A", 9)
        a = self.party(one)
        await a.registers(NS, pa)
        await a.registers(NS, pb)
        w = await self.watcher(two)
        await a.registers(NS, moved)
        await self.settle()
        self.assertEqual(w.client.pushes(), [R(moved)])
        self.assertEqual(found(await w.discover()), held(moved, pb))  # its place kept
        await self.assert_told([w])

    async def test_disconnect_removes_everything_and_is_pushed(self) -> None:
        one, two, three = await self.make_stores(3)
        pa, px = live("A", 1), live("X", 2)
        w1 = await self.watcher(two, NS)
        w2 = await self.watcher(three, OTHER)
        a = self.party(one)
        await a.registers(NS, pa)
        await a.registers(OTHER, pa)
        await a.registers(NS, px)
        await a.subscribe(NS)
        a.close()
        one.close_session(a.session)  # twice: nothing more
        await self.settle()
        self.assertEqual(sorted(w1.client.pushes(NS)[2:]), sorted([U(pa), U(px)]))
        self.assertEqual(w2.client.pushes(OTHER), [R(pa), U(pa)])
        self.assertEqual(await w1.discover(NS), [])
        self.assertEqual(await w1.discover(OTHER), [])
        await self.assert_told([w1])
        await self.assert_told([w2], OTHER)
        b = self.party(two)
        await b.registers(NS, pa)  # the id is free again

    # -- ownership ----------------------------------------------------------------------

    async def test_a_second_session_is_refused_the_id_until_the_first_disconnects(self) -> None:
        one, two, three = await self.make_stores(3)
        first_peer, second_peer = live("A", 1), live("A", 2)
        w = await self.watcher(three)
        first = self.party(one)
        await first.registers(NS, first_peer)
        second = self.party(two)
        self.assertEqual(await second.refused_register(NS, second_peer), Status.NOT_AUTHORIZED)
        # The id is the first session's in every namespace, and only it may remove it.
        self.assertEqual(await second.refused_register(OTHER, second_peer), Status.NOT_AUTHORIZED)
        self.assertEqual(await second.unregisters(NS, second_peer), Status.NOT_AUTHORIZED)
        await self.settle()
        self.assertEqual(found(await second.discover(NS)), held(first_peer))
        self.assertEqual(await second.discover(OTHER), [])
        self.assertEqual(w.client.pushes(), [R(first_peer)])

        first.close()
        await self.settle()
        await second.registers(NS, second_peer)
        await self.settle()
        self.assertEqual(w.client.pushes(), [R(first_peer), U(first_peer), R(second_peer)])
        self.assertEqual(found(await w.discover()), held(second_peer))
        await self.assert_told([w])

    async def test_the_id_is_free_once_unregistered_in_every_namespace(self) -> None:
        one, two, _ = await self.make_stores(3)
        pa = live("A")
        first = self.party(one)
        await first.registers(NS, pa)
        await first.registers(OTHER, pa)
        self.assertIsNone(await first.unregisters(NS, pa))
        await self.settle()
        second = self.party(two)
        self.assertEqual(await second.refused_register(NS, pa), Status.NOT_AUTHORIZED)
        self.assertIsNone(await first.unregisters(OTHER, pa))
        await self.settle()
        await second.registers(NS, pa)

    async def test_an_authenticated_session_speaks_for_its_own_id_only(self) -> None:
        one, two, _ = await self.make_stores(3)
        pa, pb = live("A"), live("B")
        p = self.party(one, identity=pa.key)
        self.assertEqual(await p.refused_register(NS, pb), Status.NOT_AUTHORIZED)
        self.assertEqual(await p.unregisters(NS, pb), Status.NOT_AUTHORIZED)
        await p.registers(NS, pa)
        raw = self.party(two)  # nor may a raw session take an authenticated id's
        self.assertEqual(await raw.refused_register(NS, live("A", 7)), Status.NOT_AUTHORIZED)
        self.assertIsNone(await raw.unregisters(NS, pa))  # not its own: nothing happens
        self.assertEqual(found(await raw.discover()), held(pa))

    async def test_limits_per_session(self) -> None:
        (store,) = await self.make_stores(1)
        a = self.party(store)
        peers = [live(f"P{i}", i + 1) for i in range(LIMITS.max_registrations_per_session)]
        for p in peers:
            await a.registers(NS, p)
        self.assertEqual(await a.refused_register(NS, live("extra")), Status.LIMIT_EXCEEDED)
        await a.registers(NS, live("P0", 99))  # replacing one is not one more
        self.assertIsNone(await a.unregisters(NS, peers[1]))
        await a.registers(NS, live("extra"))
        w = self.party(store)
        names = [f"ns-{i}" for i in range(LIMITS.max_subscriptions_per_session)]
        for name in names:
            await w.subscribe(name)
        self.assertEqual(await self.refusal_of(w.subscribe("one-more")), Status.LIMIT_EXCEEDED)
        await w.subscribe(names[0])  # again: not one more

    async def test_the_session_limit_counts_every_namespace(self) -> None:
        (store,) = await self.make_stores(1)
        a = self.party(store)
        limit = LIMITS.max_registrations_per_session
        rids = [a.register(f"ns-{i}", live(f"P{i}", i + 1)) for i in range(limit)]
        self.flush_requests()  # on their way together
        await a.sync()
        self.assertEqual([a.refusal(rid) for rid in rids], [None] * limit)
        self.assertEqual(await a.refused_register("ns-extra", live("X")), Status.LIMIT_EXCEEDED)
        self.assertEqual(await a.refused_register("ns-0", live("X")), Status.LIMIT_EXCEEDED)
        await a.registers("ns-3", live("P3", 99))  # replacing one is not one more
        self.assertIsNone(await a.unregisters("ns-5", live("P5", 6)))
        await a.registers("ns-extra", live("X"))

    # -- pushes --------------------------------------------------------------------------

    async def test_a_session_is_never_pushed_its_own_changes(self) -> None:
        one, two, three = await self.make_stores(3)
        p1, p2, p3, pb, pc = live("A", 1), live("A", 2), live("A", 3), live("B"), live("C")
        w = await self.watcher(two)
        me = await self.watcher(one)
        await me.registers(NS, p1)
        await me.registers(NS, p2)
        self.assertIsNone(await me.unregisters(NS, p2))
        await me.registers(NS, p3)
        other = self.party(three)
        await other.registers(NS, pb)
        late = self.party(one)  # registers first, then enters rendezvous
        late.register(NS, pc)
        self.assertEqual(found(await late.subscribe()), held(p3, pb))
        await self.settle()
        self.assertEqual(me.client.pushes(), [R(pb), R(pc)])
        self.assertEqual(late.client.pushes(), [])
        self.assertEqual(w.client.pushes(), [R(p1), R(p2), U(p2), R(p3), R(pb), R(pc)])
        await self.assert_told([w])
        self.assertEqual(me.client.view(), dict(held(pb, pc)))
        self.assertEqual(late.client.view(), dict(held(p3, pb)))

    async def test_sessions_of_one_authenticated_id_are_not_pushed_its_changes(self) -> None:
        """Two sessions of one libp2p peer (perhaps on two daemons): each speaks for the
        id, so neither is told of it, wherever the change was made."""
        one, two, three = await self.make_stores(3)
        p1, p2, pb = live("A", 1), live("A", 2), live("B")
        w = await self.watcher(three)
        old = self.party(one, identity=p1.key)
        await old.registers(NS, p1)
        twin = self.party(two, identity=p1.key)
        self.assertEqual(await twin.subscribe(), [])
        old.register(NS, p2)
        await old.sync()
        stranger = self.party(one)
        await stranger.registers(NS, pb)
        await self.settle()
        self.assertEqual(twin.client.pushes(), [R(pb)])
        self.assertEqual(w.client.pushes(), [R(p1), R(p2), R(pb)])
        await self.assert_told([w])

    async def test_rendezvous_delivers_the_snapshot_then_every_change_in_order(self) -> None:
        one, two, three = await self.make_stores(3)
        pa, pb, pc, pb9, pa5 = live("A", 1), live("B", 2), live("C", 3), live("B", 9), live("A", 5)
        a, b = self.party(one), self.party(two)
        await a.registers(NS, pa)
        await b.registers(NS, pb)
        w = self.party(three)
        self.assertEqual(found(await w.subscribe()), held(pa, pb))
        self.assertIsNone(await a.unregisters(NS, pa))
        await b.registers(NS, pb9)
        c = self.party(one)
        await c.registers(NS, pc)
        c.close()
        await self.settle()
        await a.registers(NS, pa5)  # back, now the last
        await self.settle()
        self.assertEqual(w.client.pushes(), [U(pa), R(pb9), R(pc), U(pc), R(pa5)])
        self.assertEqual(found(await w.discover()), held(pb9, pa5))
        await self.assert_told([w])

    async def test_entering_rendezvous_again_is_one_subscription(self) -> None:
        one, two, _ = await self.make_stores(3)
        pa, pb = live("A"), live("B")
        a = self.party(two)
        await a.registers(NS, pa)
        w = self.party(one)
        self.assertEqual(found(await w.subscribe()), held(pa))
        self.assertEqual(found(await w.subscribe()), held(pa))
        await a.registers(NS, pb)
        await self.settle()
        self.assertEqual(w.client.pushes(), [R(pb)])

    async def test_discover_answers_the_oldest_registrations_first_up_to_the_limit(self) -> None:
        stores = await self.make_stores(3)
        peers = [live(name, i + 1) for i, name in enumerate("ABCDE")]
        parties = [self.party(stores[i % len(stores)]) for i in range(len(peers))]
        for party, p in zip(parties, peers, strict=True):
            await party.registers(NS, p)
        await self.settle()
        d = self.party(stores[1])  # not where C is registered
        self.assertEqual(found(await d.discover(NS, 3)), held(*peers[:3]))
        self.assertEqual(found(await d.discover(NS, 10)), held(*peers))
        self.assertEqual(found(await d.discover(NS, 1)), held(peers[0]))
        self.assertEqual(await d.discover("empty"), [])
        # Registered again after an UNREGISTER, C is the newest.
        self.assertIsNone(await parties[2].unregisters(NS, peers[2]))
        await parties[2].registers(NS, peers[2])
        await self.settle()
        a, b, c, d_, e = peers
        self.assertEqual(found(await d.discover(NS, 10)), held(a, b, d_, e, c))

    # -- races, interruptions ---------------------------------------------------------

    async def test_two_sessions_racing_for_one_id(self) -> None:
        """Both REGISTER in the same reactor turn: exactly one wins, and everyone
        agrees which."""
        one, two, three = await self.make_stores(3)
        mine, theirs = live("A", 1), live("A", 2)
        w = await self.watcher(three)
        first, second = self.party(one), self.party(two)
        r1 = first.register(NS, mine)
        r2 = second.register(NS, theirs)
        await first.sync()
        await second.sync()
        outcomes = [first.refusal(r1), second.refusal(r2)]
        self.assertEqual(sorted(outcomes, key=str), sorted([None, Status.NOT_AUTHORIZED], key=str))
        winner, loser, won, lost = (
            (first, second, mine, theirs) if outcomes[0] is None else (second, first, theirs, mine)
        )
        await self.settle()
        self.assertEqual(found(await w.discover()), held(won))
        self.assertEqual(w.client.pushes(), [R(won)])
        self.assertEqual(await loser.refused_register(NS, lost), Status.NOT_AUTHORIZED)
        winner.close()
        await self.settle()
        await loser.registers(NS, lost)
        await self.assert_told([w])

    async def test_two_sessions_racing_for_one_id_in_two_namespaces(self) -> None:
        one, two, _ = await self.make_stores(3)
        pa = live("A")
        first, second = self.party(one), self.party(two)
        r1 = first.register(NS, pa)
        r2 = second.register(OTHER, pa)
        await first.sync()
        await second.sync()
        outcomes = [first.refusal(r1), second.refusal(r2)]
        self.assertEqual(sorted(outcomes, key=str), sorted([None, Status.NOT_AUTHORIZED], key=str))
        await self.settle()
        everywhere = found(await first.discover(NS)) + found(await first.discover(OTHER))
        self.assertEqual(everywhere, held(pa))

    async def test_answers_keep_the_order_of_requests(self) -> None:
        """Whatever answers first inside the store, a session is answered in the order
        it asked, and reads its own writes."""
        (store,) = await self.make_stores(1)
        pa, pb, ttl_a = live("A"), live("B"), signed("A", 2)
        other = self.party(store)
        await other.registers(NS, pb)
        p = self.party(store, identity=pa.key)
        p.send_discover(NS)  # 1
        p.register(NS, pb)  # 2: not its id, refused
        p.send_subscribe(OTHER)  # 3
        p.send_register_ttl(OTHER, ttl_a, 120)  # 4
        p.register(NS, pa)  # 5: no answer
        p.unregister(NS, pb)  # 6: not its id, refused
        last = p.send_discover(NS)  # 7
        await self.answered(last)
        kinds = [(e[0], None if e[0] == "snapshot" else e[1]) for e in p.client.events]
        self.assertEqual(
            kinds,
            [
                ("discovered", 1),
                ("refused", 2),
                ("snapshot", None),
                ("registered", 4),
                ("refused", 6),
                ("discovered", 7),
            ],
        )
        self.assertEqual(found(p.client.events[0][3]), held(pb))
        self.assertEqual(found(p.client.events[-1][3]), held(pb, pa))

    async def test_a_snapshot_joins_the_changes_made_meanwhile(self) -> None:
        """A session enters rendezvous while others register on other daemons: each
        registration is told once, in the snapshot or pushed after it."""
        one, two, three = await self.make_stores(3)
        writers = [self.party(s) for s in (one, three, one)]
        peers = [live(f"S{i}", i + 1) for i in range(12)]
        for i, p in enumerate(peers[:6]):
            writers[i % 3].register(NS, p)
        w = self.party(two)
        subscribed = w.send_subscribe()
        for i, p in enumerate(peers[6:]):
            writers[i % 3].register(NS, p)
        self.flush_requests()
        snapshot = (await self.answered(subscribed))[2]
        await self.settle()
        pushed = [i for c, i, _ in w.client.pushes() if c == "register"]
        told = [r.peer.id for r in snapshot] + pushed
        self.assertEqual(sorted(told), sorted(p.id for p in peers))
        self.assertEqual(len(w.client.pushes()), len(pushed))
        await self.assert_told([w])

    async def test_disconnect_in_the_middle_of_a_register(self) -> None:
        """The session ends before the store answered its REGISTERs (on their way, or
        not sent yet): nothing of it is left, and no subscriber keeps a registration
        that is gone."""
        one, two, three = await self.make_stores(3)
        pk = live("K")
        w = await self.watcher(two)
        keep = self.party(three)
        await keep.registers(NS, pk)
        for name, sent in (("A", True), ("B", False)):
            p = live(name)
            doomed = self.party(one)
            doomed.register(NS, p)
            doomed.register(OTHER, live(f"{name}2"))
            if sent:
                self.flush_requests()
            doomed.close()
            await self.settle()
            self.assertEqual(found(await w.discover(NS)), held(pk))
            self.assertEqual(await w.discover(OTHER), [])
            self.assertEqual(w.client.view(), dict(held(pk)))
            later = self.party(three)
            await later.registers(NS, p)  # the id was not left owned
            later.close()
        await self.assert_told([w])

    async def test_a_closed_session_is_pushed_nothing(self) -> None:
        one, two, _ = await self.make_stores(3)
        subscribed = await self.watcher(one)
        subscribing = self.party(one)
        subscribing.send_subscribe()
        self.flush_requests()
        subscribing.close()
        subscribed.close()
        a = self.party(two)
        await a.registers(NS, live("A"))
        await self.settle()
        self.assertEqual(subscribed.client.after_close, [])
        pushes = ("register", "unregister")
        self.assertEqual([e for e in subscribing.client.after_close if e[0] in pushes], [])

    async def test_a_closed_session_gets_no_answers(self) -> None:
        """Requests still unanswered when their session ends are not answered."""
        one, two, _ = await self.make_stores(3)
        pa = live("A")
        holder = self.party(two)
        await holder.registers(NS, pa)
        await self.settle()
        gone = self.party(one)
        gone.send_discover()
        gone.register(NS, pa)  # would be refused
        self.flush_requests()
        gone.close()
        await self.settle()
        self.assertEqual(gone.client.after_close, [])

    # -- a session replaced, a daemon lost --------------------------------------------

    async def test_an_authenticated_session_replaced_on_another_daemon(self) -> None:
        """A libp2p peer comes back through another daemon while its old session is
        still open: the new session may end the old one's registration and make its
        own; the old one can no longer change it, and takes nothing when it ends."""
        one, two, three = await self.make_stores(3)
        p1, p2, p3 = live("A", 1), live("A", 2), live("A", 3)
        w = await self.watcher(three)
        old = self.party(one, identity=p1.key)
        await old.registers(NS, p1)
        await old.registers(OTHER, p1)
        new = self.party(two, identity=p1.key)
        self.assertEqual(await new.refused_register(NS, p2), Status.NOT_AUTHORIZED)
        self.assertIsNone(await new.unregisters(NS, p2))  # ends the old session's
        await new.registers(NS, p2)
        await self.settle()
        self.assertEqual(await old.refused_register(NS, p3), Status.NOT_AUTHORIZED)
        self.assertEqual(w.client.pushes(), [R(p1), U(p1), R(p2)])
        old.close()
        await self.settle()
        self.assertEqual(w.client.pushes(), [R(p1), U(p1), R(p2)])
        self.assertEqual(found(await w.discover(NS)), held(p2))
        self.assertEqual(await w.discover(OTHER), [])
        await self.assert_told([w])

    # -- TTL registrations (the standard dialect) --------------------------------------

    async def test_a_ttl_registration_lasts_its_ttl_then_is_pushed_gone(self) -> None:
        one, two, three = await self.make_stores(3)
        pa = signed("A")
        w = await self.watcher(three)
        p = self.party(one, identity=pa.key)
        start = self.now()
        registration = await p.register_ttl(NS, pa, 120)
        self.assertEqual((registration.peer.id, registration.peer.addrs), (pa.id, pa.addrs))
        self.assertAlmostEqual(registration.expires, start + 120, places=2)
        self.assertGreater(registration.seq, 0)
        p.close()  # a TTL registration outlives its session
        await self.settle()
        d = self.party(two)
        self.assertEqual(found(await d.discover()), held(pa))
        await self.advance(119)
        self.assertEqual(found(await d.discover()), held(pa))
        self.assertEqual(w.client.pushes(), [R(pa)])
        await self.advance(2)
        self.assertEqual(await d.discover(), [])
        self.assertEqual(w.client.pushes(), [R(pa), U(pa)])
        await self.assert_told([w])

    async def test_ttl_registrations_per_peer_limit(self) -> None:
        one, two, _ = await self.make_stores(3)
        pa = signed("A")
        p = self.party(one, identity=pa.key)
        names = [f"ns-{i}" for i in range(LIMITS.max_registrations_per_peer)]
        for name in names:
            await p.register_ttl(name, pa, 120)
        extra = "ns-extra"
        self.assertEqual(
            await self.refusal_of(p.register_ttl(extra, pa, 120)), Status.LIMIT_EXCEEDED
        )
        await p.register_ttl(names[0], signed("A", 2), 120)  # made again: not one more
        q = self.party(two, identity=pa.key)
        await q.registers(extra, live("A", 3))  # a live one is not counted
        self.assertEqual(
            await self.refusal_of(q.register_ttl(extra, pa, 120)), Status.LIMIT_EXCEEDED
        )
        self.assertEqual(found(await q.discover(extra)), held(live("A", 3)))

    async def test_a_ttl_registration_needs_the_authenticated_id(self) -> None:
        (store,) = await self.make_stores(1)
        pa, pb = signed("A"), signed("B")
        raw = self.party(store)
        self.assertEqual(
            await self.refusal_of(raw.register_ttl(NS, pa, 120)), Status.NOT_AUTHORIZED
        )
        p = self.party(store, identity=pa.key)
        self.assertEqual(await self.refusal_of(p.register_ttl(NS, pb, 120)), Status.NOT_AUTHORIZED)
        self.assertEqual(await p.discover(), [])

    async def test_ttl_and_live_registrations_of_one_id_replace_each_other(self) -> None:
        one, two, three = await self.make_stores(3)
        p1, p2, p3, p4 = live("A", 1), signed("A", 2), live("A", 3), live("A", 4)
        w = await self.watcher(three)
        held_live = self.party(one, identity=p1.key)
        await held_live.registers(NS, p1)
        ttl = self.party(two, identity=p1.key)
        await ttl.register_ttl(NS, p2, 120)
        await self.settle()
        self.assertEqual(found(await w.discover()), held(p2))
        held_live.close()  # it no longer holds it: nothing ends
        await self.settle()
        self.assertEqual(found(await w.discover()), held(p2))
        raw = self.party(three)  # cannot vouch for a TTL registration
        self.assertEqual(await raw.refused_register(NS, p3), Status.NOT_AUTHORIZED)
        again = self.party(one, identity=p1.key)
        await again.registers(NS, p4)  # live again: no TTL any more
        await self.advance(200)
        self.assertEqual(found(await w.discover()), held(p4))
        self.assertEqual(w.client.pushes(), [R(p1), R(p2), R(p4)])
        again.close()
        await self.settle()
        self.assertEqual(w.client.pushes(), [R(p1), R(p2), R(p4), U(p4)])
        await self.assert_told([w])

    async def test_a_ttl_registration_made_again_ends_later(self) -> None:
        one, two, _ = await self.make_stores(3)
        pa, pa2 = signed("A", 1), signed("A", 2)
        w = await self.watcher(two)
        p = self.party(one, identity=pa.key)
        start = self.now()
        first = await p.register_ttl(NS, pa, 120)
        await self.advance(60)
        second = await p.register_ttl(NS, pa2, 120)
        self.assertGreater(second.seq, first.seq)
        self.assertAlmostEqual(second.expires, start + 180, places=2)
        await self.advance(70)  # past the first expiry
        self.assertEqual(found(await w.discover()), held(pa2))
        await self.advance(60)
        self.assertEqual(await w.discover(), [])
        self.assertEqual(w.client.pushes(), [R(pa), R(pa2), U(pa2)])

    async def test_unregister_ends_a_ttl_registration(self) -> None:
        one, two, three = await self.make_stores(3)
        pa = signed("A")
        w = await self.watcher(three)
        p = self.party(one, identity=pa.key)
        await p.register_ttl(NS, pa, 120)
        raw = self.party(two)
        self.assertIsNone(await raw.unregisters(NS, pa))  # not its own: nothing happens
        await self.settle()
        self.assertEqual(found(await w.discover()), held(pa))
        q = self.party(two, identity=pa.key)
        self.assertIsNone(await q.unregisters(NS, pa))
        await self.settle()
        self.assertEqual(await w.discover(), [])
        self.assertEqual(w.client.pushes(), [R(pa), U(pa)])

    async def test_discover_since_follows_the_order_of_changes(self) -> None:
        one, two, three = await self.make_stores(3)
        pl, pa, pb, pc = live("L"), signed("A", 1), signed("B", 2), signed("C", 3)
        raw = self.party(one)
        await raw.registers(NS, pl)
        a = self.party(two, identity=pa.key)
        b = self.party(three, identity=pb.key)
        ra = await a.register_ttl(NS, pa, 120)
        rb = await b.register_ttl(NS, pb, 300)
        await self.settle()
        d = self.party(one)
        everything = await d.discover_since(NS, 0, signed_only=False)
        self.assertEqual(found(everything), held(pl, pa, pb))
        seqs = [r.seq for r in everything]
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertEqual(seqs[1:], [ra.seq, rb.seq])
        self.assertEqual(found(await d.discover_since(NS, 0)), held(pa, pb))  # signed only
        self.assertEqual(found(await d.discover_since(NS, ra.seq)), held(pb))
        self.assertEqual(found(await d.discover_since(NS, 0, 1)), held(pa))
        again = await a.register_ttl(NS, pa, 120)  # made again: now the latest
        self.assertEqual(found(await d.discover_since(NS, rb.seq)), held(pa))
        c = self.party(three, identity=pc.key)
        await c.register_ttl(OTHER, pc, 120)
        everywhere = await d.discover_since(None, 0)
        if self.one_order:
            self.assertEqual(found(everywhere), held(pb, pa, pc))
            self.assertEqual(found(await d.discover_since(None, again.seq)), held(pc))
        else:  # each partition in its order, one after the other
            self.assertEqual(sorted(found(everywhere)), sorted(held(pb, pa, pc)))
        pd = signed("D", 4)  # the last answer's position is a cookie for what follows
        await self.party(two, identity=pd.key).register_ttl(NS, pd, 120)
        self.assertEqual(found(await d.discover_since(None, everywhere[-1].seq)), held(pd))
        await self.advance(121)  # A, C and D end
        self.assertEqual(found(await d.discover_since(None, 0)), held(pb))


class FleetContract:
    """Cases for a store whose fleet has several daemons (`fleet` >= 2 or 3)."""

    async def test_a_refused_register_hides_nothing_from_its_session(self) -> None:
        """A subscriber's REGISTER of an id another session holds is on its way (and will
        be refused) while that session changes it: the subscriber is told the change."""
        self.need_fleet(2)
        one, two, _ = await self.make_stores(3)
        p1, p2, mine = live("A", 1), live("A", 2), live("A", 7)
        holder = self.party(two)
        await holder.registers(NS, p1)
        s = await self.watcher(one)
        w = await self.watcher(one)
        release = await self.hold(one)
        rid = s.register(NS, mine)
        self.flush_requests()
        await holder.registers(NS, p2)
        await self.pushed(w, 1)  # the change has reached the daemon of s
        await release()
        await s.sync()
        self.assertEqual(s.refusal(rid), Status.NOT_AUTHORIZED)
        await self.settle()
        self.assertEqual(w.client.pushes(), [R(p2)])
        self.assertEqual(s.client.pushes(), [R(p2)])
        await self.assert_told([s, w])

    async def test_a_stopped_daemons_registrations_end_at_once(self) -> None:
        self.need_fleet(2)
        one, two, _ = await self.make_stores(3)
        pa, pb = live("A", 1), live("B", 2)
        w = await self.watcher(two)
        a = self.party(one)
        await a.registers(NS, pa)
        await a.registers(OTHER, pb)
        await self.settle()
        await self.stop_daemon(one)
        await self.settle()
        self.assertEqual(await w.discover(NS), [])
        self.assertEqual(await w.discover(OTHER), [])
        self.assertEqual(w.client.pushes(), [R(pa), U(pa)])
        b = self.party(two)
        await b.registers(NS, pa)


class LostDaemonContract:
    """Cases for a fleet of three whose daemons can be lost (`lose_daemon`)."""

    async def test_a_lost_daemons_ids_are_taken_over_at_once(self) -> None:
        """The daemon of the session that held an id is gone (killed): the client,
        back through another daemon, registers it again at once."""
        self.need_fleet(3)
        if not self.can_lose_daemon:
            raise SkipTest("its daemons cannot be lost")
        one, two, three = await self.make_stores(3)
        p1, p2, px = live("A", 1), live("A", 2), live("X")
        w = await self.watcher(three)
        old = self.party(one)
        await old.registers(NS, p1)
        await old.registers(NS, px)
        await self.settle()
        await self.lose_daemon(one)
        new = self.party(two)
        await new.registers(NS, p2)
        await self.settle()
        self.assertEqual(found(await w.discover()), held(p2))
        pushes = w.client.pushes()
        self.assertEqual(pushes[-1], R(p2))
        self.assertEqual(sorted(pushes[:-1]), sorted([R(p1), R(px), U(p1), U(px)]))
        await self.assert_told([w])

    async def test_a_subscriber_taking_over_a_lost_daemons_id_is_told_the_old_one_ended(
        self,
    ) -> None:
        self.need_fleet(3)
        if not self.can_lose_daemon:
            raise SkipTest("its daemons cannot be lost")
        one, two, _ = await self.make_stores(3)
        p1, p2 = live("A", 1), live("A", 2)
        old = self.party(one)
        await old.registers(NS, p1)
        await self.settle()
        new = await self.watcher(two)
        self.assertEqual(new.client.view(), dict(held(p1)))
        await self.lose_daemon(one)
        await new.registers(NS, p2)
        await self.settle()
        self.assertEqual(new.client.view(), {})  # A ended; its own A is not told

    async def test_a_lost_daemons_ttl_registrations_still_end(self) -> None:
        self.need_fleet(3)
        if not self.can_lose_daemon:
            raise SkipTest("its daemons cannot be lost")
        one, _, three = await self.make_stores(3)
        pa = signed("A")
        w = await self.watcher(three)
        p = self.party(one, identity=pa.key)
        await p.register_ttl(NS, pa, 30)
        await self.settle()
        await self.lose_daemon(one)
        await self.advance(31)
        await self.advance(self.lease)  # at the latest
        self.assertEqual(await w.discover(), [])
        self.assertEqual(w.client.pushes(), [R(pa), U(pa)])

    async def test_a_lost_daemons_registrations_end_within_a_lease(self) -> None:
        self.need_fleet(3)
        if not self.can_lose_daemon:
            raise SkipTest("its daemons cannot be lost")
        one, two, three = await self.make_stores(3)
        pa, px = live("A", 1), live("X", 2)
        w = await self.watcher(three)
        old = self.party(one)
        await old.registers(NS, pa)
        await old.registers(NS, px)
        await self.settle()
        await self.lose_daemon(one)
        await self.advance(self.lease + 1)
        self.assertEqual(await w.discover(), [])
        self.assertEqual(sorted(w.client.pushes()), sorted([R(pa), R(px), U(pa), U(px)]))
        await self.assert_told([w])
        new = self.party(two)
        await new.registers(NS, pa)


class RestartContract:
    """Cases for a store with a server behind it (`restart_backend`)."""

    async def test_the_backend_restarting_between_and_during_commands(self) -> None:
        """The server behind the store dies (mid-command for one REGISTER) and comes
        back empty: requests meanwhile are refused UNAVAILABLE; then the connected
        sessions' registrations are back, a REGISTER is held exactly when it was not
        refused, and subscribers are pushed what they missed, once."""
        if not self.can_restart_backend:
            raise SkipTest("no server behind this store")
        one, two, three = await self.make_stores(3)
        pa, pb, pg, pm, pc = live("A", 1), live("B", 2), live("G", 3), live("M", 4), live("C", 5)
        w = await self.watcher(three)
        a, b, g = self.party(one), self.party(two), self.party(two)
        await a.registers(NS, pa)
        await b.registers(NS, pb)
        await g.registers(NS, pg)
        await self.settle()
        mid = self.party(one)
        mid_rid = mid.register(NS, pm)
        self.flush_requests()  # on its way when the server dies

        async def while_down() -> None:
            self.assertEqual(await self.refusal_of(a.discover()), Status.UNAVAILABLE)
            self.assertEqual(await b.refused_register(NS, live("B", 9)), Status.UNAVAILABLE)
            g.close()

        await self.restart_backend(while_down)
        await mid.sync()
        self.assertIn(mid.refusal(mid_rid), (None, Status.UNAVAILABLE))
        await self.advance(self.lease + 1)  # the grace period of what was not re-asserted
        expected = {pa.id, pb.id} | ({pm.id} if mid.refusal(mid_rid) is None else set())
        self.assertEqual({r.peer.id for r in await w.discover()}, expected)
        pushes = w.client.pushes()
        self.assertEqual(pushes.count(U(pg)), 1)
        self.assertNotIn(U(pa), pushes)
        self.assertNotIn(U(pb), pushes)
        await self.assert_told([w])
        c = self.party(one)
        await c.registers(NS, pc)
        await self.settle()
        self.assertEqual(w.client.pushes()[-1], R(pc))
        # B's replacement, refused while the server was down, changed nothing.
        self.assertEqual(dict(found(await c.discover()))[pb.id], pb.addrs)
