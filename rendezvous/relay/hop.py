"""The hop protocol as pure state machines: the relay's side and the client's side.

The relay reads one request per hop stream (RESERVE or CONNECT) and answers one STATUS;
after an OK to CONNECT the stream carries the relayed bytes. The client writes one
request and reads the STATUS.
"""

from __future__ import annotations

from dataclasses import dataclass

from rendezvous.pb.circuit_pb2 import HopMessage, Limit
from rendezvous.peerid import InvalidPeerId, validate_peer_id
from rendezvous.relay.codec import (
    MALFORMED_MESSAGE,
    OK,
    UNEXPECTED_MESSAGE,
    MalformedMessage,
    MessageReader,
    frame,
    parse_hop,
)


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """The peer asks for (or renews) a reservation."""


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """The peer asks to be connected to ``target`` (peer id bytes)."""

    target: bytes


@dataclass(frozen=True, slots=True)
class BadRequest:
    """Answer ``reply`` (a framed STATUS) and close the stream."""

    status: int
    reason: str
    reply: bytes


HopRequest = ReserveRequest | ConnectRequest | BadRequest


class HopServer:
    """The relay's side of one hop stream, up to the request."""

    def __init__(self) -> None:
        self._reader = MessageReader()
        self.request: HopRequest | None = None

    def feed(self, data: bytes) -> HopRequest | None:
        """Bytes from the client; the request once it is whole (then bytes go to `leftover`)."""
        if self.request is not None:
            self._reader.feed(data)
            return None
        self._reader.feed(data)
        try:
            body = self._reader.next_frame()
            if body is None:
                return None
            message = parse_hop(body)
        except MalformedMessage as error:
            self.request = _bad(MALFORMED_MESSAGE, str(error))
            return self.request
        self.request = _request(message)
        return self.request

    def leftover(self) -> bytes:
        return self._reader.leftover()

    @property
    def buffered(self) -> int:
        return self._reader.buffered


def _bad(status: int, reason: str) -> BadRequest:
    return BadRequest(status, reason, frame(HopMessage(type=HopMessage.STATUS, status=status)))  # type: ignore[arg-type]


def _request(message: HopMessage) -> HopRequest:
    if message.type == HopMessage.RESERVE:
        return ReserveRequest()
    if message.type == HopMessage.CONNECT:
        if not message.HasField("peer") or not message.peer.HasField("id"):
            return _bad(MALFORMED_MESSAGE, "CONNECT without a peer")
        try:
            validate_peer_id(message.peer.id)
        except InvalidPeerId as error:
            return _bad(MALFORMED_MESSAGE, f"CONNECT to a bad peer id: {error}")
        return ConnectRequest(message.peer.id)
    return _bad(UNEXPECTED_MESSAGE, f"hop message of type {message.type} as a request")


def reservation_ok(expire: int, addrs: list[bytes], voucher: bytes, limit: Limit) -> bytes:
    """The framed STATUS OK answering RESERVE."""
    message = HopMessage(type=HopMessage.STATUS, status=OK)
    message.reservation.expire = expire
    message.reservation.addrs.extend(addrs)
    message.reservation.voucher = voucher
    message.limit.CopyFrom(limit)
    return frame(message)


def connect_ok(limit: Limit) -> bytes:
    """The framed STATUS OK answering CONNECT: the stream is the circuit from now on."""
    message = HopMessage(type=HopMessage.STATUS, status=OK)
    message.limit.CopyFrom(limit)
    return frame(message)


# -- the client's side --------------------------------------------------------


def reserve_request() -> bytes:
    """A framed RESERVE (``08 00``: the zero type is written)."""
    return frame(HopMessage(type=HopMessage.RESERVE))


def connect_request(target: bytes) -> bytes:
    """A framed CONNECT to ``target``."""
    message = HopMessage(type=HopMessage.CONNECT)
    message.peer.id = target
    return frame(message)


class HopClient:
    """Reads the relay's STATUS answer to our request."""

    def __init__(self) -> None:
        self._reader = MessageReader()
        self.response: HopMessage | None = None

    def feed(self, data: bytes) -> HopMessage | None:
        """The STATUS message once whole; raises `MalformedMessage` for anything else."""
        self._reader.feed(data)
        if self.response is not None:
            return None
        body = self._reader.next_frame()
        if body is None:
            return None
        message = parse_hop(body)
        if message.type != HopMessage.STATUS or not message.HasField("status"):
            raise MalformedMessage("the relay did not answer with a STATUS")
        self.response = message
        return message

    def leftover(self) -> bytes:
        return self._reader.leftover()
