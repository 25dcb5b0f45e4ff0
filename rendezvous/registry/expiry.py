"""When each TTL registration ends, and how many each peer id holds.

A heap of the registrations themselves (they order by expiry, then seq): a refresh or
a removal leaves the old one where it is, skipped when it comes up (`Expiries.current`)
and swept out once stale ones outnumber the held ones, so the heap stays O(held) at
amortized O(1)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from rendezvous.model import Registration
from rendezvous.registry.namespaces import Namespace


class Expiries:
    """The TTL registrations of a registry's ``namespaces``."""

    __slots__ = ("_namespaces", "_per_peer", "_total", "heap")

    def __init__(self, namespaces: dict[str, Namespace]) -> None:
        self._namespaces = namespaces
        self.heap: list[Registration] = []
        self._per_peer: dict[bytes, int] = {}
        """TTL registrations held per peer id."""
        self._total = 0
        """TTL registrations held: `heap` is swept when it holds many more."""

    def held_by(self, key: bytes) -> int:
        """How many TTL registrations the peer id ``key`` holds."""
        return self._per_peer.get(key, 0)

    def added(self, registration: Registration) -> None:
        """The TTL registration ``registration`` is held until it expires."""
        key = registration.peer.key
        self._per_peer[key] = self._per_peer.get(key, 0) + 1
        self._total += 1
        heap = self.heap
        if len(heap) > 2 * self._total + 64:
            # Refreshes and removals leave stale entries: sweep them, amortized O(1).
            heap[:] = [queued for queued in heap if self.current(queued)]
            heapq.heapify(heap)
        heapq.heappush(heap, registration)

    def removed(self, key: bytes) -> None:
        """A TTL registration of ``key`` is no longer held."""
        self._total -= 1
        count = self._per_peer[key] - 1
        if count:
            self._per_peer[key] = count
        else:
            del self._per_peer[key]

    def current(self, registration: Registration) -> bool:
        """Whether a queued registration is still held (not removed, not replaced)."""
        entry = self._namespaces.get(registration.namespace)
        return entry is not None and entry.registrations.get(registration.peer.key) is registration

    def next(self) -> float | None:
        """When the next TTL registration ends, or None if none is held."""
        heap = self.heap
        while heap and not self.current(heap[0]):
            heapq.heappop(heap)
        return heap[0].expires if heap else None

    def ended(self, now: float) -> Iterator[Registration]:
        """Each TTL registration ended by ``now``, one at a time: the caller removes each
        before the next is looked at."""
        heap = self.heap
        while heap and heap[0].expires <= now:  # type: ignore[operator]  # TTL ones
            registration = heapq.heappop(heap)
            if self.current(registration):
                yield registration
