"""libp2p connections over relay circuits: dial ``…/p2p-circuit/p2p/<id>`` and accept stop.

A circuit is a byte stream; `CircuitTransport` makes it a Twisted transport so a plain
`Connection` (multistream, Noise, yamux) runs over it. The CONNECT side is the Noise
initiator and yamux dialer, the target the responder. Such connections are marked
``relayed``: a relay refuses RESERVE and CONNECT arriving over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IAddress, IPushProducer, ITransport
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.addrs import InvalidMultiaddr
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.circuit_pb2 import Limit
from rendezvous.peerid import InvalidPeerId, parse_peer_id, peer_id_to_text
from rendezvous.relay import client
from rendezvous.relay.codec import STOP_PROTOCOL_ID

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTCP

    from rendezvous.p2p.host import Host


@implementer(IAddress)
@dataclass(frozen=True, slots=True)
class CircuitAddress:
    """One end of a circuit: a peer reached through a relay."""

    relay: bytes
    peer: bytes

    def __str__(self) -> str:
        return f"/p2p/{peer_id_to_text(self.relay)}/p2p-circuit/p2p/{peer_id_to_text(self.peer)}"


@implementer(ITransport, IPushProducer)
class CircuitTransport:
    """A Twisted transport over a circuit stream, with backpressure both ways."""

    def __init__(self, stream: Stream, host_address: CircuitAddress, peer_address: CircuitAddress):
        self.stream = stream
        self.host_address = host_address
        self.peer_address = peer_address
        self.producer: Any = None
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        self.stream.write(data)

    def writeSequence(self, data: Any) -> None:
        self.stream.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True
        self.stream.close()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.stream.reset()

    def getPeer(self) -> CircuitAddress:
        return self.peer_address

    def getHost(self) -> CircuitAddress:
        return self.host_address

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        self.stream.pause_reading()

    def resumeProducing(self) -> None:
        self.stream.resume_reading()

    def stopProducing(self) -> None:
        self.stream.reset()


class _Bridge(StreamProtocol):
    """Feeds a circuit stream's events to the `Connection` running over it."""

    def __init__(self, connection: Connection, transport: CircuitTransport) -> None:
        self.connection = connection
        self.transport = transport
        self.lost = False

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        self.connection.makeConnection(self.transport)  # type: ignore[no-untyped-call]

    def data_received(self, data: bytes) -> None:
        if not self.lost:
            self.connection.dataReceived(data)

    def end_received(self) -> None:
        self._lose("the circuit ended")

    def stream_closed(self, reason: str | None) -> None:
        self._lose(reason or "the circuit closed")

    def pause_writing(self) -> None:
        producer = self.transport.producer
        if producer is not None:
            producer.pauseProducing()

    def resume_writing(self) -> None:
        producer = self.transport.producer
        if producer is not None:
            producer.resumeProducing()

    def _lose(self, reason: str) -> None:
        if self.lost:
            return
        self.lost = True
        if self.stream is not None and not self.stream.local_closed:
            self.stream.close()
        self.connection.connectionLost(Failure(ConnectionError(reason)))  # type: ignore[no-untyped-call]


def _run_connection(
    host: Host, circuit: client.OpenCircuit, relay: bytes, *, dialer: bool
) -> Connection:
    """A `Connection` over ``circuit`` (not yet started: attach the returned bridge)."""
    expected = circuit.peer if dialer else None
    connection = Connection(host, dialer=dialer, expected_peer_id=expected)
    connection.relayed = True
    transport = CircuitTransport(
        circuit.stream, CircuitAddress(relay, host.peer_id), CircuitAddress(relay, circuit.peer)
    )
    circuit.attach(_Bridge(connection, transport))
    return connection


def accept_relayed(host: Host) -> None:
    """Accept circuits through relays: each becomes a relayed `Connection` of ``host``."""

    def accept(source: bytes, limit: Limit | None) -> StreamProtocol:
        return _CircuitAcceptor(host, source)

    host.set_handler(STOP_PROTOCOL_ID, lambda: client.StopHandler(accept))


class _CircuitAcceptor(StreamProtocol):
    """Receives the stop stream once it is a circuit, and starts a Connection over it."""

    def __init__(self, host: Host, source: bytes) -> None:
        self.host = host
        self.source = source

    def stream_started(self, stream: Stream) -> None:
        relay = stream.remote_peer_id
        circuit = client.OpenCircuit(stream, None, self.source)
        _run_connection(self.host, circuit, relay, dialer=False)

    # Early bytes are delivered by `OpenCircuit.attach` to the bridge that replaced us.
    def data_received(self, data: bytes) -> None:
        assert self.stream is not None and self.stream.protocol is not None
        self.stream.protocol.data_received(data)


@dataclass(frozen=True, slots=True)
class CircuitMultiaddr:
    """``<relay-tcp-addr>/p2p/<relay-id>/p2p-circuit/p2p/<target-id>``, parsed."""

    relay: TCPAddress
    relay_id: bytes
    target: bytes

    @classmethod
    def parse(cls, text: str) -> CircuitMultiaddr:
        """Raises `InvalidMultiaddr`."""
        relay_text, marker, target_text = text.partition("/p2p-circuit/p2p/")
        if not marker:
            raise InvalidMultiaddr(f"not a circuit address: {text!r}")
        relay = TCPAddress.parse(relay_text)
        if relay.peer_id is None:
            raise InvalidMultiaddr(f"a circuit address names its relay's peer id: {text!r}")
        try:
            target = parse_peer_id(target_text)
        except InvalidPeerId as error:
            raise InvalidMultiaddr(f"bad target in {text!r}: {error}") from None
        return cls(relay, relay.peer_id, target)


def relay_connection(host: Host, relay: TCPAddress, reactor: IReactorTCP) -> Deferred[Connection]:
    """An open connection of ``host`` to the relay (not relayed itself), or a new one."""
    for connection in host.connections:
        ours = connection.remote_peer_id == relay.peer_id and not connection.relayed
        if ours and connection.is_ready:
            return succeed(connection)
    return host.dial(relay.client_endpoint(reactor), relay.peer_id)


def dial_circuit(host: Host, address: str, reactor: IReactorTCP) -> Deferred[Connection]:
    """Connect to the target of a circuit multiaddr through its relay; fires with a relayed
    `Connection` once secured and multiplexed. Fails with `InvalidMultiaddr`,
    `client.RelayRefused`, `client.RelayError`, or the dial's failure."""
    try:
        parsed = CircuitMultiaddr.parse(address)
    except InvalidMultiaddr as error:
        return fail(error)
    return dial_through(host, relay_connection(host, parsed.relay, reactor), parsed.target)


def dial_through(host: Host, relay: Deferred[Connection], target: bytes) -> Deferred[Connection]:
    """CONNECT to ``target`` over the relay connection ``relay`` fires with."""

    async def run() -> Connection:
        connection = await relay
        circuit = await client.connect(connection, target)
        relayed = _run_connection(host, circuit, connection.remote_peer_id, dialer=True)
        return await relayed.ready

    return Deferred.fromCoroutine(run())
