"""When each TTL registration ends, and how many each peer id holds.

A heap of ``(expires, seq, namespace, key)``: a refresh or a removal leaves the old
item where it is, skipped when it comes up (`Expiries.current`) and swept out once
stale items outnumber the held ones, so the heap stays O(held) at amortized O(1).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from rendezvous.registry.namespaces import Namespace

Item = tuple[float, int, str, bytes]


class Expiries:
    """The TTL registrations of a registry's ``namespaces``."""

    __slots__ = ("_namespaces", "_per_peer", "_total", "heap")

    def __init__(self, namespaces: dict[str, Namespace]) -> None:
        self._namespaces = namespaces
        self.heap: list[Item] = []
        self._per_peer: dict[bytes, int] = {}
        """TTL registrations held per peer id."""
        self._total = 0
        """TTL registrations held: `heap` is swept when it holds many more."""

    def held_by(self, key: bytes) -> int:
        """How many TTL registrations the peer id ``key`` holds."""
        return self._per_peer.get(key, 0)

    def added(self, expires: float, seq: int, namespace: str, key: bytes) -> None:
        """The TTL registration ``seq`` of ``key`` in ``namespace`` is held until ``expires``."""
        self._per_peer[key] = self._per_peer.get(key, 0) + 1
        self._total += 1
        heap = self.heap
        if len(heap) > 2 * self._total + 64:
            # Refreshes and removals leave stale entries: sweep them, amortized O(1).
            heap[:] = [item for item in heap if self.current(item)]
            heapq.heapify(heap)
        heapq.heappush(heap, (expires, seq, namespace, key))

    def removed(self, key: bytes) -> None:
        """A TTL registration of ``key`` is no longer held."""
        self._total -= 1
        count = self._per_peer[key] - 1
        if count:
            self._per_peer[key] = count
        else:
            del self._per_peer[key]

    def current(self, item: Item) -> bool:
        """Whether a queued expiry still belongs to a held TTL registration."""
        _, seq, namespace, key = item
        entry = self._namespaces.get(namespace)
        held = entry.registrations.get(key) if entry is not None else None
        return held is not None and held[1] is None and held[0].seq == seq

    def next(self) -> float | None:
        """When the next TTL registration ends, or None if none is held."""
        heap = self.heap
        while heap and not self.current(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def ended(self, now: float) -> Iterator[tuple[str, bytes]]:
        """(namespace, key) of each TTL registration ended by ``now``, one at a time: the
        caller removes each before the next is looked at."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            if self.current(item):
                yield item[2], item[3]
