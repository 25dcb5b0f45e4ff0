"""The change index: registrations in order of their latest change, for DISCOVER from
a cookie's position in O(log n + limit), amortized.

Built by the first read (until then changes cost nothing: a daemon that only speaks
the live dialect never builds one). A registration is appended when made (seqs only
grow, so each list stays sorted) and left in place, dead, when removed or replaced:
`Changes.alive` tells. A change costs O(1): it counts the dead, swept out once they
are half a list; a read that walks over many of them compacts what it read. Those with
a signed peer record are kept apart, for the standard dialect's reads of them alone.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterator
from itertools import islice
from operator import attrgetter

from rendezvous.model import Registration

seq_of = attrgetter("seq")
COMPACT_AFTER = 64
"""Dead registrations a read may walk over before it compacts the stretch it read."""


class Run:
    """One list of registrations in increasing seq, and how many of them are dead."""

    __slots__ = ("dead", "registrations")

    def __init__(self, registrations: list[Registration]) -> None:
        self.registrations = registrations
        self.dead = 0


class Changes:
    """The change index of some registrations: a subclass says which are held."""

    __slots__ = ("_signed", "_unsigned", "indexed")

    def __init__(self) -> None:
        self.indexed = False
        self._signed: Run | None = None
        self._unsigned: Run | None = None

    def alive(self, registration: Registration) -> bool:
        """Whether ``registration`` is still held (not removed, not replaced)."""
        raise NotImplementedError

    def held(self) -> Iterator[Registration]:
        """Every registration held, in any order."""
        raise NotImplementedError

    def add(self, registration: Registration) -> None:
        """Index a new registration (once indexed)."""
        if registration.record is None:
            if self._unsigned is None:
                self._unsigned = Run([registration])
            else:
                self._unsigned.registrations.append(registration)
        elif self._signed is None:
            self._signed = Run([registration])
        else:
            self._signed.registrations.append(registration)

    def discard(self, registration: Registration) -> None:
        """``registration``, added earlier, is no longer held (call once `alive` says so)."""
        signed = registration.record is not None
        run = self._signed if signed else self._unsigned
        assert run is not None
        run.dead += 1
        if run.dead * 2 > len(run.registrations):
            alive = self.alive
            run.registrations = [r for r in run.registrations if alive(r)]
            run.dead = 0
            if not run.registrations:
                if signed:
                    self._signed = None
                else:
                    self._unsigned = None

    def take(self, after: int, limit: int, signed_only: bool) -> list[Registration]:
        """At most ``limit`` registrations with seq above ``after``, in increasing seq."""
        if not self.indexed:
            self._build()
        signed, unsigned = self._signed, self._unsigned
        found = [] if signed is None else self._read(signed, after, limit)
        if signed_only or unsigned is None:
            return found
        more = self._read(unsigned, after, limit)
        if not found or not more:
            return found or more
        return list(islice(heapq.merge(found, more, key=seq_of), limit))

    def _build(self) -> None:
        self.indexed = True
        for registration in sorted(self.held(), key=seq_of):
            self.add(registration)

    def _read(self, run: Run, after: int, limit: int) -> list[Registration]:
        registrations, alive = run.registrations, self.alive
        start = i = bisect_right(registrations, after, key=seq_of)
        end = len(registrations)
        found: list[Registration] = []
        while i < end and len(found) < limit:
            registration = registrations[i]
            i += 1
            if alive(registration):
                found.append(registration)
        skipped = i - start - len(found)
        if skipped > COMPACT_AFTER:
            registrations[start:i] = found
            run.dead -= skipped
        return found
