"""Domain values shared by the registry, the stores and the dialects."""

from __future__ import annotations

import enum
import os
from dataclasses import Field, dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar

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
    def from_record_alone(self) -> bool:
        """Whether it was made by `from_record`: its record says all the rest."""
        return self._text is None and self._addrs is None

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


class Registration:
    """One peer in one namespace.

    Two kinds share this interface. ``Registration(namespace, peer, ...)`` makes a
    `HeldRegistration`: a live session's, or any the stores build. The registry keeps
    a TTL registration of a peer known by its signed record alone (`Peer.from_record`:
    every standard-dialect REGISTER of the final spec's layout) as a
    `RecordRegistration`, which holds the record and the peer id itself and makes its
    `peer` when asked. Both order by expiry (a heap of TTL registrations has the next
    to end first) and compare equal when their namespace, peer, expiry and seq are.
    """

    if not TYPE_CHECKING:  # (its kinds have their own; the checker reads it as theirs)
        __slots__ = ()

    if TYPE_CHECKING:
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
        """`dataclasses.replace` works on a `HeldRegistration` (what the stores build)."""
        namespace: str
        seq: int
        """When it was last (re)registered, in the registry's order of changes (DISCOVER
        cookies)."""
        wire: bytes | None
        """The live dialect's encoding of the entry, made once and reused by every
        announcement, snapshot and DISCOVER reply that carries it."""
        holder: Session | None
        """In a `rendezvous.registry.Registry`: the session that holds it; None for a TTL
        registration (held until ``expires``), and once it is no longer held (so that what
        still refers to it, an announcement or a change index, keeps no session alive)."""

        @property
        def peer(self) -> Peer: ...

        @property
        def expires(self) -> float | None:
            """Seconds on the registry clock when a TTL registration ends; None: while
            its session lives."""

    if TYPE_CHECKING:

        def __new__(
            cls,
            namespace: str,
            peer: Peer,
            expires: float | None = None,
            seq: int = 0,
            wire: bytes | None = None,
            holder: Session | None = None,
        ) -> Registration: ...

    else:

        def __new__(cls, *_: object, **__: object) -> Registration:
            return object.__new__(HeldRegistration if cls is Registration else cls)

    if TYPE_CHECKING:

        @property
        def key(self) -> bytes:
            """The peer id's multihash (``peer.key``)."""

        @property
        def record(self) -> bytes | None:
            """The signed peer record (``peer.signed_peer_record``)."""

    else:  # (read without a Python frame: the registry reads them on every change)
        key = property(attrgetter("peer.key"), doc="The peer id's multihash (``peer.key``).")
        record = property(
            attrgetter("peer.signed_peer_record"),
            doc="The signed peer record (``peer.signed_peer_record``).",
        )

    def __lt__(self, other: Registration) -> bool:
        """TTL registrations order by when they end: a heap of them (the registry's
        expiries) has the next to end first. Two `RecordRegistration` that end at
        the same time compare as their expiry times (equal); others then by seq."""
        mine, theirs = self.expires, other.expires
        if mine == theirs:
            return self.seq < other.seq
        return mine < theirs  # type: ignore[operator]  # TTL ones have one

    def __gt__(self, other: Registration) -> bool:
        mine, theirs = self.expires, other.expires
        if mine == theirs:
            return self.seq > other.seq
        return mine > theirs  # type: ignore[operator]  # TTL ones have one

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Registration):
            return NotImplemented
        return self is other or (
            self.namespace == other.namespace
            and self.seq == other.seq
            and self.expires == other.expires
            and self.peer == other.peer
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def __repr__(self) -> str:
        return (
            f"Registration(namespace={self.namespace!r}, peer={self.peer!r}, "
            f"expires={self.expires!r}, seq={self.seq!r})"
        )


@dataclass(slots=True, eq=False, repr=False)
class HeldRegistration(Registration):
    """A registration with its `Peer` object: what ``Registration(...)`` makes."""

    namespace: str
    peer: Peer
    expires: float | None = None
    seq: int = 0
    wire: bytes | None = None
    holder: Session | None = None


_new_object = object.__new__
_init_held = HeldRegistration.__init__


def held_registration(
    namespace: str, peer: Peer, expires: float | None, seq: int, holder: Session | None
) -> HeldRegistration:
    """``HeldRegistration(namespace, peer, expires, seq, holder=holder)`` in half the
    time (not through `Registration`'s ``__new__``): the registry makes one per change."""
    registration = _new_object(HeldRegistration)
    _init_held(registration, namespace, peer, expires, seq, None, holder)
    return registration


class RecordRegistration(Registration, float):  # type: ignore[misc]  # float's <, >
    """A TTL registration of a peer known by its signed record alone, in 80 bytes.

    Its float value is its expiry time (no float object of its own); it holds the
    record and the peer id's bytes, and makes a `Peer.from_record` of them when its
    `peer` is asked for (an equal one each time). It is never held by a session.
    """

    __slots__ = ("key", "namespace", "record", "seq", "wire")

    key: bytes
    record: bytes
    holder: None = None

    def __new__(
        cls, namespace: str, key: bytes, record: bytes, expires: float, seq: int
    ) -> RecordRegistration:
        self = float.__new__(cls, expires)
        self.namespace = namespace
        self.key = key
        self.record = record
        self.seq = seq
        self.wire = None
        return self

    @property
    def peer(self) -> Peer:
        return Peer.from_record(self.key, self.record)

    if TYPE_CHECKING:

        @property
        def expires(self) -> float: ...

    else:
        expires = property(float.__pos__)  # (a float of its value, without a Python frame)

    if not TYPE_CHECKING:
        # A float's: compared in C, by expiry time alone (another kind answers
        # NotImplemented, and its reflected method compares).
        __lt__ = float.__lt__
        __gt__ = float.__gt__

    def __le__(self, other: object) -> bool:
        return NotImplemented  # (as a float it would compare expiry times alone)

    __ge__ = __le__

    def __eq__(self, other: object) -> bool:
        # Never equal to a number, which would compare equal to its expiry time.
        return isinstance(other, Registration) and Registration.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return True  # (a float's truth is whether it is not zero)


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
