"""Domain values shared by the registry, the stores and the dialects."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field


class Status(enum.IntEnum):
    """Refusal statuses: the standard dialect's ResponseStatus values, ours above 1000."""

    INVALID_NAMESPACE = 100
    INVALID_SIGNED_PEER_RECORD = 101
    INVALID_TTL = 102
    INVALID_COOKIE = 103
    NOT_AUTHORIZED = 200
    INTERNAL_ERROR = 300
    UNAVAILABLE = 400
    INVALID_MESSAGE = 1001
    INVALID_PEER = 1002
    LIMIT_EXCEEDED = 1003


class Refused(Exception):
    """A request refused with a status and a human-readable reason."""

    def __init__(self, status: Status, text: str) -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text

    def __str__(self) -> str:
        return f"{self.status.name} ({int(self.status)}): {self.text}"


@dataclass(slots=True)
class Peer:
    """A peer as registered: its id (text and multihash) and how to reach it."""

    id: str
    key: bytes
    """The peer id's multihash: the identity compared across forms of the id."""
    addrs: tuple[bytes, ...] = ()
    signed_peer_record: bytes | None = None


@dataclass(slots=True)
class Registration:
    """One peer in one namespace.

    ``wire`` caches the live dialect's encoding of the entry, made once and reused by
    every announcement, snapshot and DISCOVER reply that carries it.
    """

    namespace: str
    peer: Peer
    expires: float | None = None
    """Seconds on the registry clock when a TTL registration ends; None: while its session lives."""
    seq: int = 0
    """When it was last (re)registered, in the registry's order of changes (DISCOVER cookies)."""
    wire: bytes | None = field(default=None, compare=False, repr=False)


class Change(enum.Enum):
    REGISTER = "register"
    UNREGISTER = "unregister"


@dataclass(slots=True)
class Announcement:
    """A REGISTER or UNREGISTER pushed to subscribers.

    ``encoded`` caches one dialect encoding so the same bytes go to every subscriber.
    """

    change: Change
    registration: Registration
    encoded: bytes | None = field(default=None, compare=False)


def new_epoch() -> bytes:
    """Eight random bytes naming one registry's life: DISCOVER cookies carry it, so a
    cookie from an earlier life (of this daemon, or of a shared Redis registry) restarts."""
    return os.urandom(8)
