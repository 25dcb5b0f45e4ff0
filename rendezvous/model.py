"""Domain values shared by the registry, the stores and the dialects."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rendezvous.pb.envelope_pb2 import Envelope, PeerRecord
from rendezvous.peerid import peer_id_to_text

if TYPE_CHECKING:
    from rendezvous.registry.ownership import Session


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


class Peer:
    """A peer as registered: its id (text and multihash) and how to reach it.

    One made by `Peer.from_record` keeps only the id's multihash and the signed peer
    record it came in: its text and its addresses are read from them when asked (the
    text through the recent texts `rendezvous.peerid` remembers), so a registration holds
    no second copy of what the record says.
    """

    __slots__ = ("_addrs", "_text", "key", "signed_peer_record")

    def __init__(
        self,
        id: str,
        key: bytes,
        addrs: tuple[bytes, ...] = (),
        signed_peer_record: bytes | None = None,
    ) -> None:
        self._text: str | None = id
        self.key = key
        """The peer id's multihash: the identity compared across forms of the id."""
        self._addrs: tuple[bytes, ...] | None = addrs
        self.signed_peer_record = signed_peer_record

    @classmethod
    def from_record(cls, key: bytes, record: bytes) -> Peer:
        """The peer of a signed peer record already opened and checked, whose peer id
        is ``key``: its text is the legacy base58btc one, its addresses the record's."""
        peer = cls.__new__(cls)
        peer._text = None
        peer.key = key
        peer._addrs = None
        peer.signed_peer_record = record
        return peer

    @property
    def id(self) -> str:
        """The peer id's text."""
        text = self._text
        return peer_id_to_text(self.key) if text is None else text

    @property
    def addrs(self) -> tuple[bytes, ...]:
        """The peer's binary multiaddrs."""
        addrs = self._addrs
        if addrs is None:
            assert self.signed_peer_record is not None
            return record_addrs(self.signed_peer_record)
        return addrs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Peer):
            return NotImplemented
        return self is other or (
            self.key == other.key
            and self.signed_peer_record == other.signed_peer_record
            and self.id == other.id
            and self.addrs == other.addrs
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def __repr__(self) -> str:
        return (
            f"Peer(id={self.id!r}, key={self.key!r}, addrs={self.addrs!r}, "
            f"signed_peer_record={self.signed_peer_record!r})"
        )


def record_addrs(record: bytes) -> tuple[bytes, ...]:
    """The addresses of a signed peer record (an RFC 0002 envelope of an RFC 0003
    ``PeerRecord``), read without a check: it was opened and checked when it came."""
    payload = Envelope.FromString(record).payload
    return tuple(address.multiaddr for address in PeerRecord.FromString(payload).addresses)


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
    holder: Session | None = field(default=None, compare=False, repr=False)
    """In a `rendezvous.registry.Registry`: the session that holds it; None for a TTL
    registration (held until ``expires``), and once it is no longer held (so that what
    still refers to it, an announcement or a change index, keeps no session alive)."""

    def __lt__(self, other: Registration) -> bool:
        """TTL registrations order by when they end, then by seq: a heap of them (the
        registry's expiries) has the next to end first."""
        if self.expires == other.expires:
            return self.seq < other.seq
        return self.expires < other.expires  # type: ignore[operator]  # TTL ones have one


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
