"""Records on the channel between the hub (the main process) and one worker.

A record is a 4-byte big-endian length, a kind byte and a body. Bodies are pickles of
plain values (the channel is a socketpair between two processes of the same program,
never a network peer), except PUSH: the sessions to push the last DEFINEd announcement
to, as native unsigned 64-bit integers.
"""

from __future__ import annotations

import enum
import pickle
import struct
from array import array
from typing import Any, Final

_HEADER: Final = struct.Struct(">IB")
MAX_RECORD: Final = 1 << 30
"""A longer length means the stream is corrupt."""


class Kind(enum.IntEnum):
    # worker -> hub
    OPEN = 1
    """(sid, identity): a session joins."""
    CLOSE = 2
    """(sid,): a session ends."""
    REQUEST = 3
    """(method, sid, args, kwargs): a `Store` request of a session."""
    COUNTERS = 4
    """The worker's `rendezvous.metrics.Counts` and connection figures."""
    # hub -> worker
    DEFINE = 10
    """The announcement the PUSH records that follow carry."""
    PUSH = 11
    """Sessions to push the defined announcement to."""
    ANSWER = 12
    """(method, sid, args): a `Client` call for one session."""
    DROP = 13
    """(sid, status, text): the hub refused a session; the worker closes it."""


class ChannelError(ValueError):
    """The channel's byte stream is corrupt."""


def record(kind: Kind, body: bytes) -> bytes:
    return _HEADER.pack(len(body) + 1, kind) + body


def pickled(kind: Kind, value: Any) -> bytes:
    return record(kind, pickle.dumps(value, pickle.HIGHEST_PROTOCOL))


def push_record(sids: array[int]) -> bytes:
    return record(Kind.PUSH, sids.tobytes())


def sids_of(body: bytes) -> array[int]:
    sids = array("Q")
    sids.frombytes(body)
    return sids


def unpickle(body: bytes) -> Any:
    return pickle.loads(body)


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
