"""The relay client: reserve on a relay, open circuits through it, accept circuits (stop).

These work on raw streams: `connect` fires with the hop stream once the relay answered
OK, and `StopHandler` hands each accepted stop stream to a callback. Running a libp2p
connection over such a stream is `rendezvous.relay.relayed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.pb.circuit_pb2 import HopMessage, Limit
from rendezvous.relay import hop, stop
from rendezvous.relay.codec import (
    CONNECTION_FAILED,
    HOP_PROTOCOL_ID,
    OK,
    MalformedMessage,
    status_name,
    stop_status,
)
from rendezvous.relay.voucher import Voucher, open_voucher

if TYPE_CHECKING:
    from rendezvous.p2p.connection import Connection


class RelayRefused(Exception):
    """The relay answered with a Status other than OK."""

    def __init__(self, status: int) -> None:
        super().__init__(status_name(status))
        self.status = status


class RelayError(Exception):
    """The relay's answer was malformed or the stream ended without one."""


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    expire: int
    """Unix time, seconds."""
    addrs: tuple[bytes, ...]
    """Relay addresses (binary), each ending in ``/p2p/<relay-id>``."""
    voucher: Voucher | None
    limit: Limit | None


class _HopRequest(StreamProtocol):
    """Writes one hop request and waits for its STATUS."""

    def __init__(self, request: bytes, *, sent: bool = False) -> None:
        """``sent``: the request went with the protocol proposal (optimistic select)."""
        self.request = request
        self.sent = sent
        self.machine = hop.HopClient()
        self.answer: Deferred[tuple[HopMessage, bytes]] = Deferred()

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        if not self.sent:
            stream.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.answer.called:
            return
        try:
            response = self.machine.feed(data)
        except MalformedMessage as error:
            assert self.stream is not None
            self.stream.reset()
            self.answer.errback(RelayError(str(error)))
            return
        if response is not None:
            self.answer.callback((response, self.machine.leftover()))

    def stream_closed(self, reason: str | None) -> None:
        if not self.answer.called:
            self.answer.errback(RelayError(f"the hop stream closed ({reason or 'end'})"))


def reserve(connection: Connection) -> Deferred[ReservationInfo]:
    """RESERVE on the relay at the other end of ``connection``.

    Fails with `RelayRefused`, `RelayError`, or `StreamFailed` (no hop protocol there).
    """
    request = _HopRequest(hop.reserve_request())
    opened = connection.open_stream(HOP_PROTOCOL_ID, request)

    def answered(result: tuple[HopMessage, bytes]) -> ReservationInfo:
        response, _ = result
        assert request.stream is not None
        request.stream.close()
        if response.status != OK:
            raise RelayRefused(response.status)
        reservation = response.reservation
        voucher = None
        if reservation.HasField("voucher"):
            voucher = open_voucher(reservation.voucher)
        limit = response.limit if response.HasField("limit") else None
        return ReservationInfo(reservation.expire, tuple(reservation.addrs), voucher, limit)

    return opened.addCallback(lambda _: request.answer).addCallback(answered)


@dataclass(slots=True)
class OpenCircuit:
    """A stream that became a relayed byte stream, with bytes that came with the answer."""

    stream: Stream
    limit: Limit | None
    peer: bytes
    """The peer at the other end of the circuit."""
    early: bytes = b""

    def attach(self, protocol: StreamProtocol) -> None:
        """Hand the stream to ``protocol`` (and the early bytes)."""
        self.stream.protocol = protocol
        protocol.stream_started(self.stream)
        early, self.early = self.early, b""
        if early:
            protocol.data_received(early)


def connect(connection: Connection, target: bytes) -> Deferred[OpenCircuit]:
    """CONNECT through the relay to ``target``; fires with the circuit once the relay said OK.

    The CONNECT goes with the hop protocol proposal (optimistic select: a relay speaks
    hop, and a round trip is saved per circuit); a peer that does not refuses both.
    Fails with `RelayRefused`, `RelayError` or `StreamFailed`.
    """
    message = hop.connect_request(target)
    request = _HopRequest(message, sent=True)
    opened = connection.open_stream(HOP_PROTOCOL_ID, request, early=message)

    def answered(result: tuple[HopMessage, bytes]) -> OpenCircuit:
        response, leftover = result
        stream = request.stream
        assert stream is not None
        if response.status != OK:
            stream.close()
            raise RelayRefused(response.status)
        limit = response.limit if response.HasField("limit") else None
        return OpenCircuit(stream, limit, target, leftover)

    return opened.addCallback(lambda _: request.answer).addCallback(answered)


Accept = Callable[[bytes, Limit | None], StreamProtocol | None]
"""Told of a circuit from a peer (its id) within a limit: the protocol to hand it to, or
None to refuse it."""


class StopHandler(StreamProtocol):
    """Accepts one stop stream: answers OK and hands it over, or refuses it."""

    log = Logger()

    def __init__(self, accept: Accept) -> None:
        self.accept = accept
        self.machine = stop.StopListener()

    def data_received(self, data: bytes) -> None:
        assert self.stream is not None
        stream = self.stream
        if self.machine.request is not None:
            return
        request = self.machine.feed(data)
        if request is None:
            return
        if isinstance(request, stop.StopRefusal):
            self.log.info(
                "refusing a stop stream: {reason}", reason=request.reason, event="stop.refused"
            )
            stream.write(request.reply)
            stream.close()
            return
        protocol = self.accept(request.source, request.limit)
        if protocol is None:
            stream.write(stop_status(CONNECTION_FAILED))
            stream.close()
            return
        stream.write(stop_status(OK))
        OpenCircuit(stream, request.limit, request.source, self.machine.leftover()).attach(protocol)
