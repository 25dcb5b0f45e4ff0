"""DISCOVER on the Redis store, and DISCOVER from a cookie (the standard dialect).

Every DISCOVER asks Redis, after the writes that came before it, yet seldom reads the
entries: `scripts.DISCOVER` returns the namespace's *version* (the number of its latest
change) and the entries only when that differs from the version of the answer kept
here (`Discovered`, for up to `DISCOVER_CACHE` namespaces). The DISCOVERs of one
reactor turn for one namespace share one run (`TurnRead`), unless a write came between.

A cookie's position is the fleet's sequence number of a change, so a cookie from one
daemon is good at any other; `Discovery.cookie_high` is the latest one this daemon
gave, for `Recovery` to tell whether a new master lacks changes it handed out. On a
cluster a namespace's cookie holds its partition's number, and a cookie for every
namespace one number per partition (`pack`).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import TYPE_CHECKING

from twisted.internet.defer import gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from rendezvous.model import Registration, Status
from rendezvous.registry import Session
from rendezvous.store.redis import scripts
from rendezvous.store.redis.replies import ReplyPlace
from rendezvous.store.redis.session import UNREACHABLE, RedisSession, client, ms, refuse
from rendezvous.store.redis.wire import BadData, parse_discovered, registration

if TYPE_CHECKING:
    from rendezvous.store.redis.store import RedisStore

DISCOVER_CACHE = 1024
"""Namespaces whose last DISCOVER answer a daemon keeps, to send again while unchanged."""


class Discovered:
    """A namespace's first registrations as read for a DISCOVER, with its version."""

    __slots__ = ("found", "limit", "version")

    def __init__(self, version: bytes, limit: int, found: list[Registration]) -> None:
        self.version = version
        self.limit = limit
        self.found = found

    def covers(self, limit: int) -> bool:
        """Whether this answers a DISCOVER with ``limit`` (0: all)."""
        complete = self.limit == 0 or len(self.found) < self.limit
        return complete or 0 < limit <= self.limit


class TurnRead:
    """A DISCOVER's read of a namespace, and every DISCOVER of the turn it answers."""

    __slots__ = ("cached", "limit", "waiting")

    def __init__(self, limit: int, cached: Discovered | None) -> None:
        self.limit = limit
        self.cached = cached
        self.waiting: list[tuple[RedisSession, ReplyPlace, int | None, int]] = []

    def covers(self, limit: int) -> bool:
        return self.limit == 0 or 0 < limit <= self.limit


