"""A session of this daemon on the Redis store, what it owns, and how it is answered.

Every part of the store answers a request through the `ReplyPlace` it reserved in the
session's `Replies`, so answers leave in request order whatever order Redis replies in.
"""

from __future__ import annotations

from rendezvous.model import Peer, Refused, Registration, Status
from rendezvous.registry import Session
from rendezvous.store.base import Client
from rendezvous.store.redis.replies import Replies, ReplyPlace

UNREACHABLE = "registry store (redis) unreachable"


class RedisSession(Session):
    """A session of this daemon, with what the shared registry holds for it."""

    __slots__ = (
        "claimed",
        "entries",
        "own_keys",
        "owned_since",
        "partitions",
        "registering",
        "replies",
        "sid",
        "sid_arg",
    )

    def __init__(self, client: Client, identity: bytes | None, sid: str) -> None:
        super().__init__(client, identity)  # its `registrations` stay empty: see `entries`
        self.own_keys: dict[bytes, int] = {} if identity is None else {identity: 1}
        """Peer ids this session speaks for, with how many registrations hold each."""
        self.owned_since: dict[bytes, tuple[int, int]] = {}
        """The partition and sequence number from which the session holds each of
        ``own_keys`` (absent: from the start): a change made before it is not the
        session's own (sequence numbers count within one partition)."""
        self.registering: set[tuple[str, bytes]] = set()
        """New registrations on their way (a cluster's: its per-session limit)."""
        self.claimed: set[bytes] = set()
        """A raw session's ids claimed in their home partitions (a cluster)."""
        self.sid = sid
        self.sid_arg = b"$%d\r\n%s\r\n" % (len(sid), sid.encode())
        """The session id as a script argument (RESP)."""
        self.entries: dict[tuple[str, bytes], Registration] = {}
        """Registrations Redis confirmed for this session."""
        self.replies = Replies()
        self.partitions: set[int] = set()
        """The partitions where Redis may hold something of this session."""

    @property
    def wrote(self) -> bool:
        """Whether Redis may hold something of this session."""
        return bool(self.partitions)


def client(session: Session) -> Client:
    """Where the answers and pushes for ``session`` go."""
    found: Client = session.subscriber  # type: ignore[assignment]
    return found


def own(session: RedisSession, key: bytes, delta: int, seq: int = 0, partition: int = 0) -> None:
    """One registration more (``delta`` 1, made with sequence number ``seq`` of
    ``partition``) or less (-1) holds ``key`` for ``session``."""
    count = session.own_keys.get(key, 0) + delta
    if count > 0:
        if count == delta:  # the first: held from now on
            session.owned_since[key] = (partition, seq)
        session.own_keys[key] = count
    else:
        session.own_keys.pop(key, None)
        session.owned_since.pop(key, None)


def holds(session: RedisSession, key: bytes, seq: int, partition: int = 0) -> bool:
    """Whether ``session`` held ``key`` when the change numbered ``seq`` in
    ``partition`` was made (numbers of another partition do not compare: held)."""
    if key not in session.own_keys:
        return False
    since = session.owned_since.get(key)
    return since is None or since[0] != partition or seq >= since[1]


def refuse(
    session: RedisSession, place: ReplyPlace, request_id: int | None, status: Status, text: str
) -> None:
    """Answer the request of ``place`` with a refusal."""
    answer = client(session)
    place.fill(lambda: answer.refused(request_id, Refused(status, text)))


def nothing() -> None:
    """The answer to a REGISTER or UNREGISTER done: nothing to tell, but its place is
    filled, so the answers after it may leave."""


def ms(seconds: float) -> int:
    """A time as the scripts take it: milliseconds."""
    return int(seconds * 1000)


def signed(peer: Peer) -> str:
    """Whether ``peer`` comes with a signed peer record, as a script argument."""
    return "0" if peer.signed_peer_record is None else "1"
