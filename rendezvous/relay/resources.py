"""What the relay holds for strangers, with limits and an ACL; pure, with an injected clock.

Reservations: one per peer (RESERVE again renews it), at most `max_reservations` in all and
`max_reservations_per_ip` from one IP address, each for `reservation_ttl` seconds. Circuits:
at most `max_circuits` in all and `max_circuits_per_peer` that a peer takes part in (as the
initiator or the target), each cut after `circuit_duration` seconds or `circuit_bytes` in a
direction. The ACL (peer ids and IP subnets; empty means everyone) decides who may reserve.

A reservation names its *holder* (the connection it was made over, opaque here): when
that connection closes, `disconnected` releases the reservation, its slot and its IP's
count at once, unless the peer has since reserved again over another connection.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from rendezvous.relay.codec import (
    NO_RESERVATION,
    PERMISSION_DENIED,
    RESERVATION_REFUSED,
    RESOURCE_LIMIT_EXCEEDED,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNLIMITED: Final = 0


@dataclass(frozen=True, slots=True)
class RelayLimits:
    reservation_ttl: int = 3600
    """Seconds a reservation lasts unless renewed."""
    max_reservations: int = 128
    max_reservations_per_ip: int = 8
    max_circuits: int = 1024
    """Circuits relayed at once, being opened included."""
    max_circuits_per_peer: int = 16
    circuit_duration: int = 120
    """Seconds a circuit lasts (told to both ends as `Limit.duration`)."""
    circuit_bytes: int = 128 * 1024
    """Bytes relayed in each direction before the circuit is cut (`Limit.data`)."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.reservation_ttl > 2**32:
            raise ValueError("reservation_ttl is too large")
        if self.circuit_duration > 2**32 - 1:
            raise ValueError("circuit_duration must fit a uint32")


@dataclass(frozen=True)
class Acl:
    """Who may reserve: empty sets mean anyone."""

    peers: frozenset[bytes] = frozenset()
    subnets: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse_subnets(cls, texts: Iterable[str]) -> tuple[IPNetwork, ...]:
        """``10.0.0.0/8``, ``::1/128``…; raises ValueError."""
        return tuple(ipaddress.ip_network(text, strict=False) for text in texts)

    def allows(self, peer_id: bytes, ip: str | None) -> bool:
        if self.peers and peer_id not in self.peers:
            return False
        if self.subnets:
            if ip is None:
                return False
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                return False
            return any(address in subnet for subnet in self.subnets)
        return True


@dataclass(slots=True)
class Reservation:
    peer_id: bytes
    ip: str | None
    expire: float
    """Clock seconds."""
    holder: object = None
    """What the reservation was made over (the relay's connection to the peer)."""


