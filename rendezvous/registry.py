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
from bisect import bisect_right
from collections.abc import Iterator
from itertools import islice
from operator import attrgetter
from typing import Protocol

from rendezvous.limits import Limits
from rendezvous.model import Announcement, Change, Peer, Refused, Registration, Status


class Subscriber(Protocol):
    """What the registry pushes announcements to (a live-dialect session)."""

    def announce(self, announcement: Announcement) -> None: ...


class Session:
    """What the registry keeps for one connected client.

    Lists, not sets: a session holds a few entries (a daemon holds many sessions), and
    the registry finds a registration's holder and a namespace's subscribers from the
    namespace. The sessions of other stores (a worker's, the Redis store's) subclass it,
    set the first three attributes and keep what they hold their own way.
    """

    __slots__ = ("identity", "open", "registrations", "subscriber", "subscriptions")

    def __init__(self, subscriber: Subscriber, identity: bytes | None) -> None:
        self.subscriber = subscriber
        self.identity = identity
        """The authenticated peer id (libp2p), or None: the session owns what it registers."""
        self.open = True
        self.registrations: list[tuple[str, bytes]] = []
        """(namespace, peer id) of each registration the session holds."""
        self.subscriptions: list[str] = []
        """The namespaces the session is in rendezvous with."""


_seq_of = attrgetter("seq")
_ABSENT: tuple[None, None] = (None, None)
_COMPACT_AFTER = 64
"""Dead registrations a read may walk over before it compacts the stretch it read."""


class _Run:
    """One list of registrations in increasing seq, and how many of them are dead."""

    __slots__ = ("dead", "slots")

    def __init__(self, slots: list[Registration]) -> None:
        self.slots = slots
        self.dead = 0


class _Changes:
    """Registrations in order of their latest change (seq), those with a signed peer
    record apart: DISCOVER from a cookie's position in O(log n + limit), amortized.

    Built by the first read (until then changes cost nothing: a daemon that only
    speaks the live dialect never builds one). A registration is appended when made
    (seqs only grow, so each list stays sorted) and left in place, dead, when removed or
    replaced: `alive` tells. A change costs O(1): it counts the dead, swept out once
    they are half a list; a read that walks over many of them compacts what it read.
    """

    __slots__ = ("_signed", "_unsigned", "indexed")

    def __init__(self) -> None:
        self.indexed = False
        self._signed: _Run | None = None
        self._unsigned: _Run | None = None

    def alive(self, registration: Registration) -> bool:
        """Whether ``registration`` is still held (not removed, not replaced)."""
        raise NotImplementedError

    def held(self) -> Iterator[Registration]:
        """Every registration held, in any order."""
        raise NotImplementedError

    def add(self, registration: Registration) -> None:
        """Index a new registration (once indexed)."""
        if registration.peer.signed_peer_record is None:
            if self._unsigned is None:
                self._unsigned = _Run([registration])
            else:
                self._unsigned.slots.append(registration)
        elif self._signed is None:
            self._signed = _Run([registration])
        else:
            self._signed.slots.append(registration)

    def discard(self, registration: Registration) -> None:
        """``registration``, added earlier, is no longer held (call once `alive` says so)."""
        signed = registration.peer.signed_peer_record is not None
        run = self._signed if signed else self._unsigned
        assert run is not None
        run.dead += 1
        if run.dead * 2 > len(run.slots):
            alive = self.alive
            run.slots = [r for r in run.slots if alive(r)]
            run.dead = 0
            if not run.slots:
                if signed:
                    self._signed = None
                else:
                    self._unsigned = None

    def take(self, after: int, limit: int, signed_only: bool) -> list[Registration]:
        """At most ``limit`` registrations with seq above ``after``, in increasing seq."""
        if not self.indexed:
            self._build()
        signed, unsigned = self._signed, self._unsigned
        found = [] if signed is None else self._read(signed, after, limit)
        if signed_only or unsigned is None:
            return found
        more = self._read(unsigned, after, limit)
        if not found or not more:
            return found or more
        return list(islice(heapq.merge(found, more, key=_seq_of), limit))

    def _build(self) -> None:
        self.indexed = True
        for registration in sorted(self.held(), key=_seq_of):
            self.add(registration)

    def _read(self, run: _Run, after: int, limit: int) -> list[Registration]:
        slots, alive = run.slots, self.alive
        start = i = bisect_right(slots, after, key=_seq_of)
        end = len(slots)
        found: list[Registration] = []
        while i < end and len(found) < limit:
            registration = slots[i]
            i += 1
            if alive(registration):
                found.append(registration)
        skipped = i - start - len(found)
        if skipped > _COMPACT_AFTER:
            slots[start:i] = found
            run.dead -= skipped
        return found


