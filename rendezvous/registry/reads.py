"""What the registry answers without changing anything: DISCOVER (first come, or from
a cookie's position) and the counts that status pages and metrics show."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from rendezvous.model import Registration
from rendezvous.registry.namespaces import EveryNamespace, Namespace


class Reads:
    """The read side of `rendezvous.registry.Registry`, over its state."""

    _namespaces: dict[str, Namespace]
    _changes: EveryNamespace
    """Every namespace's registrations in order of change (each namespace has its own)."""
    _seq: int

    def discover(self, namespace: str, limit: int) -> list[Registration]:
        """At most ``limit`` registrations of ``namespace``, oldest first."""
        entry = self._namespaces.get(namespace)
        if entry is None:
            return []
        return list(islice(entry.registrations.values(), limit))

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
