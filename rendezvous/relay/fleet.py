"""Reach and be reached through the relay fleet, in one call each.

`join` finds a relay by rendezvous (standard DISCOVER in the relays' namespace), reserves
on the first that accepts us (and keeps the reservation renewed), registers our
``…/p2p-circuit/p2p/<me>`` address in an application namespace with the live dialect over
libp2p (so the registration ends when we leave) and enters RENDEZVOUS there. `connect_to`
dials a peer found that way through its circuit address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from rendezvous.addrs import InvalidMultiaddr, multiaddr_from_text, multiaddr_to_text
from rendezvous.client.live import EventHandler, PeerEntry
from rendezvous.client.p2p import LiveClientStream
from rendezvous.client.standard import entries
from rendezvous.live.stream import PROTOCOL_ID as LIVE_PROTOCOL_ID
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.peerid import peer_id_to_text
from rendezvous.relay import client
from rendezvous.relay.announce import DEFAULT_NAMESPACE
from rendezvous.relay.codec import status_name
from rendezvous.relay.keeper import ReservationKeeper
from rendezvous.relay.relayed import accept_relayed, dial_circuit, relay_connection
from rendezvous.standard.client import open_point

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTCP, IReactorTime

    from rendezvous.p2p.host import Host

__all__ = [
    "FleetError",
    "Membership",
    "NoCircuitAddress",
    "NoRelayFound",
    "ReservationRefused",
    "circuit_address",
    "connect_to",
    "join",
]

log = Logger()


class FleetError(Exception):
    """Joining or dialling through the fleet failed."""


class NoRelayFound(FleetError):
    """No relay is registered in the relays' namespace, or none could be reached."""

    def __init__(self, namespace: str, attempts: Sequence[str] = ()) -> None:
        detail = "; ".join(attempts) if attempts else "none registered"
        super().__init__(f"no relay found in {namespace!r}: {detail}")
        self.namespace = namespace
        self.attempts = tuple(attempts)


class ReservationRefused(FleetError):
    """Every relay reached refused our reservation."""

    def __init__(self, refusals: Sequence[tuple[str, int]]) -> None:
        text = ", ".join(f"{relay}: {status_name(status)}" for relay, status in refusals)
        super().__init__(f"reservation refused by {text}")
        self.refusals = tuple(refusals)
        """(relay peer id, hop Status) per relay that refused."""


class NoCircuitAddress(FleetError):
    """The peer registered no usable ``/p2p-circuit`` address."""


def circuit_address(relay: TCPAddress, peer_id: bytes) -> str:
    """``<relay addr>/p2p/<relay>/p2p-circuit/p2p/<peer>``; ``relay`` names its peer id."""
    assert relay.peer_id is not None
    relay_id, peer = peer_id_to_text(relay.peer_id), peer_id_to_text(peer_id)
    return f"{relay.text()}/p2p/{relay_id}/p2p-circuit/p2p/{peer}"


@dataclass(eq=False)
class Membership:
    """Our presence in ``namespace``, reachable at ``circuit_address`` via ``relay``."""

    namespace: str
    peer_id: str
    """Ours, as text."""
    circuit_address: str
    relay: TCPAddress
    """The relay we hold a reservation on (with its peer id)."""
    reservation: client.ReservationInfo
    session: LiveClientStream
    """The live-dialect session holding the registration and the subscription."""
    keeper: ReservationKeeper
    _connections: list[Connection] = field(default_factory=list)
    """Those `join` dialled (to the daemon, to the relay): `leave` closes them."""
    _left: bool = False

    @property
    def closed(self) -> Deferred[None]:
        """Fires when the rendezvous session ends (after `leave`, or if the daemon went)."""
        return self.session.closed

    def leave(self) -> Deferred[None]:
        """Unregister (peers watching are told), end the session, drop the reservation."""
        if self._left:
            return succeed(None)
        self._left = True
        done = self.session.unregister(self.namespace, self.peer_id)

        def close(result: object) -> None:
            self._close()

        return done.addBoth(close)

    def _close(self) -> None:
        self.keeper.stop()
        self.session.disconnect()
        for connection in self._connections:
            connection.close()


async def _discover_relays(connection: Connection, namespace: str) -> list[PeerEntry]:
    point = await open_point(connection)
    try:
        answer = await point.discover(namespace)
    finally:
        point.close()
    response = answer.discoverResponse
    if answer.type != Message.DISCOVER_RESPONSE or response.status != Message.OK:
        raise FleetError(f"DISCOVER {namespace!r} refused: {response.status} {response.statusText}")
    return entries(response)


def _dialable(entry: PeerEntry) -> list[TCPAddress]:
    """The TCP addresses of a relay's registration, each naming its peer id."""
    found = []
    for addr in entry.addrs:
        try:
            text = multiaddr_to_text(addr)
            if "/p2p/" not in text:
                text += "/p2p/" + entry.peer_id
            address = TCPAddress.parse(text)
        except InvalidMultiaddr:
            continue
        if peer_id_to_text(address.peer_id or b"") == entry.peer_id:
            found.append(address)
    return found


