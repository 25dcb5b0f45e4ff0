"""TTL registrations (the standard dialect) on the Redis store, and their end.

A TTL registration belongs to no daemon. One daemon at a time is elected (a lock in
Redis, taken at lease renewals) to follow the earliest expiry of the fleet; every
daemon also follows those of the registrations it took, so they end on time whoever
is elected. `scripts.EXPIRE` removes and announces what is due atomically, so each
expiry is announced once however many daemons run it.
"""

from __future__ import annotations

import heapq
from functools import partial
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from rendezvous.entry import entry_bytes
from rendezvous.model import Peer, Registration, Status
from rendezvous.registry import Session
from rendezvous.registry.ownership import OTHER_ID
from rendezvous.store.base import TTLClient
from rendezvous.store.redis import scripts
from rendezvous.store.redis.session import RedisSession, ms, refuse, signed

if TYPE_CHECKING:
    from rendezvous.store.redis.store import RedisStore

_EXPIRE_BATCH = 100
"""TTL registrations removed by one run of the expiry script (the next run follows at once)."""


class TtlExpiry:
    """TTL registrations made through this daemon, and one delayed call for the next end."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.clock = store.clock
        self.call: IDelayedCall | None = None
        self.expiries: list[int] = []
        """When (ms) the TTL registrations this daemon took end, earliest first."""

    def register_ttl(
        self, session: Session, namespace: str, peer: Peer, ttl: int, request_id: int | None
    ) -> None:
        assert isinstance(session, RedisSession)
        place = session.replies.reserve()
        identity = session.identity
        if identity is None or peer.key != identity:
            text = "TTL registrations need an authenticated id" if identity is None else OTHER_ID
            refuse(session, place, request_id, Status.NOT_AUTHORIZED, text)
            return
        expires_ms = ms(self.clock.seconds() + ttl)
        store = self.store
        limits = store.limits
        link = store.link
        partition = link.partition_of(namespace)
        args = (
            namespace,
            peer.key,
            entry_bytes(Registration(namespace, peer)),
            signed(peer),
            expires_ms,
        )
        if link.partitions == 1:
            d = store.batcher.run(
                scripts.REGISTER_TTL,
                *args,
                limits.max_registrations_per_peer,
                limits.max_registrations,
                partition=partition,
            )
        else:  # the peer's TTL registrations in the other partitions count too
            others = [p for p in range(link.partitions) if p != partition]

            def limited(counts: list[bytes | None]) -> tuple[Any, ...]:
                left = limits.max_registrations_per_peer - sum(int(c or 0) for c in counts)
                return (
                    scripts.REGISTER_TTL,
                    (*args, left, store.most_in(partition)),
                    partition,
                )

            d = store.batcher.after_read(
                [("HGET", link.key("ttlcount", p), peer.key) for p in others], limited
            )

        def done(reply: list[bytes]) -> None:
            if reply[0] != b"OK":
                store.failures.refused_by_script(session, place, request_id, reply)
                return
            heapq.heappush(self.expiries, expires_ms)
            self.schedule(expires_ms)
            held = Registration(namespace, peer, expires_ms / 1000, seq=int(reply[1]))
            standard: TTLClient = session.subscriber  # type: ignore[assignment]
            place.fill(lambda: standard.registered(request_id, held))

        d.addCallbacks(done, partial(store.failures.request_failed, session, place, request_id))

    def run(self) -> Deferred[None]:
        """Remove and announce every TTL registration due (taking or keeping the
        election if free or ours), then wait for the next one to follow."""
        store = self.store

        async def run() -> None:
            upcoming: list[bytes] = []
            for partition in range(store.link.partitions):
                while True:
                    now = ms(self.clock.seconds())
                    removed, next_one = await store.batcher.run(
                        scripts.EXPIRE,
                        now,
                        _EXPIRE_BATCH,
                        store.daemon,
                        store.recovery.lease_ms(),
                        partition=partition,
                    )
                    if int(removed) < _EXPIRE_BATCH:
                        break
                if next_one:
                    upcoming.append(next_one)
            own = self.expiries
            while own and own[0] <= now:
                heapq.heappop(own)
            if own:
                self.schedule(own[0])
            if upcoming:  # the fleet's earliest, where elected
                self.schedule(min(upcoming, key=int))

        return Deferred.fromCoroutine(run())

    def schedule(self, when_ms: bytes | int) -> None:
        """Have one delayed call pending for the earliest expiry known (ms; empty: none)."""
        if self.store.stopping or when_ms in (b"", ""):
            return
        when = int(when_ms) / 1000
        call = self.call
        if call is not None and call.active():
            if call.getTime() <= when:
                return
            call.cancel()
        self.call = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._due)

    def cancel(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def _due(self) -> None:
        self.call = None
        store = self.store
        if store.link.up:  # otherwise recovery's renewals run it
            self.run().addErrback(store.failures.failed, "expiring TTL registrations")
