"""REGISTER on the Redis store: the requests of one reactor turn in one script run.

`Batcher.register` adds a REGISTER to the batch of the turn, its five script arguments
encoded in one step (a refresh reuses the entry encoded before). A ``callLater(0)`` on
the store's clock, or a full batch (`BATCH_SIZE`), sends the batch as one run of
`scripts.REGISTER_MANY`, which changes the shared registry for all of them, publishes
what changed and answers each REGISTER on its own, in its session's order.

Every other script goes through `Batcher.run` or `Batcher.read`, which send the batch
first: a session reads its own writes.

On a cluster (several partitions) a batch is one script run per partition, and a raw
session's first REGISTER of an id claims it first in the id's home partition
(`scripts.CLAIM`): until those claims are answered, everything after them waits
(`Batcher.hold`), so Redis sees this daemon's requests in the order they came.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from rendezvous.entry import entry_bytes
from rendezvous.model import Peer, Registration, Status
from rendezvous.registry import Session
from rendezvous.registry.ownership import OTHER_ID
from rendezvous.store.redis import scripts
from rendezvous.store.redis.link import Encoded
from rendezvous.store.redis.replies import ReplyPlace
from rendezvous.store.redis.session import (
    UNREACHABLE,
    RedisSession,
    nothing,
    own,
    refuse,
)
from rendezvous.store.redis.wire import BadData, parse_results

if TYPE_CHECKING:
    from rendezvous.store.redis.discover import TurnRead
    from rendezvous.store.redis.store import RedisStore

BATCH_SIZE = 256
"""REGISTERs sent in one script run at most (more in one reactor turn: several runs)."""

_REFUSALS = {
    b"AUTH": (Status.NOT_AUTHORIZED, "peer id is registered by another session"),
    b"LIMIT": (Status.LIMIT_EXCEEDED, "too many registrations in this session"),
    b"FULL": (Status.UNAVAILABLE, "registry is full"),
    b"LEASE": (Status.UNAVAILABLE, UNREACHABLE),
}
"""What `scripts.REGISTER_MANY` answers for a REGISTER it refused."""

Held = tuple[Callable[[], "Deferred[Any]"], "Callable[[Any], None] | None"]
"""Something to send once what waits before it is answered: how to send it, and what
to do with its answer before anything after it is sent (None: nothing to wait for)."""

Pending = tuple[RedisSession, ReplyPlace, "int | None", Registration, bool]
"""A REGISTER sent in a batch: its session, its answer's place, request id, the
registration, and whether the session is a raw stream's."""


class RegisterBatch:
    """The REGISTERs of one reactor turn, for one run of `scripts.REGISTER_MANY` in
    each partition they are in."""

    __slots__ = ("args", "claims", "items", "namespaces", "partitions")

    def __init__(self) -> None:
        self.items: list[Pending] = []
        self.args: list[bytes] = []
        """Five script arguments per REGISTER, encoded (RESP)."""
        self.namespaces: set[str] = set()
        self.partitions: list[int] = []
        """Each REGISTER's partition (a cluster's; otherwise empty)."""
        self.claims: dict[tuple[RedisSession, bytes], None] = {}
        """Ids raw sessions claim before their REGISTERs (a cluster's)."""


