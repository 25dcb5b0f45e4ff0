"""The registry: namespaces, registrations, subscribers and limits, as pure state.

It knows nothing of sockets, dialects or time sources; it tells each subscriber of a
namespace about every change there through `Subscriber.announce`.
"""

from __future__ import annotations

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
        if not replacing:
            if entry is not None and key in entry.registrations:
                # Held by a session that no longer owns the id (libp2p) or by none.
                raise Refused(Status.NOT_AUTHORIZED, "peer id is registered by another session")
            if len(session.registrations) >= self.limits.max_registrations_per_session:
                raise Refused(Status.LIMIT_EXCEEDED, "too many registrations in this session")
            if self.registration_count >= self.limits.max_registrations:
                raise Refused(Status.UNAVAILABLE, "registry is full")
        if entry is None:
            entry = self._namespaces[namespace] = _Namespace()
        registration = Registration(namespace, peer)
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

    def _remove(self, session: Session, namespace: str, key: bytes) -> None:
        entry = self._namespaces[namespace]
        registration, _ = entry.registrations.pop(key)
        del session.registrations[(namespace, key)]
        self.registration_count -= 1
        # Announce while the session still owns the id, so it is not told of its own.
        if entry.subscribers:
            self._announce(entry, Announcement(Change.UNREGISTER, registration))
        if session.identity is None:
            count = session.own_keys[key] - 1
            if count:
                session.own_keys[key] = count
            else:
                del session.own_keys[key]
                del self._owners[key]
        self._drop_if_empty(namespace, entry)

    def _announce(self, entry: _Namespace, announcement: Announcement) -> None:
        key = announcement.registration.peer.key
        for session in list(entry.subscribers):
            if key not in session.own_keys:
                session.subscriber.announce(announcement)

    def _drop_if_empty(self, namespace: str, entry: _Namespace) -> None:
        if not entry.registrations and not entry.subscribers:
            del self._namespaces[namespace]
