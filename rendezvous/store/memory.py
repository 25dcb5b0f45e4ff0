"""The embedded default: the registry in this process, no external service.

TTL registrations are expired on the injected clock, with one delayed call at a time
set for the registry's next expiry.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from rendezvous.limits import Limits
from rendezvous.model import Peer, Refused, Status
from rendezvous.registry import Registry, Session
from rendezvous.registry.ownership import FanOut
from rendezvous.store.base import Client, StoreStats, TTLClient


class MemoryStore:
    """A `Store` answering every request at once from an in-process `Registry`."""

    def __init__(self, limits: Limits | None = None, clock: IReactorTime | None = None) -> None:
        self.registry = Registry(limits)
        self._clock = clock
        self._expiry: IDelayedCall | None = None
        self._expiry_when = 0.0
        """The expiry `_expiry` was made for."""

    @property
    def clock(self) -> IReactorTime:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

    def start(self) -> None:
        pass

    def use_fan_out(self, fan_out: FanOut) -> None:
        """Push announcements to many subscribers through ``fan_out``."""
        self.registry.use_fan_out(fan_out)

    def stop(self) -> Deferred[None]:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        return succeed(None)

    def open_session(self, client: Client, identity: bytes | None = None) -> Session:
        return self.registry.open_session(client, identity)

    def close_session(self, session: Session) -> None:
        self.registry.close_session(session)

    def register(
        self, session: Session, namespace: str, peer: Peer, request_id: int | None
    ) -> None:
        try:
            self.registry.register(session, namespace, peer)
        except Refused as refusal:
            _client(session).refused(request_id, refusal)

    def unregister(
        self, session: Session, namespace: str, key: bytes, request_id: int | None
    ) -> None:
        try:
            self.registry.unregister(session, namespace, key)
        except Refused as refusal:
            _client(session).refused(request_id, refusal)

    def subscribe(self, session: Session, namespace: str, request_id: int | None) -> None:
        client = _client(session)
        try:
            registrations = self.registry.subscribe(session, namespace)
        except Refused as refusal:
            client.refused(request_id, refusal)
        else:
            client.snapshot(namespace, registrations)

    def discover(
        self, session: Session, namespace: str, limit: int, request_id: int | None
    ) -> None:
        _client(session).discovered(request_id, namespace, self.registry.discover(namespace, limit))

    def register_ttl(
        self, session: Session, namespace: str, peer: Peer, ttl: int, request_id: int | None
    ) -> None:
        client: TTLClient = session.subscriber  # type: ignore[assignment]
        identity = session.identity
        try:
            if identity is None:
                raise Refused(Status.NOT_AUTHORIZED, "TTL registrations need an authenticated id")
            expires = self.clock.seconds() + ttl
            registration = self.registry.register_ttl(identity, namespace, peer, expires)
        except Refused as refusal:
            client.refused(request_id, refusal)
            return
        self._schedule()
        client.registered(request_id, registration)

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
        found = self.registry.discover_since(namespace, after, limit, signed_only=signed_only)
        _client(session).discovered(request_id, namespace or "", found)

    def _schedule(self) -> None:
        """Have one delayed call pending for the registry's next expiry."""
        when = self.registry.next_expiry()
        call = self._expiry
        if call is not None and call.active():
            # Compared with the expiry it was made for: its own time is a later clock
            # reading plus the delay, so would move (and cost a new call) every time.
            if when is not None and self._expiry_when <= when:
                return
            call.cancel()
        self._expiry = None
        if when is not None:
            delay = max(0.0, when - self.clock.seconds())
            self._expiry = self.clock.callLater(delay, self._expire)
            self._expiry_when = when

    def _expire(self) -> None:
        self._expiry = None
        self.registry.expire(self.clock.seconds())
        self._schedule()

    def stats(self) -> StoreStats:
        registry = self.registry
        return StoreStats(
            sessions=registry.session_count,
            registrations=registry.registration_count,
            namespaces=registry.namespace_count,
            subscriptions=registry.subscription_count,
        )


def _client(session: Session) -> Client:
    client: Client = session.subscriber  # type: ignore[assignment]
    return client
