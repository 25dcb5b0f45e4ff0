"""The namespaces this daemon's sessions watch (RENDEZVOUS), mirrored from Redis.

A namespace a local session subscribes to is followed on its pub/sub channel and read
once (`scripts.SNAPSHOT`, with the sequence number it reflects); its `Mirror` joins the
two, and each announcement that changes it is pushed to the local subscribers but the
session that made it and those that hold the peer id. Sessions that subscribed wait
for the snapshot (their answers keep their place). After an outage every namespace is
read again and the differences pushed; registrations a Redis without its data no longer
holds are *unconfirmed* for one lease, the time their daemons take to re-assert them.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from rendezvous.model import Status
from rendezvous.registry import Session
from rendezvous.store.redis import scripts
from rendezvous.store.redis.mirror import Mirror, Push
from rendezvous.store.redis.replies import ReplyPlace
from rendezvous.store.redis.session import UNREACHABLE, RedisSession, client, holds, refuse
from rendezvous.store.redis.wire import BadData, parse_published, registration

if TYPE_CHECKING:
    from rendezvous.store.redis.store import RedisStore


class WatchedNamespace(Mirror[RedisSession]):
    """A namespace some local session watches: its mirror, and who waits for a snapshot."""

    __slots__ = ("timer", "waiting")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.waiting: list[tuple[RedisSession, ReplyPlace]] = []
        self.timer: IDelayedCall | None = None
        """Ends the grace period of unconfirmed registrations."""

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class Subscriptions:
    """Every watched namespace: subscribing, snapshots, pushes, resyncs."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.link = store.link
        self.clock = store.clock
        self.namespaces: dict[str, WatchedNamespace] = {}

    def subscribe(self, session: Session, namespace: str, request_id: int | None) -> None:
        assert isinstance(session, RedisSession)
        place = session.replies.reserve()
        if namespace not in session.subscriptions and (
            len(session.subscriptions) >= self.store.limits.max_subscriptions_per_session
        ):
            refuse(
                session,
                place,
                request_id,
                Status.LIMIT_EXCEEDED,
                "too many subscriptions in this session",
            )
            return
        if not self.link.up:
            refuse(session, place, request_id, Status.UNAVAILABLE, UNREACHABLE)
            return
        state = self.namespaces.get(namespace)
        if state is None:
            state = self.namespaces[namespace] = WatchedNamespace(namespace)
            self._sync(state)
        if namespace not in session.subscriptions:
            session.subscriptions.append(namespace)
        state.waiting.append((session, place))
        if state.synced:
            self._release(state)

    def leave(self, session: RedisSession) -> None:
        """``session`` closes: it watches nothing any more."""
        for name in session.subscriptions:
            state = self.namespaces.get(name)
            if state is not None:
                state.subscribers.pop(session, None)
                state.waiting = [(s, place) for s, place in state.waiting if s is not session]
                self._forget_if_unwatched(state)
        session.subscriptions.clear()

    def message(self, namespace: str, data: bytes) -> None:
        """Announcements published on a namespace's channel."""
        state = self.namespaces.get(namespace)
        if state is None:
            return
        try:
            announcements = parse_published(data)
        except BadData as e:
            self.store.log.error("bad announcement on {namespace}: {e}", namespace=namespace, e=e)
            return
        for published in announcements:
            self._push(state, state.receive(published))

    def moved(self, namespace: str) -> None:
        """The namespace's subscription moved with its slot: subscribe and read again."""
        state = self.namespaces.get(namespace)
        if state is not None:
            self._sync(state)

    def down(self) -> None:
        """The link is down: snapshots being read are lost; those waiting are refused."""
        for state in list(self.namespaces.values()):
            state.synced = False
            state.generation += 1
            self._refuse_waiting(state)
            self._forget_if_unwatched(state)

    def resync(self) -> Deferred[None]:
        """Read every namespace again (after an outage): what was missed is pushed.
        Fires once every namespace was read (or could not be)."""
        reads = [self._sync(state) for state in list(self.namespaces.values())]
        return gatherResults(reads).addCallback(lambda _: None)

    def cancel_timers(self) -> None:
        for state in self.namespaces.values():
            state.cancel_timer()

    def _sync(self, state: WatchedNamespace) -> Deferred[None]:
        """(Re)subscribe, then read a snapshot; pushes meanwhile wait in the buffer.
        Fires once that is done, or failed (never with a failure)."""
        generation = state.begin_sync()
        d = self.link.subscribe(state.name)
        d.addCallback(
            lambda _: self.store.batcher.read(state.name, scripts.SNAPSHOT, state.name, 0)
        )
        d.addCallbacks(
            partial(self._synced, state, generation),
            partial(self._sync_failed, state, generation),
        )
        return d

    def _current(self, state: WatchedNamespace, generation: int) -> bool:
        return self.namespaces.get(state.name) is state and state.generation == generation

    def _synced(self, state: WatchedNamespace, generation: int, reply: list[bytes]) -> None:
        if not self._current(state, generation):
            return
        store = self.store
        try:
            pairs = zip(reply[1::2], reply[2::2], strict=True)
            fresh = {key: registration(entry) for key, entry in pairs}
        except BadData as e:
            store.log.error("bad data in redis: {e}", e=e)
            fresh = {}
        resync = bool(state.subscribers)
        state.cancel_timer()
        pushes = state.synced_with(int(reply[0]), fresh, forgotten=store.recovery.failover)
        if resync and (pushes or state.unconfirmed):
            store.log.info(
                "resync of {namespace}: {count} changes missed, {unconfirmed} awaiting "
                "re-assertion",
                namespace=state.name,
                count=len(pushes),
                unconfirmed=len(state.unconfirmed),
            )
        if state.unconfirmed:
            state.timer = self.clock.callLater(store.lease, self._settle, state, generation)
        self._push(state, pushes)
        self._release(state)

    def _settle(self, state: WatchedNamespace, generation: int) -> None:
        """The end of the grace period: what was not re-asserted is announced gone."""
        state.timer = None
        if self._current(state, generation):
            self._push(state, state.settle())

    def _sync_failed(self, state: WatchedNamespace, generation: int, failure: Failure) -> None:
        if not self._current(state, generation):
            return
        self.store.failures.failed(failure, f"reading namespace {state.name!r}")
        self._refuse_waiting(state)
        self._forget_if_unwatched(state)

    def _release(self, state: WatchedNamespace) -> None:
        waiting, state.waiting = state.waiting, []
        for session, place in waiting:
            place.fill(partial(self._deliver_snapshot, state, session))

    def _deliver_snapshot(self, state: WatchedNamespace, session: RedisSession) -> None:
        if not session.open or state.name not in session.subscriptions:
            return
        state.subscribers[session] = None
        client(session).snapshot(state.name, state.snapshot(session.own_keys))

    def _refuse_waiting(self, state: WatchedNamespace) -> None:
        waiting, state.waiting = state.waiting, []
        for session, place in waiting:
            if session not in state.subscribers and state.name in session.subscriptions:
                session.subscriptions.remove(state.name)
            refuse(session, place, None, Status.UNAVAILABLE, UNREACHABLE)

    def _forget_if_unwatched(self, state: WatchedNamespace) -> None:
        unwatched = not state.subscribers and not state.waiting
        if unwatched and self.namespaces.get(state.name) is state:
            state.cancel_timer()
            del self.namespaces[state.name]
            self.link.unsubscribe(state.name)

    def _push(self, state: WatchedNamespace, pushes: list[Push]) -> None:
        store = self.store
        partition = self.link.partition_of(state.name)
        for key, announcement, origin, seq in pushes:
            # Never the session whose request made the change (it may no longer hold
            # the key: its own UNREGISTER), nor one that held the key when it changed.
            daemon, _, sid = origin.rpartition("/")
            maker = store.by_sid.get(sid) if daemon == store.daemon else None
            told = [
                client(session)
                for session in state.subscribers
                if session is not maker and not holds(session, key, seq, partition)
            ]
            if told:
                store.fan_out(told, announcement)
