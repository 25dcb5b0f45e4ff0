"""The stop protocol as pure state machines: the relay's side and the target's side.

The relay writes one CONNECT naming the initiator (and the circuit's limit) and reads
one STATUS; after OK the stream carries the relayed bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from rendezvous.pb.circuit_pb2 import Limit, StopMessage
from rendezvous.peerid import InvalidPeerId, validate_peer_id
from rendezvous.relay.codec import (
    MALFORMED_MESSAGE,
    UNEXPECTED_MESSAGE,
    MalformedMessage,
    MessageReader,
    frame,
    parse_stop,
    stop_status,
)


def connect_message(source: bytes, limit: Limit | None) -> bytes:
    """The framed CONNECT the relay sends the target (``08 00`` first: the zero type)."""
    message = StopMessage(type=StopMessage.CONNECT)
    message.peer.id = source
    if limit is not None:
        message.limit.CopyFrom(limit)
    return frame(message)


class StopDialer:
    """The relay's side: reads the target's STATUS."""

    def __init__(self) -> None:
        self._reader = MessageReader()
        self.status: int | None = None

    def feed(self, data: bytes) -> int | None:
        """The status once the answer is whole; raises `MalformedMessage`."""
        self._reader.feed(data)
        if self.status is not None:
            return None
        body = self._reader.next_frame()
        if body is None:
            return None
        message = parse_stop(body)
        if message.type != StopMessage.STATUS or not message.HasField("status"):
            raise MalformedMessage("the target did not answer with a STATUS")
        self.status = message.status
        return self.status

    def leftover(self) -> bytes:
        return self._reader.leftover()


@dataclass(frozen=True, slots=True)
class StopConnect:
    """The relay connects ``source`` to us, within ``limit`` (None: no limit told)."""

    source: bytes
    limit: Limit | None


@dataclass(frozen=True, slots=True)
class StopRefusal:
    """Answer ``reply`` and close the stream."""

    status: int
    reason: str
    reply: bytes


class StopListener:
    """The target's side: reads the relay's CONNECT."""

    def __init__(self) -> None:
        self._reader = MessageReader()
        self.request: StopConnect | StopRefusal | None = None

    def feed(self, data: bytes) -> StopConnect | StopRefusal | None:
        self._reader.feed(data)
        if self.request is not None:
            return None
        try:
            body = self._reader.next_frame()
            if body is None:
                return None
            message = parse_stop(body)
        except MalformedMessage as error:
            self.request = StopRefusal(
                MALFORMED_MESSAGE, str(error), stop_status(MALFORMED_MESSAGE)
            )
            return self.request
        if message.type != StopMessage.CONNECT:
            reason = f"stop message of type {message.type} as a request"
            self.request = StopRefusal(UNEXPECTED_MESSAGE, reason, stop_status(UNEXPECTED_MESSAGE))
            return self.request
        try:
            if not message.HasField("peer"):
                raise InvalidPeerId("no peer")
            validate_peer_id(message.peer.id)
        except InvalidPeerId as error:
            reason = f"CONNECT from a bad peer id: {error}"
            self.request = StopRefusal(MALFORMED_MESSAGE, reason, stop_status(MALFORMED_MESSAGE))
            return self.request
        limit = message.limit if message.HasField("limit") else None
        self.request = StopConnect(message.peer.id, limit)
        return self.request

    def leftover(self) -> bytes:
        return self._reader.leftover()
