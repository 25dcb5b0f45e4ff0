"""The store contract (`tests.store_contract`) run against every store: the in-memory
store, the worker hub (a worker's `HubStore` talking to the `Hub` over its real
records), and Redis (a real redis-server) with one daemon and with three."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rendezvous.model import Status
from rendezvous.store.base import Store
from rendezvous.store.memory import MemoryStore
from rendezvous.store.redis import RedisLink, RedisStore, parse_target
from rendezvous.store.redis.cluster import ClusterLink, key_slot
from rendezvous.workers.hub import Hub, WorkerLink
from rendezvous.workers.hubstore import HubStore

from .helpers import peer, tcp_addr
from .redis_cluster import RedisCluster
from .redis_server import RedisServer
from .store_contract import (
    LIMITS,
    NS,
    SYNC,
    FleetContract,
    LostDaemonContract,
    Party,
    R,
    RestartContract,
    StoreContract,
    found,
    held,
    live,
)

T = TypeVar("T")


def todo(case: Callable[[Any], Awaitable[None]], why: str) -> Callable[[Any], Awaitable[None]]:
    """``case`` as a trial todo on the class that says so: where this store disagrees
    with the contract (a bug to fix, never a reason to weaken the case)."""

    @functools.wraps(case)
    async def run(self: Any) -> None:
        await case(self)

    run.todo = why  # type: ignore[attr-defined]
    return run


class ClockedFixture:
    """Every call on one `Clock`: answers come while the test turns it, never later."""

    clock: Clock

    def pump(self) -> None:
        """Run every call due now (the hub's flushes, and what they cause)."""
        clock = self.clock
        while any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
            clock.advance(0)

    async def answered(self, d: Deferred[T]) -> T:
        self.pump()
        if not d.called:
            raise AssertionError("not answered")
        return await d

    async def settle(self) -> None:
        self.pump()

    def flush_requests(self) -> None:
        pass  # sent at once

    def now(self) -> float:
        return self.clock.seconds()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.pump()


class MemoryStoreContractTests(ClockedFixture, StoreContract, TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(LIMITS, self.clock)

    async def make_stores(self, n: int) -> list[Store]:
        return [self.store] * n


class Worker:
    """A worker's `HubStore`, its records handed to its `WorkerLink` in the hub at once
    (unless held), the hub's to it at the hub's flush (the end of the reactor turn, on
    the clock)."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.store = HubStore(100)
        self.link: WorkerLink = hub.link(name, self.store.feed)
        self.held: list[bytes] | None = None
        self.store.attach(self._send)

    def _send(self, data: bytes) -> None:
        if self.held is None:
            self.link.feed(data)
        else:
            self.held.append(data)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for data in held:
            self.link.feed(data)


class HubStoreContractTests(
    ClockedFixture, StoreContract, FleetContract, LostDaemonContract, TestCase
):
    """Three workers of one hub, the hub's store in memory."""

    fleet = 3
    can_lose_daemon = True

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(MemoryStore(LIMITS, self.clock), self.clock)
        self.workers = [Worker(self.hub, f"worker-{i}") for i in range(self.fleet)]
        self.pump()

    async def make_stores(self, n: int) -> list[Store]:
        return [self.workers[i % self.fleet].store for i in range(n)]

    def worker(self, store: Store) -> Worker:
        [worker] = [w for w in self.workers if w.store is store]
        return worker

    async def lose_daemon(self, store: Store) -> None:
        """The worker process is gone."""
        self.hub.unlink(self.worker(store).link)
        self.pump()

    async def stop_daemon(self, store: Store) -> None:
        """The worker stops, and its process ends: its channel closes."""
        await store.stop()
        await self.lose_daemon(store)

    async def hold(self, store: Store) -> Callable[[], Awaitable[None]]:
        """The worker's records to the hub wait in the channel."""
        worker = self.worker(store)
        worker.held = []

        async def release() -> None:
            worker.release()
            self.pump()

        return release


class TurnClock:
    """The Redis stores' clock: a `Clock` the test moves on (TTLs, lease renewals, grace
    periods), but a call for the next reactor turn (delay 0: a REGISTER batch, a
    DISCOVER turn) goes to the reactor, which runs it as it would in a daemon."""

    def __init__(self) -> None:
        self.later = Clock()
        self.later.advance(float(int(reactor.seconds())))  # whole seconds: exact ms

    def seconds(self) -> float:
        return self.later.seconds()

    def callLater(self, delay: float, f: Callable[..., Any], *a: Any, **kw: Any) -> IDelayedCall:
        if delay <= 0:
            return reactor.callLater(0, f, *a, **kw)  # type: ignore[attr-defined,no-any-return]
        return self.later.callLater(delay, f, *a, **kw)

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return self.later.getDelayedCalls()  # type: ignore[return-value]

    def advance(self, seconds: float) -> None:
        self.later.advance(seconds)


BARRIER = "contract/barrier"


class RedisFixture(StoreContract):
    """`RedisStore` daemons on one real redis-server (loopback, a free port).

    ``settle`` is a barrier built on the order Redis keeps on each connection: every
    daemon sends what its reactor turn holds and waits for a DISCOVER's answer (so
    every command it sent before is answered); a marker REGISTER is then published
    and awaited by a watcher on every daemon (so every announcement published before
    it, and every subscription confirmed before it, has reached its daemon); and the
    round trips once more (for the snapshots those subscriptions read).
    """

    timeout = 30
    can_restart_backend = True

    async def setUp(self) -> None:
        self.redis = RedisServer(os.path.abspath(self.mktemp()))  # type: ignore[attr-defined]
        await self.redis.start()
        self.addCleanup(self.redis.stop)  # type: ignore[attr-defined]
        self.clock = TurnClock()
        self.stores: list[RedisStore] = []
        self.live: list[RedisStore] = []
        self.lost: list[RedisStore] = []
        self.in_flight: list[Deferred[None]] = []
        """Renewals and expiry runs the clock started, until they are done."""
        self.watchers: dict[RedisStore, Party] = {}
        self.markers: dict[RedisStore, Party] = {}
        self.rounds = 0

    def make_link(self) -> RedisLink | ClusterLink:
        return RedisLink(reactor, parse_target(self.redis.url, environ={}), "rendezvous:")

    async def make_stores(self, n: int) -> list[Store]:
        if not self.stores:
            for _ in range(self.fleet):
                link = self.make_link()
                store = RedisStore(link, self.clock, LIMITS, lease=self.lease)  # type: ignore[arg-type]
                self._follow(store)
                store.start()
                self.addCleanup(store.stop)  # type: ignore[attr-defined]
                await store.when(ready=True)
                self.stores.append(store)
            self.live = list(self.stores)
            for store in self.stores:
                self.watchers[store] = await self.watcher(store, BARRIER)
                self.markers[store] = self.party(store)
        return [self.stores[i % self.fleet] for i in range(n)]

    def _follow(self, store: RedisStore) -> None:
        """Keep what the clock starts (a lease renewal, an expiry run) in `in_flight`."""

        def tracked(start: Callable[[], Deferred[None]]) -> Callable[[], Deferred[None]]:
            def run() -> Deferred[None]:
                d = start()
                done: Deferred[None] = Deferred()

                def finished(result: object) -> object:
                    done.callback(None)
                    return result

                d.addBoth(finished)
                self.in_flight.append(done)
                return d

            return run

        tick = store.recovery.tick
        tick.f = tracked(tick.f)
        store.expiry.run = tracked(store.expiry.run)  # type: ignore[method-assign]

    async def answered(self, d: Deferred[T]) -> T:
        return await d

    def flush_requests(self) -> None:
        for store in self.live:
            store.batcher.flush()

    async def _round_trips(self) -> None:
        self.flush_requests()
        await gatherResults([self.watchers[s].send_discover(SYNC, 1) for s in self.live])

    async def _marker(self) -> None:
        self.rounds += 1
        mark = peer("contract-barrier", tcp_addr(self.rounds % 250 + 1, 1024 + self.rounds))
        self.markers[self.live[0]].register(BARRIER, mark)
        self.flush_requests()
        waits = []
        for store in self.live:
            client = self.watchers[store].client
            waits.append(client.until(lambda c=client: R(mark) in c.pushes(BARRIER) or None))
        await gatherResults(waits)

    async def settle(self) -> None:
        await self._round_trips()
        await self._marker()
        await self._round_trips()

    def now(self) -> float:
        return self.clock.seconds()

    async def advance(self, seconds: float) -> None:
        if self.lost and seconds >= self.lease:
            # Redis's own clock moves on too: the lost daemons' leases run out, and so
            # does the reaper's lock.
            link = self.live[0].link
            for p in range(link.partitions):
                for store in self.lost:
                    await link.call("DEL", link.key(f"lease:{store.daemon}", p))
                await link.call("DEL", link.key("reaper", p))
        self.clock.advance(seconds)
        while self.in_flight:
            started, self.in_flight = self.in_flight, []
            await gatherResults(started)
        await self.settle()

    async def lose_daemon(self, store: Store) -> None:
        """The daemon is killed: its connections close, it removes nothing (Redis has
        forgotten both connections once this fires)."""
        assert isinstance(store, RedisStore)
        nodes = _nodes(store.link)
        ports = {
            address: [p.transport.getHost().port for p in protocols if p and p.transport]
            for address, protocols in nodes.items()
        }
        self.live.remove(store)
        self.lost.append(store)
        await store.link.stop()
        killers = _nodes(self.live[0].link)
        for address, node_ports in ports.items():
            killer = killers[address][0]
            for port in node_ports:
                await killer.execute_command("CLIENT", "KILL", "ADDR", f"127.0.0.1:{port}")

    async def hold(self, store: Store) -> Callable[[], Awaitable[None]]:
        """The daemon's command connection waits in a BLPOP: its requests queue up in
        Redis behind it (pub/sub goes on) until another daemon pushes the gate open."""
        assert isinstance(store, RedisStore)
        self.rounds += 1
        link = store.link
        gates = {}  # one on each server the store sends to
        for p in range(link.partitions):
            owner = link.owners[p] if isinstance(link, ClusterLink) else None
            gates.setdefault(owner, link.key(f"contract:gate:{self.rounds}", p))
        blocked = [link.call("BLPOP", gate, 0) for gate in gates.values()]
        opener = next(s for s in self.live if s is not store)

        async def release() -> None:
            for gate in gates.values():
                await opener.link.call("LPUSH", gate, "open")
            await gatherResults(blocked)

        return release

    async def stop_daemon(self, store: Store) -> None:
        assert isinstance(store, RedisStore)
        self.live.remove(store)
        await store.stop()

    async def restart_backend(self, while_down: Callable[[], Awaitable[None]]) -> None:
        await self.redis.stop()
        await gatherResults([store.when(ready=False) for store in self.live])
        await while_down()
        await self.redis.start()
        await gatherResults([store.when(ready=True) for store in self.live])


def _nodes(link: RedisLink | ClusterLink) -> dict[Any, Any]:
    """Each server's connections of ``link``: (command, pub/sub) by address."""
    links = link.nodes if isinstance(link, ClusterLink) else {None: link}
    return {
        address: (node._command, node._subscriber)
        for address, node in links.items()
        if node._command is not None
    }


class RedisClusterFixture(RedisFixture):
    """`RedisStore` daemons on a real three-master Redis Cluster."""

    one_order = False

    async def setUp(self) -> None:
        await super().setUp()
        self.cluster = RedisCluster(os.path.abspath(self.mktemp()))  # type: ignore[attr-defined]
        self.addCleanup(self.cluster.stop)  # type: ignore[attr-defined]
        await self.cluster.start()

    def make_link(self) -> RedisLink | ClusterLink:
        return ClusterLink(reactor, parse_target(self.cluster.url, environ={}), "rendezvous:")

    async def restart_backend(self, while_down: Callable[[], Awaitable[None]]) -> None:
        """Every master dies and starts again empty (its slots kept in nodes.conf)."""
        for server in self.cluster.servers:
            await server.stop()
        await gatherResults([store.when(ready=False) for store in self.live])
        await while_down()
        for server in self.cluster.servers:
            await server.start()
        await self.cluster.until_ok()
        await gatherResults([store.when(ready=True) for store in self.live])


class RedisClusterOneDaemonContractTests(RedisClusterFixture, RestartContract, TestCase):
    fleet = 1


class RedisClusterThreeDaemonsContractTests(
    RedisClusterFixture, FleetContract, LostDaemonContract, RestartContract, TestCase
):
    fleet = 3
    can_lose_daemon = True

    async def test_the_registry_limit_counts_every_partition(self) -> None:
        """Each partition is told how many the others held when last read (at each
        lease renewal, `Recovery.count_partitions`)."""
        one, two, _ = await self.make_stores(3)
        stores: list[RedisStore] = self.stores

        async def counted() -> int:
            for store in stores:
                await store.recovery.count_partitions()
            return sum(stores[0].partition_counts)

        limit = await counted() + 6  # the fixture's own registrations, and six
        for store in stores:
            store.limits = dataclasses.replace(LIMITS, max_registrations=limit)
        spread = [f"ns-{i}" for i in range(6)]
        self.assertGreater(len({stores[0].link.partition_of(n) for n in spread}), 3)
        a = self.party(one)
        for i, name in enumerate(spread):
            await a.registers(name, live(f"P{i}", i + 1))
        self.assertEqual(await counted(), limit)
        b = self.party(two)
        self.assertEqual(await b.refused_register("ns-new", live("X")), Status.UNAVAILABLE)
        self.assertIsNone(await a.unregisters(spread[0], live("P0", 1)))
        await counted()
        await b.registers("ns-new", live("X"))

    async def test_a_partition_moved_to_another_master_is_followed(self) -> None:
        """Resharding: the slot of a watched namespace's partition moves to another
        master (its keys in one MIGRATE) while the daemons serve. A REGISTER sent while
        the slot is migrating waits for its keys to move; one after that is redirected
        (ASK), one after the move too (MOVED); the subscription the cluster ends is made
        again on the new master; no client is refused anything."""
        one, two, three = await self.make_stores(3)
        link = one.link  # type: ignore[attr-defined]
        assert isinstance(link, ClusterLink)
        partition = link.partition_of(NS)
        slot = str(key_slot(link.tags[partition].encode()))
        source = link.owners[partition]
        assert source is not None
        ports = [server.port for server in self.cluster.servers]
        target = next(port for port in ports if port != source[1])
        source_id = await self.cluster.node_id(source[1])
        target_id = await self.cluster.node_id(target)
        w = await self.watcher(three)
        pa, pb, pc, pd = live("A"), live("B"), live("C"), live("D")
        await self.party(one).registers(NS, pa)

        ask = self.cluster.ask
        await ask(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        await ask(source[1], "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        # While the slot migrates, scripts stop before they change anything and are
        # sent again: a REGISTER waits until the keys moved.
        b = self.party(two)
        rid = b.register(NS, pb)
        self.flush_requests()
        keys = (await ask(source[1], "CLUSTER", "GETKEYSINSLOT", slot, "100000")).split()
        self.assertIn(link.key("seq", partition), keys)
        migrate = ("MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS")
        self.assertEqual((await ask(source[1], *migrate, *keys)).strip(), "OK")
        await b.sync()
        self.assertIsNone(b.refusal(rid))
        await self.party(three).registers(NS, pc)  # ASK: run on the target
        for port in ports:
            await ask(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        await self.party(one).registers(NS, pd)  # MOVED, or the map read again
        await self.settle()

        self.assertEqual(link.owners[partition], ("127.0.0.1", target))
        followed = sum((store.link.followed for store in (one, two, three)), Counter())  # type: ignore[attr-defined]
        self.assertGreater(followed["TRYAGAIN"], 0)
        self.assertGreater(followed["ASK"], 0)
        self.assertGreater(followed["SMOVED"], 0)
        expected = dict(held(pa, pb, pc, pd))
        self.assertEqual(w.client.view(), expected)
        for store in (one, two, three):
            self.assertEqual(dict(found(await self.party(store).discover())), expected)
        self.assertNotIn("U", [change for change, _, _ in w.client.pushes()])


class RedisOneDaemonContractTests(RedisFixture, RestartContract, TestCase):
    fleet = 1


class RedisThreeDaemonsContractTests(
    RedisFixture, FleetContract, LostDaemonContract, RestartContract, TestCase
):
    fleet = 3
    can_lose_daemon = True
