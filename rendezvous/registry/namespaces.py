"""One namespace's state, and every namespace's registrations as one change index."""

from __future__ import annotations

from collections.abc import Iterator

from rendezvous.model import Registration
from rendezvous.registry.changes import Changes
from rendezvous.registry.ownership import Session


class Namespace(Changes):
    """One namespace: its registrations by peer id (each knows the session that holds
    it), its subscribers, its change index."""

    __slots__ = ("name", "registrations", "subscribers")

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        """The one copy of the name that registrations and sessions refer to."""
        self.registrations: dict[bytes, Registration] = {}
        self.subscribers: dict[Session, None] = {}

    def alive(self, registration: Registration) -> bool:
        return self.registrations.get(registration.key) is registration

    def held(self) -> Iterator[Registration]:
        return iter(self.registrations.values())


class EveryNamespace(Changes):
    """The change index of all namespaces together (DISCOVER of every namespace)."""

    __slots__ = ("_namespaces",)

    def __init__(self, namespaces: dict[str, Namespace]) -> None:
        super().__init__()
        self._namespaces = namespaces

    def alive(self, registration: Registration) -> bool:
        entry = self._namespaces.get(registration.namespace)
        return entry is not None and entry.alive(registration)

    def held(self) -> Iterator[Registration]:
        return (r for entry in self._namespaces.values() for r in entry.held())