async def _reserve_first(
    reactor: IReactorTCP, host: Host, relays: list[PeerEntry], namespace: str
) -> tuple[TCPAddress, Connection, client.ReservationInfo]:
    """Reserve on the first relay that accepts; raises `NoRelayFound`/`ReservationRefused`.
    Connections dialled to relays that refused are closed again."""
    attempts: list[str] = []
    refusals: list[tuple[str, int]] = []
    for entry in relays:
        if entry.peer_id == peer_id_to_text(host.peer_id):
            continue
        for address in _dialable(entry):
            existing = set(host.connections)
            try:
                connection = await relay_connection(host, address, reactor)
            except Exception as error:
                attempts.append(f"{address.text()}/p2p/{entry.peer_id}: {error}")
                continue
            try:
                info = await client.reserve(connection)
            except client.RelayRefused as refusal:
                refusals.append((entry.peer_id, refusal.status))
            except Exception as error:
                attempts.append(f"{entry.peer_id}: reservation failed: {error}")
            else:
                return address, connection, info
            if connection not in existing:
                connection.close()
            break  # the relay answered: its other addresses reach the same relay
    if refusals and not attempts:
        raise ReservationRefused(refusals)
    attempts += [f"{relay}: {status_name(status)}" for relay, status in refusals]
    raise NoRelayFound(namespace, attempts)


def join(
    reactor: IReactorTCP,
    host: Host,
    rendezvous: TCPAddress,
    namespace: str,
    on_event: EventHandler,
    relay_namespace: str = DEFAULT_NAMESPACE,
    clock: IReactorTime | None = None,
) -> Deferred[Membership]:
    """Join ``namespace`` through a relay found at the daemon ``rendezvous`` (``…/p2p/<id>``).

    ``on_event`` gets the namespace's current registrations, then every change; the
    Deferred fires once the snapshot has been delivered. Fails with `NoRelayFound`,
    `ReservationRefused`, `FleetError`, a `rendezvous.client.errors.RendezvousError`
    (the daemon refused the registration) or the dial's failure.
    """
    timer: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]

    async def run() -> Membership:
        existing = set(host.connections)
        daemon = await relay_connection(host, rendezvous, reactor)
        opened = [daemon] if daemon not in existing else []
        keeper: ReservationKeeper | None = None
        session = LiveClientStream()
        try:
            relays = await _discover_relays(daemon, relay_namespace)
            accept_relayed(host)
            relay, relayed_by, info = await _reserve_first(reactor, host, relays, relay_namespace)
            if relayed_by not in existing and relayed_by not in opened:
                opened.append(relayed_by)
            keeper = ReservationKeeper(host, relay, reactor, timer)
            keeper.start()
            address = circuit_address(relay, host.peer_id)
            binary = multiaddr_from_text(address)
            seq = int(timer.seconds() * 1_000_000)
            record = seal_peer_record(host.identity, PeerRecord(host.peer_id, seq, (binary,)))
            await daemon.open_stream(LIVE_PROTOCOL_ID, session)
            me = peer_id_to_text(host.peer_id)
            await session.register(namespace, me, (binary,), record)
            await session.rendezvous(namespace, on_event)
        except BaseException:
            if keeper is not None:
                keeper.stop()
            session.disconnect()
            for connection in opened:
                connection.close()
            raise
        log.info("joined {namespace} as {address}", namespace=namespace, address=address)
        return Membership(namespace, me, address, relay, info, session, keeper, opened)

    return Deferred.fromCoroutine(run())


def _circuits_of(entry: PeerEntry) -> list[str]:
    found = []
    for addr in entry.addrs:
        try:
            text = multiaddr_to_text(addr)
        except InvalidMultiaddr:
            continue
        if text.endswith("/p2p-circuit/p2p/" + entry.peer_id):
            found.append(text)
    return found


def connect_to(reactor: IReactorTCP, host: Host, peer: PeerEntry | str) -> Deferred[Connection]:
    """A relayed connection to ``peer``: a registration (its circuit addresses are tried in
    order) or a circuit multiaddr. Fails with `NoCircuitAddress`, `InvalidMultiaddr`,
    `rendezvous.relay.client.RelayRefused`/`RelayError`, or the dial's failure."""
    if isinstance(peer, str):
        return dial_circuit(host, peer, reactor)
    candidates = _circuits_of(peer)

    async def run() -> Connection:
        if not candidates:
            raise NoCircuitAddress(f"{peer.peer_id} registered no circuit address")
        last: Exception | None = None
        for address in candidates:
            try:
                return await dial_circuit(host, address, reactor)
            except Exception as error:
                last = error
        assert last is not None
        raise last

    return Deferred.fromCoroutine(run())
