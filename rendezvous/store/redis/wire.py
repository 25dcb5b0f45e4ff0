"""What the Redis store reads back: announcements from a channel and stored entries."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rendezvous.model import Change, Peer, Registration
from rendezvous.pb.live_pb2 import Message
from rendezvous.peerid import parse_peer_id

_CHANGES = {b"R": Change.REGISTER, b"U": Change.UNREGISTER}


class BadData(ValueError):
    """Something in Redis that this daemon did not write."""


@dataclass(frozen=True, slots=True)
class Published:
    """One announcement as published by a script: ``SEQ:ORIGIN:CHANGE KEYLEN KEY ENTRY``."""

    seq: int
    change: Change
    key: bytes
    registration: Registration
    origin: str = ""
    """``DAEMON/SESSION`` of the request that made the change; empty when none did."""


def parse_published(data: bytes) -> Published:
    head, sep, rest = data.partition(b":")
    origin, sep2, rest = rest.partition(b":")
    if not sep or not sep2 or not head.isdigit() or len(rest) < 3 or not origin.isascii():
        raise BadData("malformed announcement")
    change = _CHANGES.get(rest[:1])
    if change is None:
        raise BadData("unknown change")
    key, entry = split_member(rest[1:])
    return Published(int(head), change, key, registration(entry), origin.decode())


@dataclass(frozen=True, slots=True)
class Eviction:
    """A session of this daemon lost a registration: ``SEQ:SESSION:KEYLEN KEY NS``."""

    seq: int
    session: str
    namespace: str
    key: bytes


def parse_eviction(data: bytes) -> Eviction:
    head, sep, rest = data.partition(b":")
    session, sep2, member = rest.partition(b":")
    if not (sep and sep2 and head.isdigit() and session.isdigit()):
        raise BadData("malformed eviction")
    key, namespace = split_member(member)
    try:
        name = namespace.decode()
    except UnicodeDecodeError:
        raise BadData("namespace not UTF-8") from None
    return Eviction(int(head), session.decode(), name, key)


def split_member(data: bytes) -> tuple[bytes, bytes]:
    """``KEYLEN KEY TAIL`` (a 2-byte big-endian length) into the key and the tail."""
    if len(data) < 2:
        raise BadData("truncated key")
    n = int.from_bytes(data[:2], "big")
    if len(data) < 2 + n:
        raise BadData("truncated key")
    return data[2 : 2 + n], data[2 + n :]


@lru_cache(maxsize=8192)
def registration(entry: bytes) -> Registration:
    """The registration whose live-dialect entry (`entry_bytes`) is ``entry``."""
    try:
        item = Message.Register.FromString(entry)
        peer = item.peer
        record = peer.signed_peer_record if peer.HasField("signed_peer_record") else None
        key = parse_peer_id(peer.id)
    except Exception as e:
        raise BadData(f"malformed entry: {e}") from None
    return Registration(item.ns, Peer(peer.id, key, tuple(peer.addrs), record), wire=entry)
