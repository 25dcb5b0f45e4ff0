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
    """One announcement as published by a script:
    ``SEQ:ORIGIN:CHANGE KEYLEN KEY ENTRYLEN ENTRY`` (lengths: 2 and 4 bytes, big-endian)."""

    seq: int
    change: Change
    key: bytes
    registration: Registration
    origin: str = ""
    """``DAEMON/SESSION`` of the request that made the change; empty when none did."""


def parse_published(data: bytes) -> list[Published]:
    """A message on a namespace's channel: one or more announcements, in sequence order."""
    out = []
    at, end = 0, len(data)
    while True:
        colon = data.find(b":", at)
        colon2 = data.find(b":", colon + 1) if colon >= 0 else -1
        if colon2 < 0:
            raise BadData("malformed announcement")
        head, origin = data[at:colon], data[colon + 1 : colon2]
        if not head.isdigit() or not origin.isascii():
            raise BadData("malformed announcement")
        change = _CHANGES.get(data[colon2 + 1 : colon2 + 2])
        if change is None:
            raise BadData("unknown change")
        at = colon2 + 4
        key_end = at + int.from_bytes(data[at - 2 : at], "big")
        entry_end = key_end + 4 + int.from_bytes(data[key_end : key_end + 4], "big")
        if at > end or key_end + 4 > end or entry_end > end:
            raise BadData("truncated announcement")
        key = data[at:key_end]
        entry = data[key_end + 4 : entry_end]
        out.append(Published(int(head), change, key, registration(entry), origin.decode()))
        if entry_end == end:
            return out
        at = entry_end


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


def parse_results(reply: object, count: int) -> list[bytes]:
    """`scripts.REGISTER_MANY`'s answer: ``count`` items, each a sequence number, a
    refusal's word, or ``E`` and an error."""
    if not isinstance(reply, bytes):
        raise BadData("not a string")
    results = reply.split(b",")
    if len(results) != count or not reply:
        raise BadData(f"{len(results) if reply else 0} results for {count} requests")
    return results


def parse_discovered(blob: object) -> list[bytes]:
    """The entries of `scripts.DISCOVER`'s answer: ``LEN TOKEN|ENTRY`` each (4 bytes)."""
    if not isinstance(blob, bytes):
        raise BadData("not a string")
    out = []
    at, end = 0, len(blob)
    while at < end:
        stop = at + 4 + int.from_bytes(blob[at : at + 4], "big")
        cut = blob.find(b"|", at + 4, stop)
        if stop > end or cut < 0:
            raise BadData("truncated registration")
        out.append(blob[cut + 1 : stop])
        at = stop
    return out


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
