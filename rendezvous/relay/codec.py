"""Circuit relay v2 messages: uvarint-delimited protobuf, at most 4096 bytes each.

`MessageReader` takes bytes as they arrive and yields whole messages; whatever follows
the last message it was asked for is the relayed byte stream (`leftover`).
"""

from __future__ import annotations

from typing import Final

from google.protobuf.message import DecodeError

from rendezvous.pb import circuit_pb2
from rendezvous.pb.circuit_pb2 import HopMessage, StopMessage
from rendezvous.varint import VarintError, decode_uvarint, encode_uvarint

HOP_PROTOCOL_ID: Final = "/libp2p/circuit/relay/0.2.0/hop"
STOP_PROTOCOL_ID: Final = "/libp2p/circuit/relay/0.2.0/stop"
MAX_MESSAGE_BYTES: Final = 4096

OK: Final = circuit_pb2.OK
RESERVATION_REFUSED: Final = circuit_pb2.RESERVATION_REFUSED
RESOURCE_LIMIT_EXCEEDED: Final = circuit_pb2.RESOURCE_LIMIT_EXCEEDED
PERMISSION_DENIED: Final = circuit_pb2.PERMISSION_DENIED
CONNECTION_FAILED: Final = circuit_pb2.CONNECTION_FAILED
NO_RESERVATION: Final = circuit_pb2.NO_RESERVATION
MALFORMED_MESSAGE: Final = circuit_pb2.MALFORMED_MESSAGE
UNEXPECTED_MESSAGE: Final = circuit_pb2.UNEXPECTED_MESSAGE


class MalformedMessage(ValueError):
    """The bytes are not a well-formed relay message (answer `MALFORMED_MESSAGE`)."""


def status_name(status: int) -> str:
    """``"NO_RESERVATION"`` for 204; ``"UNKNOWN_<n>"`` for a number outside the enum."""
    try:
        return circuit_pb2.Status.Name(status)
    except ValueError:
        return f"UNKNOWN_{status}"


def frame(message: HopMessage | StopMessage) -> bytes:
    """The message with its uvarint length prefix."""
    body = message.SerializeToString(deterministic=True)
    if len(body) > MAX_MESSAGE_BYTES:
        raise ValueError(f"relay message longer than {MAX_MESSAGE_BYTES} bytes")
    return encode_uvarint(len(body)) + body


class MessageReader:
    """Splits a byte stream into length-prefixed messages, one at a time."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next whole message body, or None until it has arrived.

        Raises `MalformedMessage` for a bad or oversized length prefix, at once (never
        waiting for the bytes of a message that would be refused anyway).
        """
        buffer = self._buffer
        try:
            decoded = decode_uvarint(buffer)
        except VarintError as error:
            raise MalformedMessage(str(error)) from None
        if decoded is None:
            return None
        length, start = decoded
        if length > self.max_bytes:
            raise MalformedMessage(f"relay message of {length} bytes (at most {self.max_bytes})")
        end = start + length
        if len(buffer) < end:
            return None
        body = bytes(buffer[start:end])
        del buffer[:end]
        return body

    def leftover(self) -> bytes:
        """Bytes received after the messages taken so far (and forget them)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def parse_hop(body: bytes) -> HopMessage:
    """Parse a `HopMessage`; it must have a type. Raises `MalformedMessage`."""
    message = HopMessage()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise MalformedMessage("undecodable hop message") from None
    if not message.HasField("type"):
        raise MalformedMessage("hop message without a type")
    return message


def parse_stop(body: bytes) -> StopMessage:
    """Parse a `StopMessage`; it must have a type. Raises `MalformedMessage`."""
    message = StopMessage()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise MalformedMessage("undecodable stop message") from None
    if not message.HasField("type"):
        raise MalformedMessage("stop message without a type")
    return message


def hop_status(status: int) -> bytes:
    """A framed ``HopMessage{type=STATUS, status}``."""
    return frame(HopMessage(type=HopMessage.STATUS, status=status))  # type: ignore[arg-type]


def stop_status(status: int) -> bytes:
    """A framed ``StopMessage{type=STATUS, status}``."""
    return frame(StopMessage(type=StopMessage.STATUS, status=status))  # type: ignore[arg-type]
