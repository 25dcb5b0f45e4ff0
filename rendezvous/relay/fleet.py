"""Reach and be reached through the relay fleet, in one call each.

`join` finds relays by rendezvous (standard DISCOVER in the relays' namespace), reserves
on the ``k`` best that accept us (a `rendezvous.relay.pool.RelayPool`: ranked by round
trip, renewed, replaced when lost), registers our ``…/p2p-circuit/p2p/<me>`` addresses in
an application namespace with the live dialect over libp2p (so the registration ends
when we leave; registered again at once whenever the relays held change) and enters
RENDEZVOUS there. `connect_to` dials a peer found that way through its circuit address.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from rendezvous.addrs import InvalidMultiaddr, multiaddr_from_text, multiaddr_to_text
from rendezvous.client.live import EventHandler, PeerEntry
from rendezvous.client.p2p import LiveClientStream
from rendezvous.client.standard import entries, open_point
from rendezvous.live.stream import PROTOCOL_ID as LIVE_PROTOCOL_ID
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.ping import ping
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.peerid import peer_id_to_text
from rendezvous.relay import client
from rendezvous.relay.announce import DEFAULT_NAMESPACE
from rendezvous.relay.codec import status_name
from rendezvous.relay.pool import (
    DEFAULT_K,
    AddressesChanged,
    Dialled,
    HeldRelay,
    PoolEvent,
    RelayAdded,
    RelayDeclined,
    RelayLost,
    RelayPool,
    RelayUnreachable,
    Retrying,
    RoundFailed,
    describe_event,
)
from rendezvous.relay.relayed import accept_relayed, dial_circuit, relay_connection
from rendezvous.relay.resolve import DnsResolver, Target, Unresolvable

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTCP, IReactorTime

    from rendezvous.p2p.host import Host

__all__ = [
    "DEFAULT_K",
    "AddressesChanged",
    "DnsResolver",
    "FleetError",
    "Membership",
    "NoCircuitAddress",
    "NoRelayFound",
    "PoolEvent",
    "RelayAdded",
    "RelayDeclined",
    "RelayLost",
    "RelayUnreachable",
    "ReservationRefused",
    "Retrying",
    "Unresolvable",
    "circuit_address",
    "connect_to",
    "describe_event",
    "join",
]

DIAL_TIMEOUT: Final = 10.0
"""Seconds a relay has to accept our TCP connection."""

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
    """Our presence in ``namespace``, reachable through the relays of `relays`."""

    namespace: str
    peer_id: str
    """Ours, as text."""
    session: LiveClientStream
    """The live-dialect session holding the registration and the subscription."""
    pool: RelayPool
    """Holds the reservations; ``pool.observers`` are told each `PoolEvent`."""
    host: Host
    _connections: list[Connection] = field(default_factory=list)
    """Those `join` dialled to the daemon: `leave` closes them (the pool hangs up relays)."""
    _left: bool = False
    _seq: int = 0

    @property
    def relays(self) -> list[HeldRelay]:
        """The relays holding a reservation for us, best first."""
        return list(self.pool.held)

    @property
    def circuit_addresses(self) -> list[str]:
        """Our circuit address through each relay held, best first."""
        return [circuit_address(relay.target.address, self.host.peer_id) for relay in self.relays]

    @property
    def circuit_address(self) -> str:
        """Through the best relay held ("" while none is)."""
        addresses = self.circuit_addresses
        return addresses[0] if addresses else ""

    @property
    def relay(self) -> TCPAddress | None:
        """The best relay held (with its peer id), None while none is."""
        return self.pool.held[0].target.address if self.pool.held else None

    @property
    def reservation(self) -> client.ReservationInfo | None:
        """Our reservation on `relay`."""
        return self.pool.held[0].reservation if self.pool.held else None

    @property
    def closed(self) -> Deferred[None]:
        """Fires when the rendezvous session ends (after `leave`, or if the daemon went)."""
        return self.session.closed

    def leave(self) -> Deferred[None]:
        """Unregister (peers watching are told), end the session, drop the reservations."""
        if self._left:
            return succeed(None)
        self._left = True
        self.pool.stop()
        done = self.session.unregister(self.namespace, self.peer_id)

        def close(result: object) -> None:
            self._close()

        return done.addBoth(close)

    def _close(self) -> None:
        self.pool.stop()
        if self.pool.connection_lost in self.host.connection_closed:
            self.host.connection_closed.remove(self.pool.connection_lost)
        self.session.disconnect()
        for connection in self._connections:
            connection.close()

    def _publish(self, held: list[HeldRelay]) -> Deferred[Sequence[str]]:
        """Register our circuit addresses through ``held`` (replacing what was registered;
        subscribers are pushed it), or unregister when there is none."""
        addresses = [circuit_address(relay.target.address, self.host.peer_id) for relay in held]
        if not addresses:
            return self.session.unregister(self.namespace, self.peer_id).addCallback(
                lambda _: addresses
            )
        binary = tuple(multiaddr_from_text(address) for address in addresses)
        self._seq = max(self._seq + 1, int(self.pool.clock.seconds() * 1_000_000))
        record = seal_peer_record(
            self.host.identity, PeerRecord(self.host.peer_id, self._seq, binary)
        )
        registered = self.session.register(self.namespace, self.peer_id, binary, record)
        log.info(
            "registered in {namespace} as {addresses}",
            namespace=self.namespace,
            addresses=" ".join(addresses),
            event="relay_client.registered",
        )
        return registered.addCallback(lambda _: addresses)


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


def _dialler(
    host: Host, reactor: IReactorTCP, clock: IReactorTime
) -> Callable[[Target], Deferred[Dialled]]:
    """Dial a relay; the round trip is the dial's time (a ping on a connection we had)."""

    def dial(target: Target) -> Deferred[Dialled]:
        peer = target.address.peer_id
        for connection in host.connections:
            if connection.remote_peer_id == peer and not connection.relayed and connection.is_ready:
                return ping(connection, clock).addCallback(_reused, connection)
        tls: Any = None
        if target.tls_name is not None and target.address.tls:
            from twisted.internet.ssl import optionsForClientTLS

            tls = optionsForClientTLS(target.tls_name)
        endpoint = target.address.client_endpoint(reactor, DIAL_TIMEOUT, tls)
        started = clock.seconds()
        dialled = host.dial(endpoint, peer)
        return dialled.addCallback(lambda c: Dialled(c, clock.seconds() - started, opened=True))

    return dial


