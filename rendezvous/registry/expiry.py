"""When each TTL registration ends, and how many each peer id holds.

A heap of the registrations themselves (they order by expiry; those that end at the
same time are taken out together and end in order of seq): a refresh or
a removal leaves the old one where it is, skipped when it comes up (`Expiries.current`)
and swept out once stale ones outnumber the held ones, so the heap stays O(held) at
amortized O(1).

How many TTL registrations a peer id holds (its limit) is counted in the namespaces
that hold any, as long as they are at most `SCAN_NAMESPACES`: a lookup in each, when a
peer makes a new one. Past that, a count per peer id is kept (a dictionary entry each,
built once from the namespaces and kept until no TTL registration is left), so a
daemon whose TTL registrations are in a few namespaces, as most, spends no memory on it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from rendezvous.model import Registration
from rendezvous.registry.changes import seq_of
from rendezvous.registry.namespaces import Namespace

SCAN_NAMESPACES = 8
"""Namespaces holding TTL registrations up to which a peer's are counted by looking in
each, rather than kept counted per peer id."""


class Expiries:
    """The TTL registrations of a registry's ``namespaces``."""

    __slots__ = ("_namespaces", "_per_peer", "_spread", "_total", "heap")

    def __init__(self, namespaces: dict[str, Namespace]) -> None:
        self._namespaces = namespaces
        self.heap: list[Registration] = []
        self._spread: dict[str, int] = {}
        """TTL registrations held per namespace, for those that hold any."""
        self._per_peer: dict[bytes, int] | None = None
        """TTL registrations held per peer id, once `_spread` went past `SCAN_NAMESPACES`."""
        self._total = 0
        """TTL registrations held: `heap` is swept when it holds many more."""

    def held_by(self, key: bytes) -> int:
        """How many TTL registrations the peer id ``key`` holds."""
        per_peer = self._per_peer
        if per_peer is not None:
            return per_peer.get(key, 0)
        count = 0
        namespaces = self._namespaces
        for name in self._spread:
            held = namespaces[name].registrations.get(key)
            if held is not None and held.holder is None:
                count += 1
        return count

    def added(self, registration: Registration) -> None:
        """The TTL registration ``registration`` is held until it expires."""
        spread, name = self._spread, registration.namespace
        spread[name] = spread.get(name, 0) + 1
        per_peer = self._per_peer
        if per_peer is not None:
            key = registration.key
            per_peer[key] = per_peer.get(key, 0) + 1
        elif len(spread) > SCAN_NAMESPACES:
            self._count_per_peer()
        self._total += 1
        heap = self.heap
        if len(heap) > 2 * self._total + 64:
            # Refreshes and removals leave stale entries: sweep them, amortized O(1).
            heap[:] = [queued for queued in heap if self.current(queued)]
            heapq.heapify(heap)
        heapq.heappush(heap, registration)

    def removed(self, registration: Registration) -> None:
        """The TTL registration ``registration`` is no longer held."""
        self._total -= 1
        spread, name = self._spread, registration.namespace
        count = spread[name] - 1
        if count:
            spread[name] = count
        else:
            del spread[name]
        per_peer = self._per_peer
        if per_peer is not None:
            if not spread:
                self._per_peer = None
                return
            key = registration.key
            count = per_peer[key] - 1
            if count:
                per_peer[key] = count
            else:
                del per_peer[key]

    def _count_per_peer(self) -> None:
        per_peer: dict[bytes, int] = {}
        namespaces = self._namespaces
        for name in self._spread:
            for key, held in namespaces[name].registrations.items():
                if held.holder is None:
                    per_peer[key] = per_peer.get(key, 0) + 1
        self._per_peer = per_peer

    def current(self, registration: Registration) -> bool:
        """Whether a queued registration is still held (not removed, not replaced)."""
        entry = self._namespaces.get(registration.namespace)
        return entry is not None and entry.registrations.get(registration.key) is registration

    def next(self) -> float | None:
        """When the next TTL registration ends, or None if none is held."""
        heap = self.heap
        while heap and not self.current(heap[0]):
            heapq.heappop(heap)
        return heap[0].expires if heap else None

    def ended(self, now: float) -> Iterator[Registration]:
        """Each TTL registration ended by ``now``, one at a time: the caller removes each
        before the next is looked at."""
        heap, pop = self.heap, heapq.heappop
        while heap and heap[0].expires <= now:  # type: ignore[operator]  # TTL ones
            first = pop(heap)
            when = first.expires
            if heap and heap[0].expires == when:
                # Registrations that end at the same time end in the order they were
                # made (the heap keeps them in any order).
                ties = [first]
                while heap and heap[0].expires == when:
                    ties.append(pop(heap))
                ties.sort(key=seq_of)
                for registration in ties:
                    if self.current(registration):
                        yield registration
            elif self.current(first):
                yield first
