"""Records on the channel between the hub (the main process) and one worker.

A record is a 4-byte big-endian length, a kind byte and a body: the protobuf message of
that kind in ``proto/rendezvous/pb/workers.proto``, the channel's versioned schema. Each
end's first record is a HELLO; an end of another version is refused with
`VersionMismatch` (a worker started from another copy of the package after an upgrade),
never misread. Everything read that the schema does not allow raises `ChannelError`.
"""

from __future__ import annotations

import enum
import struct
import sys
from array import array
from typing import Final, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as _Message

from rendezvous import __version__
from rendezvous.metrics import Counts
from rendezvous.model import Announcement, Change, Peer, Refused, Registration, Status
from rendezvous.pb import workers_pb2 as pb
from rendezvous.varint import VarintError, decode_uvarint, encode_uvarint

_HEADER: Final = struct.Struct(">IB")
MAX_RECORD: Final = 1 << 30
"""A longer length means the stream is corrupt."""
VERSION: Final = pb.VERSION_CURRENT
"""The channel schema's version: both ends must speak the same."""


class Kind(enum.IntEnum):
    """Record kinds (``Kind`` in the schema)."""

    HELLO = 0
    """`pb.Hello`, each end's first record."""
    # worker -> hub
    OPEN = 1
    """`pb.Open`: a session joins."""
    CLOSE = 2
    """`pb.Close`: a session ends."""
    REQUEST = 3
    """`pb.Request`: a `Store` request of a session."""
    COUNTERS = 4
    """`pb.Counters`: the worker's `rendezvous.metrics.Counts`."""
    # hub -> worker
    DEFINE = 10
    """`pb.Define`: the announcement the PUSH records that follow carry."""
    PUSH = 11
    """`pb.Push`: sessions to push the defined announcement to."""
    ANSWER = 12
    """`pb.Answer`: a `Client` call for one session."""
    DROP = 13
    """`pb.Drop`: the hub refused a session; the worker closes it."""


class ChannelError(ValueError):
    """What came over the channel makes no sense: the channel is closed."""


class VersionMismatch(ChannelError):
    """The other end speaks another version of the channel."""


M = TypeVar("M", bound=_Message)


def record(kind: int, body: bytes) -> bytes:
    return _HEADER.pack(len(body) + 1, kind) + body


def message_record(kind: Kind, message: _Message) -> bytes:
    return record(kind, message.SerializeToString())


def parse(cls: type[M], body: bytes) -> M:
    """``body`` as a ``cls`` message (raises `ChannelError`)."""
    try:
        return cls.FromString(body)
    except DecodeError as e:
        raise ChannelError(f"malformed {cls.__name__} record: {e}") from None


# -- hello -----------------------------------------------------------------------------


def hello_record() -> bytes:
    return message_record(Kind.HELLO, pb.Hello(version=VERSION, release=__version__))


def check_hello(kind: int, body: bytes, other: str) -> None:
    """Accept the first record from ``other`` ("worker 2", "the main process") or raise
    `ChannelError` (`VersionMismatch` when it speaks another version)."""
    if kind != Kind.HELLO:
        raise VersionMismatch(
            f"{other} did not begin with a hello (record kind {kind}): it speaks a channel "
            f"older than version {VERSION} (rendezvous {__version__}); every process of a "
            "daemon must run the same copy of rendezvous: restart the daemon"
        )
    hello = parse(pb.Hello, body)
    if hello.version != VERSION:
        raise VersionMismatch(
            f"{other} speaks channel version {hello.version} (rendezvous "
            f"{hello.release or '?'}), this process version {VERSION} (rendezvous "
            f"{__version__}); every process of a daemon must run the same copy of "
            "rendezvous: restart the daemon"
        )


# -- domain values ---------------------------------------------------------------------


def fill_peer(into: pb.Peer, peer: Peer) -> None:
    into.id = peer.id
    into.key = peer.key
    into.addrs.extend(peer.addrs)
    if peer.signed_peer_record is not None:
        into.signed_peer_record = peer.signed_peer_record


def peer_of(message: pb.Peer) -> Peer:
    record = message.signed_peer_record if message.HasField("signed_peer_record") else None
    return Peer(message.id, message.key, tuple(message.addrs), record)