class Batcher:
    """Collects the REGISTERs of a reactor turn, and runs every script after them."""

    def __init__(self, store: RedisStore, turn_reads: dict[str, TurnRead]) -> None:
        self.store = store
        self.link = store.link
        self.clock = store.clock
        self.batch = RegisterBatch()
        self.flush_call: IDelayedCall | None = None
        self.turn_reads = turn_reads
        """The DISCOVERs of this turn by namespace (`Discovery`'s): a write after one
        has the next DISCOVER of what it changed read again."""
        self.held: deque[Held] | None = None
        """What waits for an answer before it is sent (`hold`), in order."""

    def register(
        self, session: Session, namespace: str, peer: Peer, request_id: int | None
    ) -> None:
        assert isinstance(session, RedisSession)
        place = session.replies.reserve()
        key = peer.key
        if session.identity is not None and key != session.identity:
            refuse(
                session,
                place,
                request_id,
                Status.NOT_AUTHORIZED,
                OTHER_ID,
            )
            return
        held = session.entries.get((namespace, key))
        # the same again (the usual refresh): its entry is encoded already
        registration = (
            held if held is not None and held.peer == peer else Registration(namespace, peer)
        )
        raw = session.identity is None
        link = self.link
        claimed = raw and link.claims
        if link.partitions > 1 and held is None:
            # The script counts what the session holds in its partition; the daemon,
            # where the session lives, counts them all.
            entry_key = (namespace, key)
            if entry_key not in session.registering:
                limit = self.store.limits.max_registrations_per_session
                if len(session.entries) + len(session.registering) >= limit:
                    refuse(session, place, request_id, *_REFUSALS[b"LIMIT"])
                    return
                session.registering.add(entry_key)
        if self.turn_reads:
            self.turn_reads.pop(namespace, None)  # a DISCOVER after this one reads again
        batch = self.batch
        batch.items.append((session, place, request_id, registration, raw))
        batch.namespaces.add(namespace)
        flags = b"%d" % (raw + 2 * (peer.signed_peer_record is not None) + 4 * claimed)
        if link.partitions > 1:
            partition = link.partition_of(namespace)
            batch.partitions.append(partition)
            session.partitions.add(partition)
            if claimed and key not in session.claimed:
                batch.claims[(session, key)] = None
                session.partitions.add(link.home_of(key))  # where its claims are
        else:
            session.partitions.add(0)
        name, entry = namespace.encode(), entry_bytes(registration)
        batch.args.append(
            session.sid_arg
            + b"$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$1\r\n%s\r\n"
            % (len(name), name, len(key), key, len(entry), entry, flags)
        )
        if len(batch.items) >= self.store.batch_size:
            self.flush()
        elif self.flush_call is None:
            self.flush_call = self.clock.callLater(0, self.flush)

    def run(
        self, script: scripts.Script, *args: str | bytes | int, partition: int = 0
    ) -> Deferred[Any]:
        """Run ``script`` after the REGISTERs waiting, whose effects it may depend on."""
        if self.batch.items:
            self.flush()
        if self.turn_reads:
            self.turn_reads.clear()  # what it may change is read again
        return self.send(script, *args, partition=partition)

    def run_everywhere(self, script: scripts.Script, *args: str | bytes | int) -> Deferred[Any]:
        """`run` in every partition; the answers in partition order."""
        runs = [self.run(script, *args, partition=p) for p in range(self.link.partitions)]
        return runs[0] if len(runs) == 1 else gatherResults(runs)

    def read(
        self, namespace: str, script: scripts.Script, *args: str | bytes | int
    ) -> Deferred[Any]:
        """Run ``script`` (which reads ``namespace``), after the REGISTERs waiting if
        one is in it."""
        if namespace in self.batch.namespaces:
            self.flush()
        return self.send(script, *args, partition=self.link.partition_of(namespace))

    def after_read(
        self,
        commands: list[tuple[str | bytes, ...]],
        then: Callable[[list[Any]], tuple[scripts.Script, tuple[str | bytes | int, ...], int]],
    ) -> Deferred[Any]:
        """Read with ``commands``, then run the script, arguments and partition that
        ``then`` makes of their answers, nothing else sent between (the answer: the
        script's)."""
        if self.batch.items:
            self.flush()
        if self.turn_reads:
            self.turn_reads.clear()
        result: Deferred[Any] = Deferred()

        def run(answer: Any) -> None:
            if isinstance(answer, Failure):
                if isinstance(answer.value, FirstError):
                    answer = answer.value.subFailure
                result.errback(answer)
                return
            script, args, partition = then(answer)
            self.link.run(script, *args, partition=partition).chainDeferred(result)

        self.hold(lambda: gatherResults([self.link.call(*c) for c in commands]), run)
        return result

    def send(
        self, script: scripts.Script, *args: str | bytes | int | Encoded, partition: int = 0
    ) -> Deferred[Any]:
        """Run ``script`` now, or after what `hold` keeps waiting."""
        if self.held is None:
            return self.link.run(script, *args, partition=partition)
        d: Deferred[Any] = Deferred()

        def start() -> Deferred[Any]:
            return self.link.run(script, *args, partition=partition).chainDeferred(d)

        self.held.append((start, None))
        return d

    def hold(self, start: Callable[[], Deferred[Any]], then: Callable[[Any], None]) -> None:
        """Send what ``start`` sends (now, or after what waits already), then nothing
        more until its answer came and ``then`` (given the answer, or the failure) has
        sent what follows from it."""
        item = (start, then)
        if self.held is not None:
            self.held.append(item)
        else:
            self._start(item)

    def _start(self, item: Held) -> bool:
        """Send one held item; True if what follows must wait for its answer."""
        start, then = item
        if then is None:
            start()
            return False
        if self.held is None:
            self.held = deque()
        start().addBoth(self._answered, then)
        return True

    def _answered(self, result: Any, then: Callable[[Any], None]) -> None:
        waiting, self.held = self.held or deque(), None
        then(result)  # what it sends goes before what waited
        while waiting:
            if self.held is not None:  # held again: the rest waits behind it
                self.held.extend(waiting)
                return
            self._start(waiting.popleft())

    def flush(self) -> None:
        """Send the REGISTERs waiting (those of one reactor turn) in one script run."""
        call, self.flush_call = self.flush_call, None
        if call is not None and call.active():
            call.cancel()
        batch = self.batch
        if not batch.items:
            return
        self.batch = RegisterBatch()
        if batch.claims:
            self.hold(partial(self._claim, batch), partial(self._send_batch, batch))
        else:
            self._send_batch(batch, set())

    def release(self, session: RedisSession, key: bytes) -> None:
        """A raw session's claim on ``key`` ends: it holds no registration of it."""
        session.claimed.discard(key)
        d = self.run(
            scripts.RELEASE, self.store.daemon, session.sid, key, partition=self.link.home_of(key)
        )
        d.addErrback(self.store.failures.failed, "releasing a claimed id")

    def _claim(self, batch: RegisterBatch) -> Deferred[set[tuple[RedisSession, bytes]]]:
        """Claim the ids of ``batch.claims`` in their home partitions: those refused."""
        link = self.link
        daemon = self.store.daemon
        by_home: dict[int, list[tuple[RedisSession, bytes]]] = {}
        for pair in batch.claims:
            by_home.setdefault(link.home_of(pair[1]), []).append(pair)
        runs = []
        for home, pairs in by_home.items():
            args = [arg for session, key in pairs for arg in (session.sid, key)]
            d = link.run(scripts.CLAIM, daemon, *args, partition=home)
            d.addCallback(self._claimed, pairs)
            runs.append(d)

        def refused(answers: list[list[tuple[RedisSession, bytes]]]) -> set[Any]:
            return {pair for answer in answers for pair in answer}

        return gatherResults(runs, consumeErrors=True).addCallback(refused)

    def _claimed(
        self, reply: bytes, pairs: list[tuple[RedisSession, bytes]]
    ) -> list[tuple[RedisSession, bytes]]:
        if reply == b"LEASE":
            self.store.recovery.lease_lost()
            return pairs
        refused = []
        for (session, key), answer in zip(pairs, reply.decode(), strict=True):
            if answer == "1" and session.open:
                session.claimed.add(key)
            else:
                refused.append((session, key))
        return refused

    def _send_batch(self, batch: RegisterBatch, refused: Any) -> None:
        """Send the REGISTERs of ``batch`` (one run per partition); those whose claim
        was refused (``refused``: a set, or the failure that stopped the claims) are
        answered at once."""
        if not isinstance(refused, set):
            self._failed(refused, batch)
            return
        partitions = batch.partitions or [0] * len(batch.items)
        groups: dict[int, RegisterBatch] = {}
        for item, args, partition in zip(batch.items, batch.args, partitions, strict=True):
            session, place, request_id, held, _raw = item
            if (session, held.peer.key) in refused:
                session.registering.discard((held.namespace, held.peer.key))
                refuse(session, place, request_id, Status.NOT_AUTHORIZED, _REFUSALS[b"AUTH"][1])
                continue
            group = groups.get(partition)
            if group is None:
                group = groups[partition] = RegisterBatch()
            group.items.append(item)
            group.args.append(args)
        store = self.store
        limits = store.limits
        for partition, group in groups.items():
            d = self.link.run(
                scripts.REGISTER_MANY,
                store.daemon,
                limits.max_registrations_per_session,
                store.most_in(partition),
                Encoded(5 * len(group.items), b"".join(group.args)),
                partition=partition,
            )
            d.addCallbacks(
                self._registered,
                self._failed,
                callbackArgs=(group, partition),
                errbackArgs=(group,),
            )

    def _registered(self, reply: bytes, batch: RegisterBatch, partition: int = 0) -> None:
        store = self.store
        items = batch.items
        try:
            results = parse_results(reply, len(items))
        except BadData as e:
            store.log.error("bad reply from redis: {e}", e=e)
            results = [b"E" + str(e).encode()] * len(items)
        lease_lost = False
        for (session, place, request_id, held, raw), result in zip(items, results, strict=True):
            key = held.peer.key
            if session.registering:
                session.registering.discard((held.namespace, key))
            if not result[:1].isdigit():
                lease_lost = lease_lost or result == b"LEASE"
                self._refused(session, place, request_id, result)
                if key in session.claimed and key not in session.own_keys:
                    self.release(session, key)
                continue
            if session.open:
                entry_key = (held.namespace, key)
                if entry_key not in session.entries:
                    store.registration_count += 1
                    if raw:  # its own change is told by its origin: held from it on
                        own(session, key, 1, int(result), partition)
                # with its sequence number, to tell later evictions from earlier
                held.seq = int(result)
                session.entries[entry_key] = held
            place.fill(nothing)
        if lease_lost:
            store.recovery.lease_lost()

    def _failed(self, failure: Failure, batch: RegisterBatch) -> None:
        self.store.failures.failed(failure, "a request")
        for session, place, request_id, held, _raw in batch.items:
            session.registering.discard((held.namespace, held.peer.key))
            refuse(session, place, request_id, Status.UNAVAILABLE, UNREACHABLE)

    def _refused(
        self, session: RedisSession, place: ReplyPlace, request_id: int | None, result: bytes
    ) -> None:
        refusal = _REFUSALS.get(result)
        if refusal is None:  # an error stopped this one (out of memory…)
            store = self.store
            allowed, suppressed = store.failures.limiter.allow()
            if allowed:
                store.log.error(
                    "redis store: a request failed: {error} ({suppressed} more not logged)",
                    error=result[1:].decode(errors="replace"),
                    suppressed=suppressed,
                )
            refusal = (Status.UNAVAILABLE, UNREACHABLE)
        refuse(session, place, request_id, *refusal)
