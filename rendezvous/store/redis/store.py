"""The Redis store: a fleet of daemons sharing one registry through Redis.

Redis holds the registrations (changed only by the atomic scripts of `scripts`, which
also publish every change); each daemon keeps the local side: its sessions, their
subscriptions, and a mirror of every namespace one of them watches, fed by pub/sub and
joined to a snapshot by the fleet-wide sequence number. A daemon proves it lives with a
lease it renews; any daemon reaps the registrations of one whose lease ran out. TTL
registrations (standard dialect) belong to no daemon and end whichever daemon is up.
The sequence number of a registration's latest change is its DISCOVER cookie position,
and the cookie epoch is the fleet's (`RedisStore.epoch`), so a cookie from one daemon
is good at any other.

`RedisStore` is the `Store` the dialects call. It keeps the sessions and hands each
request to the part that does it, each holding a reference to the store for what they
share (the link, the clock, the sessions, the other parts):

* `batch.Batcher`: REGISTER, the requests of one reactor turn in one script run; and
  every other script, run after the REGISTERs before it;
* `discover.Discovery`: DISCOVER (one read per namespace and turn, answers kept by
  version) and DISCOVER from a cookie;
* `subscriptions.Subscriptions`: the namespaces local sessions watch: snapshots,
  announcements, pushes, resyncs;
* `recovery.Recovery`: the lease and its renewals, outages, failovers;
* `expiry.TtlExpiry`: TTL registrations and their end;
* `failures.Failures`: what a script's refusal or failure means.

`session` has the session itself and how a request is answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous.limits import Limits
from rendezvous.model import Peer, Refused, Status
from rendezvous.registry import Session
from rendezvous.registry.ownership import OTHER_ID, FanOut, announce_each
from rendezvous.store.base import Client, StoreStats
from rendezvous.store.redis import scripts
from rendezvous.store.redis.batch import BATCH_SIZE, Batcher
from rendezvous.store.redis.cluster import ClusterLink
from rendezvous.store.redis.discover import Discovery
from rendezvous.store.redis.expiry import TtlExpiry
from rendezvous.store.redis.failures import Failures
from rendezvous.store.redis.link import RedisLink
from rendezvous.store.redis.mirror import Mirror
from rendezvous.store.redis.recovery import Recovery
from rendezvous.store.redis.session import RedisSession, nothing, own, refuse
from rendezvous.store.redis.subscriptions import Subscriptions
from rendezvous.store.redis.wire import BadData, parse_eviction


class RedisStore:
    """A `Store` whose registry lives in Redis and is shared by every daemon using it."""

    log = Logger()

    def __init__(
        self,
        link: RedisLink | ClusterLink,
        clock: IReactorTime,
        limits: Limits | None = None,
        lease: float = 10.0,
        daemon_id: str | None = None,
    ) -> None:
        self.link = link
        self.clock = clock
        self.limits = limits or Limits()
        self.lease = lease
        self.daemon = daemon_id or uuid.uuid4().hex
        self.batch_size = BATCH_SIZE
        self.epoch: bytes | None = None
        """The fleet's DISCOVER cookie epoch, once read from Redis."""
        self.ready = False
        """Connected, lease held and this daemon's registrations re-asserted."""
        self._waiters: list[tuple[bool, Deferred[None]]] = []
        self.stopping = False
        self.sessions: dict[RedisSession, None] = {}
        self.by_sid: dict[str, RedisSession] = {}
        self._next_sid = 0
        self.registration_count = 0
        self.partition_counts = [0] * link.partitions
        """Registrations each partition held when last read (a cluster's)."""
        self.fan_out: FanOut = announce_each
        """How a change reaches this daemon's subscribers (`use_fan_out`)."""

        self.failures = Failures(self)
        self.discovery = Discovery(self)
        self.batcher = Batcher(self, self.discovery.turn_reads)
        self.subscriptions = Subscriptions(self)
        self.recovery = Recovery(self)
        self.expiry = TtlExpiry(self)
        link.on_up = self.recovery.up
        link.on_down = self.recovery.down
        link.on_message = self.subscriptions.message
        link.on_eviction = self._evicted
        link.on_moved = self.subscriptions.moved

    def most_in(self, partition: int) -> int:
        """The registrations ``partition`` may hold: the limit on all of them, less
        what the other partitions held when last read."""
        most = self.limits.max_registrations
        counts = self.partition_counts
        if len(counts) == 1:
            return most
        return max(0, most - (sum(counts) - counts[partition]))

    def use_fan_out(self, fan_out: FanOut) -> None:
        """Push announcements to many subscribers through ``fan_out``."""
        self.fan_out = fan_out

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self.log.info(
            "redis store {target} as daemon {daemon}, lease {lease}s",
            target=self.link.target.describe(),
            daemon=self.daemon,
            lease=self.lease,
        )
        self.link.start()

    def stop(self) -> Deferred[None]:
        """Remove and announce every registration of this daemon, then disconnect."""
        self.stopping = True
        self.recovery.stop()
        self.expiry.cancel()
        self.subscriptions.cancel_timers()

        async def stop() -> None:
            if self.link.up:
                try:
                    await self.batcher.run_everywhere(scripts.DROP_DAEMON, self.daemon)
                except Exception as e:
                    self.log.warn("could not remove this daemon's registrations: {e}", e=e)
            await self.link.stop()

        return Deferred.fromCoroutine(stop())

    # -- sessions -------------------------------------------------------------------

    def open_session(self, client: Client, identity: bytes | None = None) -> Session:
        if len(self.sessions) >= self.limits.max_sessions:
            raise Refused(Status.UNAVAILABLE, "too many sessions")
        self._next_sid += 1
        session = RedisSession(client, identity, str(self._next_sid))
        self.sessions[session] = None
        self.by_sid[session.sid] = session
        return session

    def close_session(self, session: Session) -> None:
        assert isinstance(session, RedisSession)
        if not session.open:
            return
        session.open = False
        session.replies.close()
        del self.sessions[session]
        del self.by_sid[session.sid]
        self.subscriptions.leave(session)
        self.registration_count -= len(session.entries)
        session.entries.clear()
        if session.wrote and not self.stopping and self.link.up:
            # Failing, it is left to the prune that follows a reconnection.
            drops = [
                self.batcher.run(scripts.DROP_SESSION, self.daemon, session.sid, partition=p)
                for p in sorted(session.partitions)
            ]
            gatherResults(drops, consumeErrors=True).addErrback(self._drop_failed)
        session.claimed.clear()  # the drop ends its claims too

    def _drop_failed(self, failure: Failure) -> None:
        if self.failures.failed(failure, "removing a closed session's registrations"):
            self.recovery.prune_needed = True  # Redis refused (out of memory…): retried each tick

    def forget_entry(self, session: RedisSession, entry_key: tuple[str, bytes]) -> None:
        """``session`` no longer holds this registration (removed, or lost to another)."""
        if session.entries.pop(entry_key, None) is not None:
            self.registration_count -= 1
            if session.identity is None:
                key = entry_key[1]
                own(session, key, -1)
                if key in session.claimed and key not in session.own_keys and session.open:
                    self.batcher.release(session, key)

    def _evicted(self, data: bytes) -> None:
        """A session of ours lost a registration to another session: forget it here too."""
        try:
            eviction = parse_eviction(data)
        except BadData as e:
            self.log.error("bad eviction notice: {e}", e=e)
            return
        session = self.by_sid.get(eviction.session)
        if session is None:
            return
        entry_key = (eviction.namespace, eviction.key)
        held = session.entries.get(entry_key)
        if held is not None and held.seq < eviction.seq:  # not re-registered since
            self.forget_entry(session, entry_key)

    # -- requests ---------------------------------------------------------------------

    def register(
        self, session: Session, namespace: str, peer: Peer, request_id: int | None
    ) -> None:
        self.batcher.register(session, namespace, peer, request_id)

    def unregister(
        self, session: Session, namespace: str, key: bytes, request_id: int | None
    ) -> None:
        assert isinstance(session, RedisSession)
        place = session.replies.reserve()
        entry_key = (namespace, key)
        identity = session.identity
        if identity is not None and key != identity and entry_key not in session.entries:
            refuse(
                session,
                place,
                request_id,
                Status.NOT_AUTHORIZED,
                OTHER_ID,
            )
            return
        args = (self.daemon, session.sid, namespace, key, "1" if session.identity is None else "0")
        partition = self.link.partition_of(namespace)
        if self.link.claims:  # the script is told who claimed the id, in its home
            d = self.batcher.after_read(
                [("HGET", self.link.key("claim", self.link.home_of(key)), key)],
                lambda claimant: (scripts.UNREGISTER, (*args, claimant[0] or b""), partition),
            )
        else:
            d = self.batcher.run(scripts.UNREGISTER, *args, partition=partition)

        def done(reply: list[bytes]) -> None:
            if reply[0] != b"OK":
                self.failures.refused_by_script(session, place, request_id, reply)
                return
            if reply[1] == b"1":
                self.forget_entry(session, entry_key)
            place.fill(nothing)

        d.addCallbacks(done, partial(self.failures.request_failed, session, place, request_id))

    def subscribe(self, session: Session, namespace: str, request_id: int | None) -> None:
        self.subscriptions.subscribe(session, namespace, request_id)

    def discover(
        self, session: Session, namespace: str, limit: int, request_id: int | None
    ) -> None:
        self.discovery.discover(session, namespace, limit, request_id)

    def register_ttl(
        self, session: Session, namespace: str, peer: Peer, ttl: int, request_id: int | None
    ) -> None:
        self.expiry.register_ttl(session, namespace, peer, ttl, request_id)

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
        self.discovery.discover_since(
            session, namespace, after, limit, request_id, signed_only=signed_only
        )

    # -- readiness, figures -----------------------------------------------------------

    def when(self, ready: bool = True) -> Deferred[None]:
        """Fires once `ready` equals ``ready`` (at once if it does)."""
        d: Deferred[None] = Deferred()
        if self.ready == ready:
            d.callback(None)
        else:
            self._waiters.append((ready, d))
        return d

    def set_ready(self, ready: bool) -> None:
        """Set by `Recovery`: ready once recovered, not while the link is down."""
        if self.ready == ready:
            return
        self.ready = ready
        if ready:
            self.log.info("redis store ready (daemon {daemon})", daemon=self.daemon)
        waiters, self._waiters = self._waiters, []
        for wanted, d in waiters:
            if wanted == ready:
                d.callback(None)
            else:
                self._waiters.append((wanted, d))

    def stats(self) -> StoreStats:
        namespaces = self.subscriptions.namespaces
        return StoreStats(
            sessions=len(self.sessions),
            registrations=self.registration_count,
            namespaces=len(namespaces),
            subscriptions=sum(len(state.subscribers) for state in namespaces.values()),
        )

    def watched(self) -> Mapping[str, Mirror[RedisSession]]:
        """The namespaces this daemon's sessions watch, each mirrored from the fleet's
        registry (read-only; the status page shows them)."""
        return MappingProxyType(self.subscriptions.namespaces)

    def _run_expiry(self) -> Deferred[None]:
        """Run the TTL expiry now (the tests have every daemon of a fleet run it)."""
        return self.expiry.run()