class _Namespace(_Changes):
    """One namespace: its registrations by peer id, its subscribers, its change index."""

    __slots__ = ("name", "registrations", "subscribers")

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        """The one copy of the name that registrations and sessions refer to."""
        self.registrations: dict[bytes, tuple[Registration, Session | None]] = {}
        self.subscribers: dict[Session, None] = {}

    def alive(self, registration: Registration) -> bool:
        return self.registrations.get(registration.peer.key, _ABSENT)[0] is registration

    def held(self) -> Iterator[Registration]:
        return (registration for registration, _ in self.registrations.values())


class _EveryNamespace(_Changes):
    """The change index of all namespaces together (DISCOVER of every namespace)."""

    __slots__ = ("_namespaces",)

    def __init__(self, namespaces: dict[str, _Namespace]) -> None:
        super().__init__()
        self._namespaces = namespaces

    def alive(self, registration: Registration) -> bool:
        entry = self._namespaces.get(registration.namespace)
        return entry is not None and entry.alive(registration)

    def held(self) -> Iterator[Registration]:
        return (r for entry in self._namespaces.values() for r in entry.held())


class Registry:
    """All namespaces of one daemon (or the local view of a fleet's)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._namespaces: dict[str, _Namespace] = {}
        self._owners: dict[bytes, Session] = {}
        """The unauthenticated session that holds each peer id it registered."""
        self.session_count = 0
        self.registration_count = 0
        self._seq = 0
        self._expiries: list[tuple[float, int, str, bytes]] = []
        self._ttl_counts: dict[bytes, int] = {}
        """TTL registrations held per peer id."""
        self._ttl_total = 0
        """TTL registrations held: `_expiries` is swept when it holds many more."""
        self._changes = _EveryNamespace(self._namespaces)
        """Every namespace's registrations in order of change (each namespace has its own)."""

    # -- sessions ---------------------------------------------------------

    def open_session(self, subscriber: Subscriber, identity: bytes | None = None) -> Session:
        """Admit a client; `Refused` when the daemon holds its maximum of sessions."""
        if self.session_count >= self.limits.max_sessions:
            raise Refused(Status.UNAVAILABLE, "too many sessions")
        self.session_count += 1
        return Session(subscriber, identity)

    def close_session(self, session: Session) -> None:
        """Forget a client, announcing UNREGISTER for everything it registered."""
        if not session.open:
            return
        session.open = False
        self.session_count -= 1
        for namespace in session.subscriptions:
            entry = self._namespaces[namespace]
            del entry.subscribers[session]
            self._drop_if_empty(namespace, entry)
        session.subscriptions = []
        held, session.registrations = session.registrations, []
        for namespace, key in held:
            self._release(session, namespace, key)

    # -- requests ---------------------------------------------------------

    def register(self, session: Session, namespace: str, peer: Peer) -> Registration:
        """Add or replace ``peer`` in ``namespace`` and announce it."""
        key = peer.key
        identity = session.identity
        if identity is not None:
            if key != identity:
                raise Refused(Status.NOT_AUTHORIZED, "peer id differs from the authenticated one")
        else:
            owner = self._owners.get(key)
            if owner is not None and owner is not session:
                raise Refused(Status.NOT_AUTHORIZED, "peer id is registered by another session")
        entry = self._namespaces.get(namespace)
        held = entry.registrations.get(key) if entry is not None else None
        replacing = held is not None and held[1] is session
        if held is not None and not replacing:
            if held[1] is not None or identity is None:
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
            entry = self._namespaces[namespace] = _Namespace(namespace)
        self._seq += 1
        registration = Registration(entry.name, peer, seq=self._seq)
        entry.registrations[key] = (registration, session)
        if entry.indexed or self._changes.indexed:
            if replacing and held:
                self._unindex(entry, held[0])
            self._index(entry, registration)
        if not replacing:
            session.registrations.append((entry.name, key))
            self.registration_count += 1
            if identity is None:
                self._owners[key] = session
        if entry.subscribers:
            self._announce(entry, Announcement(Change.REGISTER, registration))
        return registration

    def unregister(self, session: Session, namespace: str, key: bytes) -> bool:
        """Remove the session's registration; False (and no announcement) if it had none."""
        entry = self._namespaces.get(namespace)
        held = entry.registrations.get(key) if entry is not None else None
        if held is not None and held[1] is session:
            self._remove(session, namespace, key)
            return True
        if session.identity is not None and key != session.identity:
            raise Refused(Status.NOT_AUTHORIZED, "peer id differs from the authenticated one")
        if session.identity is not None:
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
        entry = self._namespaces.get(namespace)
        if entry is None or session not in entry.subscribers:
            if len(session.subscriptions) >= self.limits.max_subscriptions_per_session:
                raise Refused(Status.LIMIT_EXCEEDED, "too many subscriptions in this session")
            if entry is None:
                entry = self._namespaces[namespace] = _Namespace(namespace)
            entry.subscribers[session] = None
            session.subscriptions.append(entry.name)
        identity, owners = session.identity, self._owners
        return [
            registration
            for key, (registration, _) in entry.registrations.items()
            if key != identity and owners.get(key) is not session
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
            entry = self._namespaces[namespace] = _Namespace(namespace)
        self._seq += 1
        registration = Registration(entry.name, peer, expires, seq=self._seq)
        entry.registrations[key] = (registration, None)
        self._index(entry, registration)
        self.registration_count += 1
        self._ttl_counts[key] = self._ttl_counts.get(key, 0) + 1
        self._ttl_total += 1
        expiries = self._expiries
        if len(expiries) > 2 * self._ttl_total + 64:
            # Refreshes and removals leave stale entries: sweep them, amortized O(1).
            expiries[:] = [item for item in expiries if self._current(item)]
            heapq.heapify(expiries)
        heapq.heappush(expiries, (expires, self._seq, namespace, key))
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
        a signed peer record. O(log n + limit), amortized, from the change indexes.
        """
        changes = self._changes if namespace is None else self._namespaces.get(namespace)
        if changes is None or limit <= 0:
            return []
        return changes.take(after, limit, signed_only)

    @property
    def last_seq(self) -> int:
        """The number of the latest change: a DISCOVER cookie's position."""
        return self._seq

    # -- introspection ----------------------------------------------------

    @property
    def namespace_count(self) -> int:
        return len(self._namespaces)

    @property
    def subscription_count(self) -> int:
        return sum(len(entry.subscribers) for entry in self._namespaces.values())

    def namespaces(self) -> Iterator[str]:
        return iter(self._namespaces)

    def namespace_sizes(self) -> Iterator[tuple[str, int, int]]:
        """(name, registrations, subscribers) of every namespace, in O(namespaces)."""
        return (
            (name, len(entry.registrations), len(entry.subscribers))
            for name, entry in self._namespaces.items()
        )

    # -- internals ----------------------------------------------------------

    def _remove(
        self, session: Session, namespace: str, key: bytes, announce: bool = True
    ) -> Registration:
        """Remove a registration ``session`` holds."""
        session.registrations.remove((namespace, key))
        return self._release(session, namespace, key, announce)

    def _release(
        self, session: Session, namespace: str, key: bytes, announce: bool = True
    ) -> Registration:
        """Remove a registration ``session`` held, no longer in its list."""
        entry = self._namespaces[namespace]
        registration, _ = entry.registrations.pop(key)
        self._unindex(entry, registration)
        self.registration_count -= 1
        # Announce while the session still owns the id, so it is not told of its own.
        if announce and entry.subscribers:
            self._announce(entry, Announcement(Change.UNREGISTER, registration))
        if session.identity is None and all(k != key for _, k in session.registrations):
            self._owners.pop(key, None)  # (a closing session's list is emptied first)
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
        self._unindex(entry, registration)
        self.registration_count -= 1
        self._ttl_total -= 1
        count = self._ttl_counts[key] - 1
        if count:
            self._ttl_counts[key] = count
        else:
            del self._ttl_counts[key]
        return registration

    def _index(self, entry: _Namespace, registration: Registration) -> None:
        if entry.indexed:
            entry.add(registration)
        if self._changes.indexed:
            self._changes.add(registration)

    def _unindex(self, entry: _Namespace, registration: Registration) -> None:
        if entry.indexed:
            entry.discard(registration)
        if self._changes.indexed:
            self._changes.discard(registration)

    def _announce_gone(self, namespace: str, registration: Registration) -> None:
        entry = self._namespaces[namespace]
        if entry.subscribers:
            self._announce(entry, Announcement(Change.UNREGISTER, registration))
        self._drop_if_empty(namespace, entry)

    def _announce(self, entry: _Namespace, announcement: Announcement) -> None:
        key = announcement.registration.peer.key
        owner = self._owners.get(key)
        for session in list(entry.subscribers):
            # Nobody is told of its own registrations.
            if session is not owner:
                identity = session.identity
                if identity is None or identity != key:
                    session.subscriber.announce(announcement)

    def _drop_if_empty(self, namespace: str, entry: _Namespace) -> None:
        if not entry.registrations and not entry.subscribers:
            del self._namespaces[namespace]