class Discovery:
    """The store's DISCOVERs: the reads of this turn, the answers kept, the cookies."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.clock = store.clock
        self.cache: dict[str, Discovered] = {}
        """The last answer read for each namespace, the one read longest ago first."""
        self.turn_reads: dict[str, TurnRead] = {}
        """DISCOVERs of this reactor turn, by namespace: one read answers them all."""
        self.turn_call: IDelayedCall | None = None
        self.cookie_high = 0
        """The latest change a DISCOVER cookie of this daemon has pointed at."""

    def discover(
        self, session: Session, namespace: str, limit: int, request_id: int | None
    ) -> None:
        assert isinstance(session, RedisSession)
        place = session.replies.reserve()
        read = self.turn_reads.get(namespace)
        if read is not None and read.covers(limit):
            # read in this reactor turn (after this request came) and nothing written since
            read.waiting.append((session, place, request_id, limit))
            return
        cached = self.cache.get(namespace)
        if cached is not None and not cached.covers(limit):
            cached = None
        read = self.turn_reads[namespace] = TurnRead(limit, cached)
        read.waiting.append((session, place, request_id, limit))
        if self.turn_call is None:
            self.turn_call = self.clock.callLater(0, self._end_turn)
        known = cached.version if cached is not None else b""
        d = self.store.batcher.read(namespace, scripts.DISCOVER, namespace, limit, known)
        d.addCallbacks(
            self._read,
            self._read_failed,
            callbackArgs=(namespace, read),
            errbackArgs=(namespace, read),
        )

    def _read(self, reply: list[bytes], namespace: str, read: TurnRead) -> None:
        if self.turn_reads.get(namespace) is read:
            del self.turn_reads[namespace]  # answered: later requests read again
        cached = read.cached
        if len(reply) == 1 and cached is not None and reply[0] == cached.version:
            found = cached.found  # the namespace has not changed since
        else:
            try:
                found = [registration(entry) for entry in parse_discovered(reply[1])]
            except BadData as e:
                self.store.log.error("bad data in redis: {e}", e=e)
                for session, place, request_id, _ in read.waiting:
                    refuse(session, place, request_id, Status.INTERNAL_ERROR, "bad stored data")
                return
            self._remember(namespace, Discovered(reply[0], read.limit, found))
        for session, place, request_id, limit in read.waiting:
            answer = found[:limit] if limit and len(found) > limit else found
            place.fill(partial(client(session).discovered, request_id, namespace, answer))

    def _read_failed(self, failure: Failure, namespace: str, read: TurnRead) -> None:
        if self.turn_reads.get(namespace) is read:
            del self.turn_reads[namespace]
        self.store.failures.failed(failure, "a request")
        for session, place, request_id, _ in read.waiting:
            refuse(session, place, request_id, Status.UNAVAILABLE, UNREACHABLE)

    def _end_turn(self) -> None:
        self.turn_call = None
        self.turn_reads.clear()

    def _remember(self, namespace: str, discovered: Discovered) -> None:
        cache = self.cache
        cache.pop(namespace, None)
        cache[namespace] = discovered
        if len(cache) > DISCOVER_CACHE:
            del cache[next(iter(cache))]  # the one read longest ago

    def discover_since(
        self,
        session: Session,
        namespace: str | None,
        after: int,
        limit: int,
        request_id: int | None,
        *,
        signed_only: bool = True,
    ) -> None:
        assert isinstance(session, RedisSession)
        place = session.replies.reserve()
        store = self.store
        link = store.link
        now = ms(self.clock.seconds())
        flag = "1" if signed_only else "0"
        if namespace is not None or link.partitions == 1:
            d = store.batcher.run(
                scripts.DISCOVER_SINCE,
                "1" if namespace is None else "0",
                namespace or "",
                after,
                limit,
                flag,
                now,
                partition=0 if namespace is None else link.partition_of(namespace),
            )
            d.addCallback(self._since, link.partitions == 1)
        else:
            # every partition from its own position; the answer's positions say where
            # each partition was left (`positions`), packed in one number
            starts = unpack(after, link.partitions)
            runs = [
                store.batcher.run(
                    scripts.DISCOVER_SINCE, "1", "", start, limit, flag, now, partition=p
                ).addCallback(self._since, False)
                for p, start in enumerate(starts)
            ]
            d = gatherResults(runs).addCallback(merged, starts, limit)

        def done(found: list[Registration]) -> None:
            if found and link.partitions == 1:
                self.cookie_high = max(self.cookie_high, max(r.seq for r in found))
            answer = client(session)
            place.fill(lambda: answer.discovered(request_id, namespace or "", found))

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, BadData | ValueError):
                store.log.error("bad data in redis: {e}", e=failure.value)
                refuse(session, place, request_id, Status.INTERNAL_ERROR, "bad stored data")
                return
            store.failures.request_failed(session, place, request_id, failure)

        d.addCallbacks(done, failed)

    def _since(self, reply: list[bytes], one_partition: bool) -> list[Registration]:
        if reply[0] and one_partition:
            self.store.epoch = reply[0]
        return [
            dataclasses.replace(
                registration(entry),
                seq=int(seq),
                expires=int(expires) / 1000 if expires else None,
            )
            for seq, expires, entry in zip(reply[1::3], reply[2::3], reply[3::3], strict=True)
        ]


POSITION_BITS = 48
"""Bits of one partition's sequence number in a position over all partitions."""


def unpack(position: int, partitions: int) -> list[int]:
    """Each partition's sequence number in a position over all of them."""
    mask = (1 << POSITION_BITS) - 1
    return [(position >> (POSITION_BITS * p)) & mask for p in range(partitions)]


def pack(positions: list[int]) -> int:
    return sum(seq << (POSITION_BITS * p) for p, seq in enumerate(positions))


def merged(answers: list[list[Registration]], starts: list[int], limit: int) -> list[Registration]:
    """The answers of every partition as one, partition after partition, each
    registration's ``seq`` the position over all partitions once it is seen."""
    positions = list(starts)
    out: list[Registration] = []
    for p, found in enumerate(answers):
        for r in found:
            if len(out) >= limit:
                return out
            positions[p] = r.seq
            out.append(dataclasses.replace(r, seq=pack(positions)))
    return out