def _reused(rtt: float, connection: Connection) -> Dialled:
    return Dialled(connection, rtt, opened=False)


def join(
    reactor: IReactorTCP,
    host: Host,
    rendezvous: TCPAddress,
    namespace: str,
    on_event: EventHandler,
    relay_namespace: str = DEFAULT_NAMESPACE,
    clock: IReactorTime | None = None,
    *,
    k: int = DEFAULT_K,
    on_state: Callable[[PoolEvent], None] | None = None,
    renewal: float | None = None,
    resolver: DnsResolver | None = None,
) -> Deferred[Membership]:
    """Join ``namespace`` through relays found at the daemon ``rendezvous`` (``…/p2p/<id>``).

    Reserves on the ``k`` best relays (fewer if fewer accept; more are sought with
    backoff), registers the circuit address through each, best first, and keeps them:
    a reservation lost (its connection closed, a renewal failed) is replaced and the
    addresses registered again at once. ``on_event`` gets the namespace's current
    registrations, then every change; the Deferred fires once the snapshot has been
    delivered. ``on_state`` is told each `PoolEvent` (relay added, lost, refused,
    unreachable; addresses registered; retrying). ``renewal``: renew reservations at
    least this often (seconds). ``resolver`` resolves ``/dns4``, ``/dns6``, ``/dns`` and
    ``/dnsaddr`` relay addresses (the reactor's by default).

    Fails with `NoRelayFound`, `ReservationRefused`, a
    `rendezvous.client.errors.RendezvousError` (the daemon refused the registration) or
    the dial's failure; then nothing is left reserved or registered.
    """
    timer: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]
    names = resolver if resolver is not None else DnsResolver.from_reactor(reactor)

    async def run() -> Membership:
        existing = set(host.connections)
        daemon = await relay_connection(host, rendezvous, reactor)
        opened = [daemon] if daemon not in existing else []
        session = LiveClientStream()
        me = peer_id_to_text(host.peer_id)
        pool = RelayPool(
            timer,
            me,
            discover=lambda: Deferred.fromCoroutine(_discover_relays(daemon, relay_namespace)),
            resolve=lambda address, peer: Deferred.fromCoroutine(names.resolve(address, peer)),
            dial=_dialler(host, reactor, timer),
            reserve=client.reserve,  # type: ignore[arg-type]  # a pool Link is our Connection
            publish=lambda held: membership._publish(held),
            on_state=on_state,
            k=k,
            renewal=renewal,
        )
        membership = Membership(namespace, me, session, pool, host, opened)
        host.connection_closed.append(pool.connection_lost)
        try:
            accept_relayed(host)
            try:
                why = await pool.first_round()
            except RoundFailed as failed:
                if failed.refusals and not failed.attempts:
                    raise ReservationRefused(failed.refusals) from None
                refused = [f"{relay}: {status_name(s)}" for relay, s in failed.refusals]
                raise NoRelayFound(relay_namespace, [*failed.attempts, *refused]) from None
            await daemon.open_stream(LIVE_PROTOCOL_ID, session)
            await pool.publish_now()
            await session.rendezvous(namespace, on_event)
        except BaseException:
            membership._close()
            raise
        pool.start(why)
        address = membership.circuit_address
        log.info(
            "joined {namespace} as {address}",
            namespace=namespace,
            address=address,
            event="relay_client.joined",
        )
        return membership

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