def fill_registration(into: pb.Registration, registration: Registration) -> None:
    into.namespace = registration.namespace
    fill_peer(into.peer, registration.peer)
    if registration.expires is not None:
        into.expires = registration.expires
    into.seq = registration.seq
    if registration.wire is not None:
        into.wire = registration.wire


def registration_of(message: pb.Registration) -> Registration:
    return Registration(
        message.namespace,
        peer_of(message.peer),
        message.expires if message.HasField("expires") else None,
        message.seq,
        message.wire if message.HasField("wire") else None,
    )


def refusal_of(message: pb.Refusal) -> Refused:
    try:
        status = Status(message.status)
    except ValueError:
        raise ChannelError(f"unknown refusal status {message.status}") from None
    return Refused(status, message.text)


def define_record(announcement: Announcement) -> bytes:
    define = pb.Define(encoded=announcement.encoded)
    if announcement.change is Change.UNREGISTER:
        define.change = pb.CHANGE_UNREGISTER
    fill_registration(define.registration, announcement.registration)
    return message_record(Kind.DEFINE, define)


_CHANGES = {pb.CHANGE_REGISTER: Change.REGISTER, pb.CHANGE_UNREGISTER: Change.UNREGISTER}


def announcement_of(body: bytes) -> Announcement:
    define = parse(pb.Define, body)
    change = _CHANGES.get(define.change)
    if change is None:
        raise ChannelError(f"unknown change {define.change}")
    encoded = define.encoded if define.HasField("encoded") else None
    return Announcement(change, registration_of(define.registration), encoded)


def counters_record(counts: Counts) -> bytes:
    return message_record(
        Kind.COUNTERS,
        pb.Counters(
            received=counts["received"],
            sent=counts["sent"],
            refusals=counts["refusals"],
            slow_subscribers_dropped=counts["slow_subscribers_dropped"],
            sessions_opened=counts["sessions_opened"],
        ),
    )


def counts_of(body: bytes) -> Counts:
    counters = parse(pb.Counters, body)
    return Counts(
        received=dict(counters.received),
        sent=dict(counters.sent),
        refusals=dict(counters.refusals),
        slow_subscribers_dropped=counters.slow_subscribers_dropped,
        sessions_opened=counters.sessions_opened,
    )


# -- pushes: the hot path, encoded and read without building messages -------------------

_PUSH_TAG: Final = b"\x0a"  # field 1 (sids), length-delimited: packed fixed64
_SWAP: Final = sys.byteorder != "little"
"""fixed64 is little-endian; `array` is native."""


def push_record(sids: array[int]) -> bytes:
    """A PUSH of ``sids``: `pb.Push` with its packed ``sids``, made from the array's bytes."""
    if _SWAP:
        sids = array("Q", sids)
        sids.byteswap()
    data = sids.tobytes()
    return record(Kind.PUSH, _PUSH_TAG + encode_uvarint(len(data)) + data)


def sids_of(body: bytes) -> array[int]:
    """The sessions of a PUSH body (raises `ChannelError`)."""
    sids = array("Q")
    if body[:1] == _PUSH_TAG:
        try:
            head = decode_uvarint(body, 1)
        except VarintError:
            head = None
        if head is not None and head[0] == len(body) - head[1] and head[0] % 8 == 0:
            sids.frombytes(body[head[1] :])
            if _SWAP:
                sids.byteswap()
            return sids
    sids.extend(parse(pb.Push, body).sids)  # any other valid encoding of a Push
    return sids


class RecordDecoder:
    """Feed bytes in, take whole (kind, body) records out."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        records: list[tuple[int, bytes]] = []
        offset = 0
        end = len(buffer)
        header = _HEADER.size
        while end - offset >= header:
            length, kind = _HEADER.unpack_from(buffer, offset)
            if not 1 <= length <= MAX_RECORD:
                raise ChannelError(f"record of {length} bytes")
            stop = offset + 4 + length
            if stop > end:
                break
            records.append((kind, bytes(buffer[offset + header : stop])))
            offset = stop
        if offset:
            del buffer[:offset]
        return records
