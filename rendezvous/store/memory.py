"""The embedded default: the registry in this process, no external service."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from rendezvous.limits import Limits
from rendezvous.model import Peer, Refused
from rendezvous.registry import Registry, Session
from rendezvous.store.base import Client, StoreStats


class MemoryStore:
    """A `Store` answering every request at once from an in-process `Registry`."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.registry = Registry(limits)

    def start(self) -> None:
        pass

    def stop(self) -> Deferred[None]:
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
