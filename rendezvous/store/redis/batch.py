"""REGISTER on the Redis store: the requests of one reactor turn in one script run.

`Batcher.register` adds a REGISTER to the batch of the turn, its five script arguments
encoded in one step (a refresh reuses the entry encoded before). A ``callLater(0)`` on
the store's clock, or a full batch (`BATCH_SIZE`), sends the batch as one run of
`scripts.REGISTER_MANY`, which changes the shared registry for all of them, publishes
what changed and answers each REGISTER on its own, in its session's order.

Every other script goes through `Batcher.run` or `Batcher.read`, which send the batch
first: a session reads its own writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from rendezvous.entry import entry_bytes
from rendezvous.model import Peer, Registration, Status
from rendezvous.registry import Session
from rendezvous.registry.ownership import OTHER_ID
from rendezvous.store.redis import scripts
from rendezvous.store.redis.link import Encoded
from rendezvous.store.redis.replies import ReplyPlace
from rendezvous.store.redis.session import UNREACHABLE, RedisSession, nothing, own, refuse
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

Pending = tuple[RedisSession, ReplyPlace, "int | None", Registration, bool]
"""A REGISTER sent in a batch: its session, its answer's place, request id, the
registration, and whether the session is a raw stream's."""


class RegisterBatch:
    """The REGISTERs of one reactor turn, for one run of `scripts.REGISTER_MANY`."""

    __slots__ = ("args", "items", "namespaces")

    def __init__(self) -> None:
        self.items: list[Pending] = []
        self.args: list[bytes] = []
        """Five script arguments per REGISTER, encoded (RESP)."""
        self.namespaces: set[str] = set()


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
        session.wrote = True
        if self.turn_reads:
            self.turn_reads.pop(namespace, None)  # a DISCOVER after this one reads again
        batch = self.batch
        batch.items.append((session, place, request_id, registration, raw))
        batch.namespaces.add(namespace)
        flags = (
            (b"1" if raw else b"0") if peer.signed_peer_record is None else (b"3" if raw else b"2")
        )
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

    def run(self, script: scripts.Script, *args: str | bytes | int) -> Deferred[Any]:
        """Run ``script`` after the REGISTERs waiting, whose effects it may depend on."""
        if self.batch.items:
            self.flush()
        if self.turn_reads:
            self.turn_reads.clear()  # what it may change is read again
        return self.link.run(script, *args)

    def read(
        self, namespace: str, script: scripts.Script, *args: str | bytes | int
    ) -> Deferred[Any]:
        """Run ``script`` (which reads ``namespace``), after the REGISTERs waiting if
        one is in it."""
        if namespace in self.batch.namespaces:
            self.flush()
        return self.link.run(script, *args)

    def flush(self) -> None:
        """Send the REGISTERs waiting (those of one reactor turn) in one script run."""
        call, self.flush_call = self.flush_call, None
        if call is not None and call.active():
            call.cancel()
        batch = self.batch
        if not batch.items:
            return
        self.batch = RegisterBatch()
        store = self.store
        limits = store.limits
        d = self.link.run(
            scripts.REGISTER_MANY,
            store.daemon,
            limits.max_registrations_per_session,
            limits.max_registrations,
            Encoded(5 * len(batch.items), b"".join(batch.args)),
        )
        d.addCallbacks(self._registered, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _registered(self, reply: bytes, batch: RegisterBatch) -> None:
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
            if not result[:1].isdigit():
                lease_lost = lease_lost or result == b"LEASE"
                self._refused(session, place, request_id, result)
                continue
            if session.open:
                entry_key = (held.namespace, key)
                if entry_key not in session.entries:
                    store.registration_count += 1
                    if raw:  # its own change is told by its origin: held from it on
                        own(session, key, 1, int(result))
                # with its sequence number, to tell later evictions from earlier
                held.seq = int(result)
                session.entries[entry_key] = held
            place.fill(nothing)
        if lease_lost:
            store.recovery.lease_lost()

    def _failed(self, failure: Failure, batch: RegisterBatch) -> None:
        self.store.failures.failed(failure, "a request")
        for session, place, request_id, _held, _raw in batch.items:
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
