"""`Registry`: the requests that change the registry, and the announcements they make.

Every change is made here, numbered in one order (``seq``, a DISCOVER cookie's
position): a session opens or closes; it registers, unregisters or subscribes; a TTL
registration is made or ends. Who may do what is asked of `Owners`, and it tells the
subscribers; `Expiries` knows when TTL registrations end; each change is indexed for
DISCOVER from a cookie (`rendezvous.registry.changes`) once a read built the index.
What is only read is in `Reads`.
"""

from __future__ import annotations

from rendezvous.limits import Limits
from rendezvous.model import (
    Announcement,
    Change,
    Peer,
    RecordRegistration,
    Refused,
    Registration,
    Status,
    held_registration,
)
from rendezvous.registry.expiry import Expiries
from rendezvous.registry.namespaces import EveryNamespace, Namespace
from rendezvous.registry.ownership import (
    OTHER_ID,
    OTHER_SESSION,
    FanOut,
    Owners,
    Session,
    Subscriber,
    not_authorized,
)
from rendezvous.registry.reads import Reads


class Registry(Reads):
    """All namespaces of one daemon (or the local view of a fleet's)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._namespaces: dict[str, Namespace] = {}
        self._owners = Owners()
        self.session_count = 0
        self.registration_count = 0
        self._seq = 0
        self._expiries = Expiries(self._namespaces)
        self._changes = EveryNamespace(self._namespaces)

    def use_fan_out(self, fan_out: FanOut) -> None:
        """Hand announcements to their subscribers through ``fan_out`` (a dialect's
        way of writing one push to many sessions at once)."""
        self._owners.fan_out = fan_out

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
        owners = self._owners
        owners.check(session, key)
        entry = self._namespaces.get(namespace)
        held = entry.registrations.get(key) if entry is not None else None
        replacing = held is not None and held.holder is session
        if held is not None and not replacing:
            owners.check_held(session, held.holder)
            self._detach(namespace, key, None)
            entry = self._namespaces.get(namespace)
        if not replacing:
            if len(session.registrations) >= self.limits.max_registrations_per_session:
                raise Refused(Status.LIMIT_EXCEEDED, "too many registrations in this session")
            if self.registration_count >= self.limits.max_registrations:
                raise Refused(Status.UNAVAILABLE, "registry is full")
        if entry is None:
            entry = self._namespaces[namespace] = Namespace(namespace)
        self._seq += 1
        registration = held_registration(entry.name, peer, None, self._seq, session)
        entry.registrations[key] = registration
        if replacing and held:
            held.holder = None
        if entry.indexed or self._changes.indexed:
            if replacing and held:
                self._unindex(entry, held)
            self._index(entry, registration)
        if not replacing:
            session.registrations.append((entry.name, key))
            self.registration_count += 1
            owners.claim(session, key)
        if entry.subscribers:
            owners.tell(entry.subscribers, Announcement(Change.REGISTER, registration))
        return registration

    def unregister(self, session: Session, namespace: str, key: bytes) -> bool:
        """Remove the session's registration; False (and no announcement) if it had none."""
        entry = self._namespaces.get(namespace)
        held = entry.registrations.get(key) if entry is not None else None
        holder = held.holder if held is not None else None
        if holder is session:
            self._remove(session, namespace, key)
            return True
        if session.identity is not None and key != session.identity:
            raise not_authorized(OTHER_ID)
        if session.identity is not None and held is not None:
            if holder is None:
                registration = self._detach(namespace, key, None)
                self._announce_gone(namespace, registration)
                return True
            if holder.identity == key:
                self._remove(holder, namespace, key)  # another session of the same peer's
                return True
        owner = self._owners.owner(key)
        if owner is not None and owner is not session:
            raise not_authorized(OTHER_SESSION)
        return False

    def subscribe(self, session: Session, namespace: str) -> list[Registration]:
        """Enter rendezvous: returns the namespace's registrations the session does not own."""
        entry = self._namespaces.get(namespace)
        if entry is None or session not in entry.subscribers:
            if len(session.subscriptions) >= self.limits.max_subscriptions_per_session:
                raise Refused(Status.LIMIT_EXCEEDED, "too many subscriptions in this session")
            if entry is None:
                entry = self._namespaces[namespace] = Namespace(namespace)
            entry.subscribers[session] = None
            session.subscriptions.append(entry.name)
        return self._owners.visible_to(session, entry.registrations)

    def register_ttl(
        self, identity: bytes, namespace: str, peer: Peer, expires: float
    ) -> Registration:
        """Add or replace the TTL registration of the authenticated ``identity``.

        It replaces any registration of the id in ``namespace`` (a live session's too),
        lasts until ``expires`` on the caller's clock, and is announced.
        """
        key = peer.key
        if key != identity:
            raise not_authorized(OTHER_ID)
        entry = self._namespaces.get(namespace)
        held = entry.registrations.get(key) if entry is not None else None
        adds_ttl = held is None or held.holder is not None
        if adds_ttl and self._expiries.held_by(key) >= self.limits.max_registrations_per_peer:
            raise Refused(Status.LIMIT_EXCEEDED, "too many registrations for this peer")
        if held is not None:
            self._detach(namespace, key, held.holder)
        elif self.registration_count >= self.limits.max_registrations:
            raise Refused(Status.UNAVAILABLE, "registry is full")
        entry = self._namespaces.get(namespace)
        if entry is None:
            entry = self._namespaces[namespace] = Namespace(namespace)
        self._seq += 1
        record = peer.signed_peer_record
        registration: Registration
        if record is not None and peer.from_record_alone:
            # The record and the id are all it holds (80 bytes, its expiry time inline).
            registration = RecordRegistration(entry.name, key, record, expires, self._seq)
        else:
            registration = held_registration(entry.name, peer, expires, self._seq, None)
        entry.registrations[key] = registration
        self._index(entry, registration)
        self.registration_count += 1
        self._expiries.added(registration)
        if entry.subscribers:
            self._owners.tell(entry.subscribers, Announcement(Change.REGISTER, registration))
        return registration

    def next_expiry(self) -> float | None:
        """When the next TTL registration ends, or None if none is held."""
        return self._expiries.next()

    def expire(self, now: float) -> list[Registration]:
        """Remove and announce (UNREGISTER) every TTL registration ended by ``now``."""
        expired = []
        for ended in self._expiries.ended(now):
            namespace = ended.namespace
            registration = self._detach(namespace, ended.key, None)
            self._announce_gone(namespace, registration)
            expired.append(registration)
        return expired

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
        registration = entry.registrations.pop(key)
        registration.holder = None
        self._unindex(entry, registration)
        self.registration_count -= 1
        # Announce while the session still owns the id, so it is not told of its own.
        if announce and entry.subscribers:
            self._owners.tell(entry.subscribers, Announcement(Change.UNREGISTER, registration))
        self._owners.release(session, key)
        if announce:
            self._drop_if_empty(namespace, entry)
        return registration

    def _detach(self, namespace: str, key: bytes, holder: Session | None) -> Registration:
        """Remove a registration without announcing it (the caller does, or replaces it)."""
        if holder is not None:
            return self._remove(holder, namespace, key, announce=False)
        entry = self._namespaces[namespace]
        registration = entry.registrations.pop(key)
        self._unindex(entry, registration)
        self.registration_count -= 1
        self._expiries.removed(registration)
        return registration

    def _index(self, entry: Namespace, registration: Registration) -> None:
        if entry.indexed:
            entry.add(registration)
        if self._changes.indexed:
            self._changes.add(registration)

    def _unindex(self, entry: Namespace, registration: Registration) -> None:
        if entry.indexed:
            entry.discard(registration)
        if self._changes.indexed:
            self._changes.discard(registration)

    def _announce_gone(self, namespace: str, registration: Registration) -> None:
        entry = self._namespaces[namespace]
        if entry.subscribers:
            self._owners.tell(entry.subscribers, Announcement(Change.UNREGISTER, registration))
        self._drop_if_empty(namespace, entry)

    def _drop_if_empty(self, namespace: str, entry: Namespace) -> None:
        if not entry.registrations and not entry.subscribers:
            del self._namespaces[namespace]
