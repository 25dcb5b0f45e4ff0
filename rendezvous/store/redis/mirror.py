"""What a daemon's subscribers of one namespace have been told, as pure state.

A `Mirror` joins a snapshot (read with the sequence number it reflects) to the
announcements published after it: those up to that number are already in the snapshot,
later ones change the mirror and are pushed. Announcements that arrive while a snapshot
is being read wait in a buffer. A later snapshot (after an outage) is compared with the
mirror, and the differences are what subscribers missed.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from rendezvous.entry import entry_bytes
from rendezvous.model import Announcement, Change, Registration
from rendezvous.store.redis.wire import Published

S = TypeVar("S")
Push = tuple[bytes, Announcement, str, int]
"""A peer key, what to tell subscribers about it, the ``DAEMON/SESSION`` whose request
made the change (never told it), empty when none did or it is not known, and the
change's sequence number (`NOW` for what a snapshot or a settle found)."""
NOW = 2**63
"""The sequence number of a change found by comparing states: later than any."""


class Mirror(Generic[S]):
    """One namespace: its registrations as told, its sequence, its local subscribers."""

    __slots__ = (
        "buffer",
        "generation",
        "name",
        "registrations",
        "seq",
        "subscribers",
        "synced",
        "unconfirmed",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: dict[S, None] = {}
        self.registrations: dict[bytes, Registration] = {}
        self.seq = 0
        self.synced = False
        self.buffer: list[Published] = []
        self.generation = 0
        """Counts snapshot reads, so that the answer to a superseded one is ignored."""
        self.unconfirmed: dict[bytes, Registration] = {}
        """Told to subscribers, then missing from a Redis that lost its data: gone unless
        their daemon re-asserts them before `settle`."""

    def begin_sync(self) -> int:
        """A snapshot is being read: hold announcements until it comes."""
        self.synced = False
        self.buffer = []
        self.generation += 1
        return self.generation

    def receive(self, published: Published) -> list[Push]:
        """An announcement from the channel; what to push now."""
        if not self.synced:
            self.buffer.append(published)
            return []
        return self._apply(published)

    def synced_with(
        self, seq: int, fresh: dict[bytes, Registration], *, forgotten: bool = False
    ) -> list[Push]:
        """The snapshot came: what subscribers missed, then what waited in the buffer.

        A sequence gone backwards means Redis restarted without its data while the live
        daemons re-assert theirs: registrations missing from it become unconfirmed. So
        do they when the caller says the server may have ``forgotten`` some (a failover
        to a replica that had not received the last changes).
        """
        forgotten = forgotten or seq < self.seq
        changes: list[Push] = []
        unconfirmed: dict[bytes, Registration] = {}
        if self.subscribers:  # what they were told may be stale: bring them up to date
            old = self.registrations
            for key, gone in old.items():
                if key in fresh:
                    continue
                if forgotten:
                    unconfirmed[key] = gone
                else:
                    changes.append((key, Announcement(Change.UNREGISTER, gone), "", NOW))
            for key, now in fresh.items():
                before = old.get(key)
                if before is None or entry_bytes(before) != entry_bytes(now):
                    changes.append((key, Announcement(Change.REGISTER, now), "", NOW))
        fresh.update(unconfirmed)
        self.registrations = fresh
        self.unconfirmed = unconfirmed
        self.seq = seq
        self.synced = True
        buffered, self.buffer = self.buffer, []
        for published in buffered:
            changes += self._apply(published)
        return changes

    def settle(self) -> list[Push]:
        """The grace period is over: what was not re-asserted is gone."""
        unconfirmed, self.unconfirmed = self.unconfirmed, {}
        for key in unconfirmed:
            self.registrations.pop(key, None)
        return [
            (key, Announcement(Change.UNREGISTER, gone), "", NOW)
            for key, gone in unconfirmed.items()
        ]

    def snapshot(self, own: dict[bytes, int]) -> list[Registration]:
        """The registrations, without the peers in ``own``."""
        return [reg for key, reg in self.registrations.items() if key not in own]

    def _apply(self, published: Published) -> list[Push]:
        if published.seq <= self.seq:
            return []  # already in the snapshot
        self.seq = published.seq
        key, registration = published.key, published.registration
        before = self.unconfirmed.pop(key, None)
        if published.change is Change.REGISTER:
            self.registrations[key] = registration
            if before is not None and entry_bytes(before) == entry_bytes(registration):
                return []  # re-asserted as it was: nothing to tell
        else:
            self.registrations.pop(key, None)
        return [
            (key, Announcement(published.change, registration), published.origin, published.seq)
        ]
