"""This daemon's lease, the reaper, and what follows when Redis comes back.

A daemon proves it lives with a lease in Redis, renewed every third of its length;
each renewal also reaps the daemons whose lease ran out and runs the TTL expiry. When
the link comes up (or the lease was found lost) the daemon *recovers*: it takes the
lease again, prunes what Redis holds of its closed sessions, re-asserts each live
session's registrations (the server may have lost them, or another daemon reaped
them), reads every watched namespace again after an outage, and only then is the
store `ready <RedisStore.ready>`.

After a Sentinel failover the new master may lack the last changes whatever its
sequence number says: the resync holds what it misses unconfirmed rather than gone,
and a master behind a DISCOVER cookie this daemon gave gets a new cookie epoch.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from rendezvous.entry import entry_bytes
from rendezvous.model import new_epoch
from rendezvous.store.redis import scripts
from rendezvous.store.redis.session import RedisSession, signed
from rendezvous.store.redis.wire import split_member

if TYPE_CHECKING:
    from rendezvous.store.redis.store import RedisStore


class Recovery:
    """The store's link to the fleet: outages, failovers, the lease and its renewals."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.link = store.link
        self.clock = store.clock
        self.generation = 0
        """Counts outages and recoveries: a recovery or renewal of an earlier one stops."""
        self.recovering = False
        self.prune_needed = False
        """Redis refused to remove a closed session's registrations: renewals prune."""
        self.retry: IDelayedCall | None = None
        self.server: str | None = None
        """The server of the last connection (a failover changes it)."""
        self.failover = False
        """Whether the last connection found another master than the one before."""
        self.tick = LoopingCall(self._renew)
        self.tick.clock = store.clock

    def down(self) -> None:
        """The link went down."""
        store = self.store
        store.discovery.cache.clear()
        store.set_ready(False)
        self.recovering = False
        self._cancel_retry()
        if self.tick.running:
            self.tick.stop()
        self.generation += 1
        store.subscriptions.down()

    def up(self) -> None:
        """The link is up, to the master the sentinels name if any."""
        store = self.store
        if self.link.target.sentinels:
            # A failover (Sentinel named another master): the replica may lack the last
            # changes, whatever its sequence number says; the resync must hold what it
            # misses unconfirmed, not announce it gone.
            server, self.server = self.server, self.link.server
            self.failover = server is not None and server != self.server
            if server != self.server:
                store.log.info("redis master is now {server}", server=self.server)
        if not store.stopping:
            self.recover(resync=True)

    def lease_lost(self) -> None:
        """A script found this daemon's lease gone: take it again, unless already at it."""
        if not self.recovering:
            self.recover(resync=False)

    def stop(self) -> None:
        """The store stops: no more renewals, no retry."""
        if self.tick.running:
            self.tick.stop()
        self._cancel_retry()

    def recover(self, *, resync: bool) -> None:
        """Take the lease, re-assert the live sessions' registrations, resync namespaces."""
        store = self.store
        if store.stopping:
            return
        generation = self.generation = self.generation + 1
        self.recovering = True
        store.discovery.cache.clear()  # versions are only comparable within one registry's life
        self._cancel_retry()
        if self.tick.running:
            self.tick.stop()
        batcher = store.batcher

        async def recover() -> None:
            link = self.link
            await link.subscribe_daemon(store.daemon)  # before re-assertion reports conflicts
            epoch = await batcher.run_everywhere(
                scripts.LEASE, store.daemon, self.lease_ms(), "0", new_epoch()
            )
            if isinstance(epoch, list):  # one per partition: a cluster's names them all
                epoch = hashlib.sha256(b"".join(epoch)).digest()[:8]
            if isinstance(epoch, bytes) and epoch:
                store.epoch = epoch
            if link.partitions > 1:
                await self.count_partitions()
            if self.failover and store.discovery.cookie_high:
                await self._void_cookies_if_behind()
            live = [session for session in store.sessions if session.wrote]
            await batcher.run_everywhere(
                scripts.PRUNE, store.daemon, *[session.sid for session in live]
            )
            self.prune_needed = False
            for session in live:
                if generation != self.generation:
                    return
                await self._reassert(session)
            if generation != self.generation:
                return
            if resync:  # ready once subscribers are up to date
                await store.subscriptions.resync()
                if generation != self.generation:
                    return
            self.tick.start(store.lease / 3, now=False)
            self.recovering = False
            store.set_ready(True)

        def failed(failure: Failure) -> None:
            if generation == self.generation:
                self.recovering = False
            if (
                store.failures.failed(failure, "recovery")
                and generation == self.generation
                and self.link.up
            ):
                self.retry = self.clock.callLater(1.0, self._retry_recovery, resync)

        Deferred.fromCoroutine(recover()).addErrback(failed)

    async def _void_cookies_if_behind(self) -> None:
        """A new master whose sequence is behind a cookie this daemon gave lacks changes
        (they will be numbered again): a new epoch voids every cookie given before, so
        their clients are sent everything again rather than miss the renumbered ones."""
        store = self.store
        link = self.link
        discovery = store.discovery
        seq = int(await link.call("GET", link.key("seq")) or 0)
        if seq < discovery.cookie_high:
            epoch = new_epoch()
            await link.call("SET", link.key("epoch"), epoch)
            store.epoch = epoch
            store.log.warn(
                "redis master lacks changes {first} to {last}: DISCOVER cookies start anew",
                first=seq + 1,
                last=discovery.cookie_high,
            )
        discovery.cookie_high = 0

    def _retry_recovery(self, resync: bool) -> None:
        self.retry = None
        if self.link.up and not self.store.stopping:
            self.recover(resync=resync)

    def _cancel_retry(self) -> None:
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        self.retry = None

    async def _reassert(self, session: RedisSession) -> None:
        if not session.open:
            return
        store = self.store
        link = self.link
        raw = "0" if session.identity is not None else "2" if link.claims else "1"
        if raw == "2":
            await self._claim_again(session)
        by_partition: list[list[str | bytes]] = [[] for _ in range(link.partitions)]
        for (namespace, key), reg in session.entries.items():
            by_partition[link.partition_of(namespace)] += [
                namespace,
                key,
                entry_bytes(reg),
                signed(reg.peer),
            ]
        replies = await gatherResults(
            [
                store.batcher.run(
                    scripts.SYNC_SESSION, store.daemon, session.sid, raw, *args, partition=p
                )
                for p, args in enumerate(by_partition)
                if args or p in session.partitions
            ]
        )
        lost: list[bytes] = []
        for reply in replies:
            if reply[0] != b"OK":
                raise RuntimeError("lease lost during recovery")
            lost += reply[1:]
        for member in lost:
            key, name = split_member(member)
            store.log.warn(
                "registration of {key} in {namespace} lost to another session while "
                "redis was unreachable",
                key=key.hex(),
                namespace=name.decode(errors="replace"),
            )
            store.forget_entry(session, (name.decode(errors="replace"), key))

    async def _claim_again(self, session: RedisSession) -> None:
        """A raw session's ids, claimed again in their home partitions (a cluster): the
        registrations of an id claimed meanwhile by another session are lost."""
        store = self.store
        link = self.link
        keys = {key for _, key in session.entries}
        by_home: dict[int, list[bytes]] = {}
        for key in keys:
            by_home.setdefault(link.home_of(key), []).append(key)
        for home, claims in by_home.items():
            pairs = [arg for key in claims for arg in (session.sid, key)]
            reply = await store.batcher.run(scripts.CLAIM, store.daemon, *pairs, partition=home)
            if reply == b"LEASE":
                raise RuntimeError("lease lost during recovery")
            for key, answer in zip(claims, reply.decode(), strict=True):
                if answer == "1":
                    session.claimed.add(key)
                    continue
                for entry_key in [e for e in session.entries if e[1] == key]:
                    store.log.warn(
                        "registration of {key} in {namespace} lost to another session "
                        "while redis was unreachable",
                        key=key.hex(),
                        namespace=entry_key[0],
                    )
                    store.forget_entry(session, entry_key)

    async def count_partitions(self) -> None:
        """Read how many registrations each partition holds (a cluster's): the limit on
        registrations in all is shared by the partitions as last read."""
        link = self.link
        counts = await gatherResults(
            [link.call("GET", link.key("count", p)) for p in range(link.partitions)]
        )
        self.store.partition_counts = [int(c or 0) for c in counts]

    def lease_ms(self) -> int:
        """The lease's length as the scripts take it."""
        return max(1, int(self.store.lease * 1000))

    def _renew(self) -> Deferred[None]:
        store = self.store
        generation = self.generation

        async def renew() -> None:
            batcher = store.batcher
            renewed = await batcher.run_everywhere(
                scripts.LEASE, store.daemon, self.lease_ms(), "1"
            )
            if isinstance(renewed, list):
                renewed = all(renewed)
            if not renewed:
                if generation == self.generation:
                    store.log.warn("lease of {daemon} expired: re-asserting", daemon=store.daemon)
                    self.recover(resync=False)
                return
            if self.prune_needed:
                live = [session.sid for session in store.sessions if session.wrote]
                await batcher.run_everywhere(scripts.PRUNE, store.daemon, *live)
                self.prune_needed = False
            reaped = await batcher.run_everywhere(
                scripts.REAP, store.daemon, int(store.lease * 1000 / 3)
            )
            if isinstance(reaped, list):
                reaped = max(reaped)  # the same daemons, in each partition
            if reaped > 0:
                store.log.info("reaped {count} daemons whose lease expired", count=reaped)
            if store.link.partitions > 1:
                await self.count_partitions()
            await store.expiry.run()  # also expiries this daemon has not heard of

        def failed(failure: Failure) -> None:
            store.failures.failed(failure, "lease renewal")

        return Deferred.fromCoroutine(renew()).addErrback(failed)
