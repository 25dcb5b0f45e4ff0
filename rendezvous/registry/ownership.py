"""Who holds what, and who speaks for a peer id.

Over libp2p a session speaks for its authenticated peer id alone. On a raw stream a
session owns the ids it registered first, for as long as it holds a registration of
them: no other session may replace or remove them. Nobody is told of its own
registrations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from rendezvous.model import Announcement, Refused, Registration, Status


class Subscriber(Protocol):
    """What the registry pushes announcements to (a live-dialect session)."""

    def announce(self, announcement: Announcement) -> None: ...


FanOut = Callable[[Sequence[Subscriber], Announcement], None]
"""Hands one announcement to many subscribers (`announce_each`, or a dialect's own)."""


def announce_each(subscribers: Sequence[Subscriber], announcement: Announcement) -> None:
    """The plain fan-out: each subscriber in turn."""
    for subscriber in subscribers:
        subscriber.announce(announcement)


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


def not_authorized(why: str) -> Refused:
    return Refused(Status.NOT_AUTHORIZED, why)


OTHER_ID = "peer id differs from the authenticated one"
OTHER_SESSION = "peer id is registered by another session"


class Owners:
    """The unauthenticated session that owns each peer id it registered."""

    __slots__ = ("_by_key", "fan_out")

    def __init__(self) -> None:
        self._by_key: dict[bytes, Session] = {}
        self.fan_out: FanOut = announce_each
        """How an announcement reaches the subscribers `tell` picked."""

    def owner(self, key: bytes) -> Session | None:
        return self._by_key.get(key)

    def check(self, session: Session, key: bytes) -> None:
        """`Refused` unless ``session`` may speak for ``key`` at all."""
        identity = session.identity
        if identity is not None:
            if key != identity:
                raise not_authorized(OTHER_ID)
        else:
            owner = self._by_key.get(key)
            if owner is not None and owner is not session:
                raise not_authorized(OTHER_SESSION)

    def check_held(self, session: Session, holder: Session | None) -> None:
        """`Refused` unless ``session`` may replace a registration of its id that it does
        not hold: ``holder``'s, or a TTL registration's (None)."""
        if holder is not None or session.identity is None:
            # Held by a session that no longer owns the id (libp2p), or a TTL
            # registration that an unauthenticated session cannot vouch for.
            raise not_authorized(OTHER_SESSION)

    def claim(self, session: Session, key: bytes) -> None:
        """``session`` now holds a registration of ``key``."""
        if session.identity is None:
            self._by_key[key] = session

    def release(self, session: Session, key: bytes) -> None:
        """``session`` gave up a registration of ``key`` (already off its list)."""
        if session.identity is None and all(k != key for _, k in session.registrations):
            self._by_key.pop(key, None)  # (a closing session's list is emptied first)

    def visible_to(self, session: Session, held: dict[bytes, Registration]) -> list[Registration]:
        """The registrations of ``held`` (a namespace's) that ``session`` is told of: all
        but those of the ids it speaks for."""
        identity, owners = session.identity, self._by_key
        return [
            registration
            for key, registration in held.items()
            if key != identity and owners.get(key) is not session
        ]

    def tell(self, subscribers: Iterable[Session], announcement: Announcement) -> None:
        """Hand ``announcement`` to every subscriber but the one that speaks for its id."""
        key = announcement.registration.key
        owner = self._by_key.get(key)
        told = [
            session.subscriber
            for session in subscribers
            if session is not owner and (session.identity is None or session.identity != key)
        ]
        if told:
            self.fan_out(told, announcement)
