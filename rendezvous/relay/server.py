"""The hop service on a `Host`: reservations, CONNECT through them, and the stop dial.

`RelayServer.hop_handler` is the stream handler of `HOP_PROTOCOL_ID`. A RESERVE is
answered with the reservation (expiry, relay addresses ending in ``/p2p/<relay-id>``,
a signed voucher, the circuit limit) and the stream is closed. A CONNECT to a peer that
holds a reservation opens a stop stream on the connection that peer reserved over; once
the target answers OK the hop stream is answered OK and both streams become a `Circuit`.
Every refusal is answered with its Status at once and counted by reason; nothing waits
in a queue: requests past a limit are refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Final, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from rendezvous.addrs import multiaddr_from_text, multiaddr_to_text
from rendezvous.loglimit import LogLimiter
from rendezvous.logs import ClientAddress, emit
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.circuit_pb2 import Limit
from rendezvous.peerid import peer_id_to_text
from rendezvous.relay import hop, stop
from rendezvous.relay.codec import (
    CONNECTION_FAILED,
    HOP_PROTOCOL_ID,
    MAX_MESSAGE_BYTES,
    OK,
    STOP_PROTOCOL_ID,
    MalformedMessage,
    hop_status,
    status_name,
)
from rendezvous.relay.resources import Acl, HopRefused, RelayLimits, Resources
from rendezvous.relay.splice import Circuit
from rendezvous.relay.stats import RelayStats
from rendezvous.relay.voucher import Voucher, seal_voucher

if TYPE_CHECKING:
    from rendezvous.p2p.connection import Connection
    from rendezvous.p2p.host import Host

REQUEST_TIMEOUT: Final = 15.0
"""Seconds a hop stream may take to send its request, and a target to answer a stop."""
SWEEP_INTERVAL: Final = 30.0
"""Seconds between sweeps of reservations whose TTL ran out while their connection stayed
open (one whose connection closes is released at once, by `RelayServer.disconnected`)."""
LOGGED_CIRCUITS: Final = 20
"""Circuits whose lines (opened, closed) are logged per `LOGGED_CIRCUITS_INTERVAL`:
anyone may open circuit after circuit, and two lines each would cost a busy relay
a fifth of its CPU (the rest are counted, and their number logged)."""
LOGGED_CIRCUITS_INTERVAL: Final = 10.0


_peer_text = lru_cache(maxsize=1024)(peer_id_to_text)
"""`peer_id_to_text` for circuit labels: the same few peers open circuit after circuit."""


def is_relayed(connection: Connection) -> bool:
    """Whether ``connection`` itself runs over a relay circuit."""
    return connection.relayed


class RelayServer:
    """Circuit relay v2 hop service state shared by every hop stream of a host."""

    log = Logger()

    def __init__(
        self,
        host: Host,
        clock: IReactorTime,
        limits: RelayLimits | None = None,
        acl: Acl | None = None,
        stats: RelayStats | None = None,
    ) -> None:
        self.host = host
        self.clock = clock
        self.limits = limits if limits is not None else RelayLimits()
        self.resources = Resources(self.limits, acl if acl is not None else Acl(), clock.seconds)
        self.stats = stats if stats is not None else RelayStats()
        self.stats.gauges = lambda: (len(self.resources.reservations), self.resources.circuits)
        self.circuits: set[Circuit] = set()
        self.circuit_log = LogLimiter(clock.seconds, LOGGED_CIRCUITS, LOGGED_CIRCUITS_INTERVAL)
        """Which circuits are logged."""
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock

    def install(self) -> None:
        """Serve the hop protocol on the host; release reservations as their connections close."""
        self.host.set_handler(HOP_PROTOCOL_ID, self.hop_handler)
        self.host.connection_closed.append(self.disconnected)

    def start(self) -> None:
        self._sweeper.start(SWEEP_INTERVAL, now=False)

    def stop(self) -> None:
        if self._sweeper.running:
            self._sweeper.stop()
        for circuit in list(self.circuits):
            circuit.reset("shutdown")

    def hop_handler(self) -> StreamProtocol:
        return HopHandler(self)

    @property
    def limit(self) -> Limit:
        """What every circuit is told: seconds, and bytes per direction."""
        return Limit(duration=self.limits.circuit_duration, data=self.limits.circuit_bytes)

    def sweep(self) -> None:
        """Forget reservations whose TTL ran out: their peers stay connected, so nothing
        else would release their slots (CONNECT and RESERVE also check expiry)."""
        for peer in self.resources.expire():
            peer_id = peer_id_to_text(peer)
            self.log.info(
                "reservation of {peer} expired",
                peer=peer_id,
                peer_id=peer_id,
                event="reservation.expired",
            )

    def disconnected(self, connection: Connection) -> None:
        """A connection closed: the reservation made over it ends now, its slot and its
        IP address's count released (`Host.connection_closed`)."""
        peer = connection.remote_peer_id
        if peer and self.resources.disconnected(peer, connection):
            peer_id = peer_id_to_text(peer)
            self.log.info(
                "reservation of {peer} ended: disconnected",
                peer=peer_id,
                peer_id=peer_id,
                event="reservation.ended",
            )

    def holder(self, peer: bytes) -> Connection | None:
        """The connection ``peer`` reserved over (where stop streams go), if it reserved."""
        reservation = self.resources.reservations.get(peer)
        return None if reservation is None else cast("Connection", reservation.holder)

    # -- requests -------------------------------------------------------------

    def reserve(self, connection: Connection) -> bytes:
        """Make or renew the peer's reservation; the framed answer."""
        peer = connection.remote_peer_id
        ip = connection.remote_address.host if connection.remote_address is not None else None
        try:
            reservation, renewed = self.resources.reserve(
                peer, ip, relayed=is_relayed(connection), holder=connection
            )
        except HopRefused as refusal:
            self.stats.refused_reservation(refusal.reason)
            self._log_refusal("reservation", connection, refusal)
            return hop_status(refusal.status)
        expire = int(reservation.expire)
        voucher = seal_voucher(self.host.identity, Voucher(self.host.peer_id, peer, expire))
        if renewed:
            self.stats.reservations_renewed += 1
        else:
            self.stats.reservations_opened += 1
        self.log.info(
            "reservation {what} for {peer} until {expire}",
            what="renewed" if renewed else "made",
            peer=peer_id_to_text(peer),
            peer_id=peer_id_to_text(peer),
            expire=expire,
            event="reservation.renewed" if renewed else "reservation.made",
        )
        return hop.reservation_ok(expire, self.relay_addrs(connection), voucher, self.limit)

    def relay_addrs(self, connection: Connection) -> list[bytes]:
        """Where the relay can be reached, each ending in ``/p2p/<relay-id>``: the addresses
        announced (``--p2p-announce``) if any, else the address the client reached us at
        first, then the others we advertise (never an unspecified one). Never empty for a
        client over TCP (rust clients refuse an empty list)."""
        suffix = "/p2p/" + self.host.identity.peer_id_text()
        texts: list[str] = []
        if not self.host.announce:
            local = _local_address(connection)
            if local is not None:
                texts.append(local.text())
        for addr in self.host.listen_addrs:
            text = multiaddr_to_text(addr)
            if text not in texts:
                texts.append(text)
        return [multiaddr_from_text(text + suffix) for text in texts]

    def _log_refusal(self, what: str, connection: Connection, refusal: HopRefused) -> None:
        allowed, _ = self.host.limiter.allow()
        if allowed:
            peer_id = connection.remote_peer_id
            emit(
                self.log,
                LogLevel.info,
                "{what} refused to {peer}: {reason} ({status})",
                what=what,
                peer=ClientAddress(connection.label),
                peer_id=peer_id_to_text(peer_id) if peer_id else None,
                reason=refusal.reason,
                status=status_name(refusal.status),
                event=f"{what}.refused",
            )