class HopRefused(Exception):
    """A hop request (RESERVE or CONNECT) the limits or the ACL refuse; ``reason`` names
    it for logs and counters."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Resources:
    """Reservations and circuits held, checked against `RelayLimits` and `Acl`."""

    limits: RelayLimits
    acl: Acl
    now: Callable[[], float]
    reservations: dict[bytes, Reservation] = field(default_factory=dict)
    circuits: int = 0
    _per_ip: Counter[str] = field(default_factory=Counter)
    _per_peer_circuits: Counter[bytes] = field(default_factory=Counter)

    # -- reservations ---------------------------------------------------------

    def reserve(
        self, peer_id: bytes, ip: str | None, *, relayed: bool, holder: object = None
    ) -> tuple[Reservation, bool]:
        """Make or renew ``peer_id``'s reservation, held by ``holder``: ``(reservation,
        renewed)``; a renewal over another connection moves the reservation there.

        Raises `HopRefused`: PERMISSION_DENIED over a relayed connection or by the ACL,
        RESERVATION_REFUSED when a limit is reached.
        """
        if relayed:
            raise HopRefused(PERMISSION_DENIED, "relayed connection")
        if not self.acl.allows(peer_id, ip):
            raise HopRefused(PERMISSION_DENIED, "acl")
        self.expire()
        now = self.now()
        existing = self.reservations.get(peer_id)
        if existing is not None:
            if existing.ip != ip:
                self._forget_ip(existing.ip)
                if ip is not None and self._per_ip[ip] >= self.limits.max_reservations_per_ip:
                    del self.reservations[peer_id]
                    raise HopRefused(RESERVATION_REFUSED, "reservations per ip")
                self._count_ip(ip)
                existing.ip = ip
            existing.expire = now + self.limits.reservation_ttl
            existing.holder = holder
            return existing, True
        if len(self.reservations) >= self.limits.max_reservations:
            raise HopRefused(RESERVATION_REFUSED, "reservations")
        if ip is not None and self._per_ip[ip] >= self.limits.max_reservations_per_ip:
            raise HopRefused(RESERVATION_REFUSED, "reservations per ip")
        reservation = Reservation(peer_id, ip, now + self.limits.reservation_ttl, holder)
        self.reservations[peer_id] = reservation
        self._count_ip(ip)
        return reservation, False

    def reservation(self, peer_id: bytes) -> Reservation | None:
        """``peer_id``'s reservation if it has not expired."""
        reservation = self.reservations.get(peer_id)
        if reservation is not None and reservation.expire <= self.now():
            self.drop(peer_id)
            return None
        return reservation

    def disconnected(self, peer_id: bytes, holder: object) -> bool:
        """``holder``, a connection of ``peer_id``, closed: release the peer's reservation
        if it is held by ``holder``; True if one was released."""
        reservation = self.reservations.get(peer_id)
        if reservation is None or reservation.holder is not holder:
            return False
        return self.drop(peer_id)

    def drop(self, peer_id: bytes) -> bool:
        """Forget a reservation; True if there was one."""
        reservation = self.reservations.pop(peer_id, None)
        if reservation is None:
            return False
        self._forget_ip(reservation.ip)
        return True

    def expire(self) -> list[bytes]:
        """Forget expired reservations; the peer ids forgotten."""
        now = self.now()
        gone = [peer for peer, r in self.reservations.items() if r.expire <= now]
        for peer in gone:
            self.drop(peer)
        return gone

    def _count_ip(self, ip: str | None) -> None:
        if ip is not None:
            self._per_ip[ip] += 1

    def _forget_ip(self, ip: str | None) -> None:
        if ip is not None:
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]

    # -- circuits -------------------------------------------------------------

    def open_circuit(self, source: bytes, target: bytes, *, relayed: bool) -> None:
        """Count a circuit from ``source`` to ``target``, or raise `HopRefused`:
        PERMISSION_DENIED over a relayed connection, NO_RESERVATION when the target has
        none, RESOURCE_LIMIT_EXCEEDED when a circuit limit is reached."""
        if relayed:
            raise HopRefused(PERMISSION_DENIED, "relayed connection")
        if self.reservation(target) is None:
            raise HopRefused(NO_RESERVATION, "no reservation")
        if self.circuits >= self.limits.max_circuits:
            raise HopRefused(RESOURCE_LIMIT_EXCEEDED, "circuits")
        per_peer = self.limits.max_circuits_per_peer
        if self._per_peer_circuits[source] >= per_peer:
            raise HopRefused(RESOURCE_LIMIT_EXCEEDED, "circuits per peer")
        if self._per_peer_circuits[target] >= per_peer:
            raise HopRefused(RESOURCE_LIMIT_EXCEEDED, "circuits per peer")
        self.circuits += 1
        self._per_peer_circuits[source] += 1
        self._per_peer_circuits[target] += 1

    def close_circuit(self, source: bytes, target: bytes) -> None:
        """Release what `open_circuit` counted (exactly once per circuit)."""
        self.circuits -= 1
        for peer in (source, target):
            self._per_peer_circuits[peer] -= 1
            if self._per_peer_circuits[peer] <= 0:
                del self._per_peer_circuits[peer]

    def circuits_of(self, peer_id: bytes) -> int:
        return self._per_peer_circuits[peer_id]
