"""The interface between the dialects and the registry's storage.

Every request is answered through the session's `Client`, never through a return
value, so a backend may answer at once (memory) or after a round trip (Redis) without
the dialect code changing. A backend answers each session's requests in the order
they were made, and delivers a subscription's snapshot before any push that follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred

from rendezvous.model import Announcement, Peer, Refused, Registration
from rendezvous.registry import Session


class Client(Protocol):
    """A session's side: where answers and pushes for it go."""

    def announce(self, announcement: Announcement) -> None:
        """A REGISTER or UNREGISTER in a namespace the session subscribed to."""

    def snapshot(self, namespace: str, registrations: list[Registration]) -> None:
        """The namespace's registrations when the session entered rendezvous."""

    def discovered(
        self, request_id: int | None, namespace: str, registrations: list[Registration]
    ) -> None:
        """The answer to a DISCOVER."""

    def refused(self, request_id: int | None, refusal: Refused) -> None:
        """A request was refused."""


class TTLClient(Client, Protocol):
    """A client that makes TTL registrations (a standard-dialect session): also told
    when one is made."""

    def registered(self, request_id: int | None, registration: Registration) -> None:
        """The answer to `Store.register_ttl`: the registration as now held."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    sessions: int
    registrations: int
    namespaces: int
    subscriptions: int


class Store(Protocol):
    """Registrations and subscriptions, shared by every dialect of a daemon."""

    def start(self) -> None:
        """The daemon starts: connect to whatever backs the store (never blocks)."""

    def stop(self) -> Deferred[None]:
        """The daemon stops: where other daemons share the registry, remove and announce
        its sessions' registrations; disconnect. (A store of one daemon has nobody left
        to tell.)"""

    def open_session(self, client: Client, identity: bytes | None = None) -> Session:
        """Admit a client (raises `Refused` when full); ``identity`` is an authenticated id."""

    def close_session(self, session: Session) -> None:
        """The client is gone: remove and announce everything it registered."""

    def register(
        self, session: Session, namespace: str, peer: Peer, request_id: int | None
    ) -> None: ...

    def unregister(
        self, session: Session, namespace: str, key: bytes, request_id: int | None
    ) -> None: ...

    def subscribe(self, session: Session, namespace: str, request_id: int | None) -> None: ...

    def discover(
        self, session: Session, namespace: str, limit: int, request_id: int | None
    ) -> None: ...

    def register_ttl(
        self, session: Session, namespace: str, peer: Peer, ttl: int, request_id: int | None
    ) -> None:
        """A registration of the session's authenticated id that lasts ``ttl`` seconds
        (not the session's life); answered by `TTLClient.registered`."""

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
        """Registrations (re)made after change ``after``, oldest change first, of
        ``namespace`` or of all (None), only those carrying a signed peer record unless
        told otherwise; answered by `Client.discovered` (`Registration.seq` tells the
        position reached)."""

    def stats(self) -> StoreStats: ...