def _local_address(connection: Connection) -> TCPAddress | None:
    transport = connection.transport
    if transport is None:
        return None
    address = TCPAddress.from_address(transport.getHost())
    if address is None or address.host in ("0.0.0.0", "::"):
        return None
    return address


class HopHandler(StreamProtocol):
    """One inbound hop stream: a request, its answer, and maybe a circuit."""

    def __init__(self, server: RelayServer) -> None:
        self.server = server
        self.machine = hop.HopServer()
        self.target: bytes | None = None
        self.stop_stream: Stream | None = None
        self.done = False
        self._timer: IDelayedCall | None = None

    @property
    def connection(self) -> Connection:
        assert self.stream is not None
        # A hop stream's connection is a `Connection` (a relayed one too): the relay
        # asks it more than a handler's view (`PeerConnection`) offers.
        return cast("Connection", self.stream.connection)

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        self._timer = self.server.clock.callLater(REQUEST_TIMEOUT, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        if self.machine.request is not None:
            # Early bytes of the circuit, before our OK: hold a little, no more.
            self.machine.feed(data)
            if self.machine.buffered > MAX_MESSAGE_BYTES:
                self._abandon("too many bytes before the circuit opened")
            return
        request = self.machine.feed(data)
        if request is None:
            return
        self._cancel_timer()
        if isinstance(request, hop.BadRequest):
            self.server.stats.refused_circuit(status_name(request.status).lower().replace("_", " "))
            self._answer(request.reply)
        elif isinstance(request, hop.ReserveRequest):
            self._answer(self.server.reserve(self.connection))
        else:
            self._connect(request.target)

    def stream_closed(self, reason: str | None) -> None:
        self._cancel_timer()
        if not self.done:
            self._abandon("the initiator went away")

    # -- CONNECT --------------------------------------------------------------

    def _connect(self, target: bytes) -> None:
        server = self.server
        source = self.connection.remote_peer_id
        holder = server.holder(target)
        if holder is not None and not holder.is_ready:
            server.disconnected(holder)  # closing: its reservation ends with it
        try:
            server.resources.open_circuit(source, target, relayed=is_relayed(self.connection))
        except HopRefused as refusal:
            server.stats.refused_circuit(refusal.reason)
            server._log_refusal("circuit", self.connection, refusal)
            self._answer(hop_status(refusal.status))
            return
        self.target = target
        holder = server.holder(target)
        assert holder is not None
        self._timer = server.clock.callLater(REQUEST_TIMEOUT, self._timed_out)
        # The target reserved, so it speaks stop: CONNECT goes with the proposal.
        connect = stop.connect_message(source, server.limit)
        opener = _StopOpener(self)
        holder.open_stream(STOP_PROTOCOL_ID, opener, early=connect).addErrback(self._stop_failed)

    def _stop_failed(self, failure: Failure) -> None:
        self._fail(f"stop stream: {failure.getErrorMessage()}")

    def stop_answered(self, stream: Stream, status: int, leftover: bytes) -> None:
        """The target answered the stop CONNECT."""
        if self.done:
            stream.reset()
            return
        self.stop_stream = None
        if status != OK:
            stream.reset()
            self._fail(f"the target answered {status_name(status)}")
            return
        self._cancel_timer()
        self.done = True
        assert self.stream is not None and self.target is not None
        hop_stream = self.stream
        early = self.machine.leftover()
        hop_stream.write(hop.connect_ok(self.server.limit))
        server = self.server
        source, target = hop_stream.remote_peer_id, self.target
        logged, suppressed = server.circuit_log.allow()
        label = f"circuit {_peer_text(source)} -> {_peer_text(target)}" if logged else None
        circuit: Circuit

        def closed(reason: str) -> None:
            server.circuits.discard(circuit)
            server.resources.close_circuit(source, target)

        circuit = Circuit(
            server.clock,
            (hop_stream, stream),
            duration=server.limits.circuit_duration,
            max_bytes=server.limits.circuit_bytes,
            stats=server.stats,
            on_closed=closed,
            label=label,
        )
        server.circuits.add(circuit)
        server.stats.circuits_opened += 1
        if suppressed:
            server.log.info(
                "{count} circuits were not logged", count=suppressed, event="circuits.suppressed"
            )
        if label is not None:
            server.log.info("{circuit} opened", circuit=label, event="circuit.opened")
        if early:
            circuit.received(0, early)
        if leftover:
            circuit.received(1, leftover)

    # -- endings --------------------------------------------------------------

    def _answer(self, reply: bytes) -> None:
        """Write the answer and close the stream (a request served or refused)."""
        self.done = True
        self._cancel_timer()
        assert self.stream is not None
        self.stream.write(reply)
        self.stream.close()

    def _fail(self, reason: str) -> None:
        """The circuit could not be opened: CONNECTION_FAILED, release what was counted."""
        if self.done:
            return
        self.done = True
        self.server.stats.refused_circuit("connection failed")
        emit(
            self.server.log,
            LogLevel.info,
            "circuit from {peer} failed: {reason}",
            peer=ClientAddress(self.connection.label),
            reason=reason,
            event="circuit.failed",
        )
        self._release()
        self._answer(hop_status(CONNECTION_FAILED))

    def _abandon(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        self._cancel_timer()
        self._release()
        if self.stream is not None:
            self.stream.reset()

    def _release(self) -> None:
        if self.stop_stream is not None:
            self.stop_stream.reset()
            self.stop_stream = None
        if self.target is not None:
            assert self.stream is not None
            self.server.resources.close_circuit(self.stream.remote_peer_id, self.target)
            self.target = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.target is None:
            self._abandon("no request in time")
        else:
            self._fail("the target did not answer in time")

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _StopOpener(StreamProtocol):
    """The relay's stop stream to the target until it answers (CONNECT already sent)."""

    def __init__(self, hop_handler: HopHandler) -> None:
        self.hop_handler = hop_handler
        self.machine = stop.StopDialer()
        self.answered = False

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        self.hop_handler.stop_stream = stream

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        assert self.stream is not None
        try:
            status = self.machine.feed(data)
        except MalformedMessage as error:
            self.answered = True
            self.stream.reset()
            self.hop_handler._fail(f"the target's answer: {error}")
            return
        if status is None:
            return
        self.answered = True
        self.hop_handler.stop_answered(self.stream, status, self.machine.leftover())

    def stream_closed(self, reason: str | None) -> None:
        if not self.answered:
            self.answered = True
            self.hop_handler._fail("the target closed the stop stream")