def connect_to(
    reactor: IReactorTCP,
    host: Host,
    peer: PeerEntry | str,
    resolver: DnsResolver | None = None,
) -> Deferred[Connection]:
    """A relayed connection to ``peer``: a registration (its circuit addresses are tried in
    order) or a circuit multiaddr. A relay named by ``/dns4``, ``/dns6``, ``/dns`` or
    ``/dnsaddr`` is resolved first (``resolver``, the reactor's by default). Fails with
    `NoCircuitAddress`, `InvalidMultiaddr`, `Unresolvable`,
    `rendezvous.relay.client.RelayRefused`/`RelayError`, or the dial's failure."""
    candidates = [peer] if isinstance(peer, str) else _circuits_of(peer)

    async def run() -> Connection:
        if not candidates:
            assert not isinstance(peer, str)
            raise NoCircuitAddress(f"{peer.peer_id} registered no circuit address")
        last: Exception | None = None
        for address in candidates:
            try:
                return await _dial_circuit(reactor, host, address, resolver)
            except Exception as error:
                last = error
        assert last is not None
        raise last

    return Deferred.fromCoroutine(run())


async def _dial_circuit(
    reactor: IReactorTCP, host: Host, address: str, resolver: DnsResolver | None
) -> Connection:
    if address.startswith(("/ip4/", "/ip6/")):
        return await dial_circuit(host, address, reactor)
    relay_text, marker, target_text = address.partition("/p2p-circuit/p2p/")
    relay_head, p2p, relay_id = relay_text.rpartition("/p2p/")
    if not marker or not p2p:
        raise InvalidMultiaddr(f"not a circuit address naming its relay: {address!r}")
    names = resolver if resolver is not None else DnsResolver.from_reactor(reactor)
    targets = await names.resolve(relay_head, relay_id)
    last: Exception | None = None
    for target in targets:
        try:
            circuit = f"{target.address.text()}/p2p/{relay_id}{marker}{target_text}"
            return await dial_circuit(host, circuit, reactor)
        except Exception as error:
            last = error
    assert last is not None
    raise last
