"""The registry: namespaces, registrations, subscribers and limits, as pure state.

It knows nothing of sockets, dialects or time sources; it tells each subscriber of a
namespace about every change there through `Subscriber.announce`.

A registration is held either by a live session (until it ends or unregisters) or, for
the standard dialect, by nobody until its TTL runs out: the caller says when, on its
own clock, and calls `expire` with the time whenever `next_expiry` has passed. One
peer id has one registration per namespace whatever the dialect: the newer replaces
the older when the id is the session's authenticated one (or the session's own).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from itertools import islice
from typing import Protocol

from rendezvous.limits import Limits
from rendezvous.model import Announcement, Change, Peer, Refused, Registration, Status


class Subscriber(Protocol):
    """What the registry pushes announcements to (a live-dialect session)."""

    def announce(self, announcement: Announcement) -> None: ...


class Session:
    """What the registry keeps for one connected client."""

    __slots__ = ("identity", "open", "own_keys", "registrations", "subscriber", "subscriptions")

    def __init__(self, subscriber: Subscriber, identity: bytes | None) -> None:
        self.subscriber = subscriber
        self.identity = identity
        """The authenticated peer id (libp2p), or None: the session owns what it registers."""
        self.own_keys: dict[bytes, int] = {} if identity is None else {identity: 1}
        """Peer ids this session speaks for, with how many registrations hold each."""
        self.registrations: dict[tuple[str, bytes], None] = {}
        self.subscriptions: dict[str, None] = {}
        self.open = True


class _Namespace:
    __slots__ = ("registrations", "subscribers")

    def __init__(self) -> None:
        self.registrations: dict[bytes, tuple[Registration, Session | None]] = {}
        self.subscribers: dict[Session, None] = {}


class Registry:
    """All namespaces of one daemon (or the local view of a fleet's)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._namespaces: dict[str, _Namespace] = {}
        self._owners: dict[bytes, Session] = {}
        self._sessions: dict[Session, None] = {}
        self.registration_count = 0
        self._seq = 0
        self._expiries: list[tuple[float, int, str, bytes]] = []
        self._ttl_counts: dict[bytes, int] = {}
        """TTL registrations held per peer id."""

    # -- sessions ---------------------------------------------------------

    def open_session(self, subscriber: Subscriber, identity: bytes | None = None) -> Session:
        """Admit a client; `Refused` when the daemon holds its maximum of sessions."""
        if len(self._sessions) >= self.limits.max_sessions:
            raise Refused(Status.UNAVAILABLE, "too many sessions")
        session = Session(subscriber, identity)
        self._sessions[session] = None
        return session

    def close_session(self, session: Session) -> None:
        """Forget a client, announcing UNREGISTER for everything it registered."""
        if not session.open:
            return
        session.open = False
        del self._sessions[session]
        for namespace in session.subscriptions:
            entry = self._namespaces[namespace]
            del entry.subscribers[session]
            self._drop_if_empty(namespace, entry)
        session.subscriptions.clear()
        for namespace, key in list(session.registrations):
            self._remove(session, namespace, key)

    # -- requests ---------------------------------------------------------

    def register(self, session: Session, namespace: str, peer: Peer) -> Registration:
        """Add or replace ``peer`` in ``namespace`` and announce it."""
        key = peer.key
        if session.identity is not None:
            if key != session.identity:
                raise Refused(Status.NOT_AUTHORIZED, "peer id differs from the authenticated one")
        else:
            owner = self._owners.get(key)
            if owner is not None and owner is not session:
                raise Refused(Status.NOT_AUTHORIZED, "peer id is registered by another session")
        entry = self._namespaces.get(namespace)
        slot = (namespace, key)
        replacing = slot in session.registrations
        if not replacing and entry is not None and key in entry.registrations:
            _, holder = entry.registrations[key]
            if holder is not None or session.identity is None:
                # Held by a session that no longer owns the id (libp2p), or a TTL
                # registration that an unauthenticated session cannot vouch for.
                raise Refused(Status.NOT_AUTHORIZED, "peer id is registered by another session")
            self._detach(namespace, key, None)
            entry = self._namespaces.get(namespace)
        if not replacing:
            if len(session.registrations) >= self.limits.max_registrations_per_session:
                raise Refused(Status.LIMIT_EXCEEDED, "too many registrations in this session")
            if self.registration_count >= self.limits.max_registrations:
                raise Refused(Status.UNAVAILABLE, "registry is full")
        if entry is None:
            entry = self._namespaces[namespace] = _Namespace()
        self._seq += 1
        registration = Registration(namespace, peer, seq=self._seq)
        entry.registrations[key] = (registration, session)
        if not replacing:
            session.registrations[slot] = None
            self.registration_count += 1
            if session.identity is None:
                count = session.own_keys.get(key, 0)
                session.own_keys[key] = count + 1
                if count == 0:
                    self._owners[key] = session
        if entry.subscribers:
            self._announce(entry, Announcement(Change.REGISTER, registration))
        return registration

    def unregister(self, session: Session, namespace: str, key: bytes) -> bool:
        """Remove the session's registration; False (and no announcement) if it had none."""
        if (namespace, key) in session.registrations:
            self._remove(session, namespace, key)
            return True
        if session.identity is not None and key != session.identity:
            raise Refused(Status.NOT_AUTHORIZED, "peer id differs from the authenticated one")
        if session.identity is not None:
            entry = self._namespaces.get(namespace)
            held = entry.registrations.get(key) if entry is not None else None
            if held is not None and held[1] is None:
                registration = self._detach(namespace, key, None)
                self._announce_gone(namespace, registration)
                return True
            if held is not None and held[1] is not None and held[1].identity == key:
                self._remove(held[1], namespace, key)  # another session of the same peer's
                return True
        owner = self._owners.get(key)
        if owner is not None and owner is not session:
            raise Refused(Status.NOT_AUTHORIZED, "peer id is registered by another session")
        return False

    def subscribe(self, session: Session, namespace: str) -> list[Registration]:
        """Enter rendezvous: returns the namespace's registrations the session does not own."""
        if namespace not in session.subscriptions:
            if len(session.subscriptions) >= self.limits.max_subscriptions_per_session:
                raise Refused(Status.LIMIT_EXCEEDED, "too many subscriptions in this session")
            entry = self._namespaces.get(namespace)
            if entry is None:
                entry = self._namespaces[namespace] = _Namespace()
            entry.subscribers[session] = None
            session.subscriptions[namespace] = None
        own = session.own_keys
        return [
            registration
            for key, (registration, _) in self._namespaces[namespace].registrations.items()
            if key not in own
        ]

    def discover(self, namespace: str, limit: int) -> list[Registration]:
        """At most ``limit`` registrations of ``namespace``, oldest first."""
        entry = self._namespaces.get(namespace)
        if entry is None:
            return []
        return [registration for registration, _ in islice(entry.registrations.values(), limit)]

    def register_ttl(
        self, identity: bytes, namespace: str, peer: Peer, expires: float
    ) -> Registration:
        """Add or replace the TTL registration of the authenticated ``identity``.

        It replaces any registration of the id in ``namespace`` (a live session's too),
        lasts until ``expires`` on the caller's clock, and is announced.
        """
        key = peer.key
        if key != identity:
            raise Refused(Status.NOT_AUTHORIZED, "peer id differs from the authenticated one")
        entry = self._namespaces.get(namespace)
        held = entry.registrations.get(key) if entry is not None else None
        adds_ttl = held is None or held[1] is not None
        if adds_ttl and self._ttl_counts.get(key, 0) >= self.limits.max_registrations_per_peer:
            raise Refused(Status.LIMIT_EXCEEDED, "too many registrations for this peer")
        if held is not None:
            self._detach(namespace, key, held[1])
        elif self.registration_count >= self.limits.max_registrations:
            raise Refused(Status.UNAVAILABLE, "registry is full")
        entry = self._namespaces.get(namespace)
        if entry is None:
            entry = self._namespaces[namespace] = _Namespace()
        self._seq += 1
        registration = Registration(namespace, peer, expires, seq=self._seq)
        entry.registrations[key] = (registration, None)
        self.registration_count += 1
        self._ttl_counts[key] = self._ttl_counts.get(key, 0) + 1
        heapq.heappush(self._expiries, (expires, self._seq, namespace, key))
        if entry.subscribers:
            self._announce(entry, Announcement(Change.REGISTER, registration))
        return registration

    def next_expiry(self) -> float | None:
        """When the next TTL registration ends, or None if none is held."""
        expiries = self._expiries
        while expiries and not self._current(expiries[0]):
            heapq.heappop(expiries)
        return expiries[0][0] if expiries else None

    def expire(self, now: float) -> list[Registration]:
        """Remove and announce (UNREGISTER) every TTL registration ended by ``now``."""
        expired = []
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            item = heapq.heappop(expiries)
            if self._current(item):
                registration = self._detach(item[2], item[3], None)
                self._announce_gone(item[2], registration)
                expired.append(registration)
        return expired

    def discover_since(
        self, namespace: str | None, after: int, limit: int, *, signed_only: bool = False
    ) -> list[Registration]:
        """At most ``limit`` registrations (re)registered after change ``after``, in order.

        ``namespace`` None means every namespace; ``signed_only`` keeps those that carry
        a signed peer record.
        """
        if namespace is None:
            entries = list(self._namespaces.values())
        else:
            entry = self._namespaces.get(namespace)
            entries = [] if entry is None else [entry]
        candidates = (
            registration
            for entry in entries
            for registration, _ in entry.registrations.values()
            if registration.seq > after
            and (not signed_only or registration.peer.signed_peer_record is not None)
        )
        return heapq.nsmallest(limit, candidates, key=lambda registration: registration.seq)

    @property
    def last_seq(self) -> int:
        """The number of the latest change: a DISCOVER cookie's position."""
        return self._seq

    # -- introspection ----------------------------------------------------

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def namespace_count(self) -> int:
        return len(self._namespaces)

    @property
    def subscription_count(self) -> int:
        return sum(len(entry.subscribers) for entry in self._namespaces.values())

    def namespaces(self) -> Iterator[str]:
        return iter(self._namespaces)

    # -- internals ----------------------------------------------------------

    def _remove(
        self, session: Session, namespace: str, key: bytes, announce: bool = True
    ) -> Registration:
        entry = self._namespaces[namespace]
        registration, _ = entry.registrations.pop(key)
        del session.registrations[(namespace, key)]
        self.registration_count -= 1
        # Announce while the session still owns the id, so it is not told of its own.
        if announce and entry.subscribers:
            self._announce(entry, Announcement(Change.UNREGISTER, registration))
        if session.identity is None:
            count = session.own_keys[key] - 1
            if count:
                session.own_keys[key] = count
            else:
                del session.own_keys[key]
                del self._owners[key]
        if announce:
            self._drop_if_empty(namespace, entry)
        return registration

    def _current(self, item: tuple[float, int, str, bytes]) -> bool:
        """Whether a queued expiry still belongs to a held TTL registration."""
        _, seq, namespace, key = item
        entry = self._namespaces.get(namespace)
        held = entry.registrations.get(key) if entry is not None else None
        return held is not None and held[1] is None and held[0].seq == seq

    def _detach(self, namespace: str, key: bytes, holder: Session | None) -> Registration:
        """Remove a registration without announcing it (the caller does, or replaces it)."""
        if holder is not None:
            return self._remove(holder, namespace, key, announce=False)
        entry = self._namespaces[namespace]
        registration, _ = entry.registrations.pop(key)
        self.registration_count -= 1
        count = self._ttl_counts[key] - 1
        if count:
            self._ttl_counts[key] = count
        else:
            del self._ttl_counts[key]
        return registration

    def _announce_gone(self, namespace: str, registration: Registration) -> None:
        entry = self._namespaces[namespace]
        if entry.subscribers:
            self._announce(entry, Announcement(Change.UNREGISTER, registration))
        self._drop_if_empty(namespace, entry)

    def _announce(self, entry: _Namespace, announcement: Announcement) -> None:
        key = announcement.registration.peer.key
        for session in list(entry.subscribers):
            if key not in session.own_keys:
                session.subscriber.announce(announcement)

    def _drop_if_empty(self, namespace: str, entry: _Namespace) -> None:
        if not entry.registrations and not entry.subscribers:
            del self._namespaces[namespace]
