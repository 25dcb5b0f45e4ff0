"""Make the relay's STUN listeners known through the fleet: the addresses browsers
can reach them at (``/ip4/<ip>/udp/<port>``, ``/ip6/…``, ``/dns4/<name>/udp/<port>``…),
signed as a peer record of the relay's and registered (`rendezvous.relay.announce`) in
``rendezvous/stun``, where clients DISCOVER them and hand them to WebRTC as ICE servers.

`stun_addrs` is pure. What it advertises follows the relay's libp2p addresses: the
announced hosts (``--p2p-announce``) with each listener's port when there are any, else
each listener's own address, an unspecified one (``0.0.0.0``, ``::``) replaced by the
interfaces' addresses of its family (never advertised as such).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import ip_address
from typing import Final

from twisted.application.internet import TimerService
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rendezvous.addrs import InvalidMultiaddr, multiaddr_to_text
from rendezvous.p2p.advertise import is_unspecified
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.host import Host
from rendezvous.relay.announce import NothingToRegister
from rendezvous.varint import decode_uvarint

DEFAULT_STUN_NAMESPACE: Final = "rendezvous/stun"
REFRESH_INTERVAL: Final = 30.0
"""Seconds between reads of the interfaces' addresses (as for the libp2p ones)."""

_IP4: Final = 4
_IP6: Final = 41
_DNS: Final = 53
_DNS4: Final = 54
_DNS6: Final = 55
_UDP: Final = b"\x91\x02"
"""The ``/udp`` protocol code (273) as a uvarint."""
_HOSTS_OF_FAMILY: Final = {4: (_IP4, _DNS4, _DNS), 6: (_IP6, _DNS6, _DNS)}
Expander = Callable[[Sequence[bytes]], list[bytes]]


def udp_multiaddr(ip: bytes, port: int) -> bytes:
    """``/ip4/<ip>/udp/<port>`` or ``/ip6/…`` in binary, from a packed IP address."""
    code = b"\x04" if len(ip) == 4 else b"\x29"
    return code + ip + _UDP + port.to_bytes(2, "big")


def stun_addrs(bound: Sequence[bytes], announce: Sequence[bytes], expand: Expander) -> list[bytes]:
    """What to register for listeners ``bound`` to (binary ``/ip4|ip6/…/udp/<port>``):
    with ``announce`` (binary multiaddrs), each announced host (``/ip4``, ``/ip6``,
    ``/dns4``, ``/dns6``, ``/dns``) of a listener's family with that listener's port;
    else ``expand(bound)`` (which replaces unspecified addresses). Unspecified
    addresses never come out; no duplicates."""
    if not announce:
        found = expand(bound)
    else:
        found = []
        for listener in bound:
            family = 6 if listener[0] == _IP6 else 4
            port = listener[-2:]
            for addr in announce:
                host = _host_component(addr)
                if host is not None and host[0] in _HOSTS_OF_FAMILY[family]:
                    found.append(host + _UDP + port)
    unique: list[bytes] = []
    for addr in found:
        if addr not in unique and not is_unspecified(addr):
            unique.append(addr)
    return unique


def _host_component(addr: bytes) -> bytes | None:
    """The first component of ``addr`` when it is an IP address or a DNS name."""
    if not addr:
        return None
    code = addr[0]
    if code == _IP4:
        return addr[:5] if len(addr) >= 5 else None
    if code == _IP6:
        return addr[:17] if len(addr) >= 17 else None
    if code in (_DNS, _DNS4, _DNS6):
        decoded = decode_uvarint(addr, 1)
        if decoded is None:
            return None
        length, offset = decoded
        end = offset + length
        return addr[:end] if len(addr) >= end else None
    return None


def _text(addr: bytes) -> str:
    try:
        return multiaddr_to_text(addr)
    except InvalidMultiaddr:
        return addr.hex()


class StunAdvertisement:
    """The STUN addresses of a relay ``host`` and their signed peer record; ``changed``
    is told when they change (the STUN announcers register again)."""

    log = Logger()

    def __init__(self, host: Host) -> None:
        self.host = host
        self.bound: list[bytes] = []
        self.addrs: list[bytes] = []
        self.changed: list[Callable[[], None]] = []
        self._record: bytes | None = None

    def add_listener(self, interface: str, port: int) -> None:
        """A STUN listener is bound to ``interface`` (an IP literal) and ``port``."""
        addr = udp_multiaddr(ip_address(interface).packed, port)
        if addr not in self.bound:
            self.bound.append(addr)
            self.update()

    def update(self) -> bool:
        """Work out the addresses again (the interfaces may have changed); on a change, a
        log line per address and ``changed`` told. True if they changed."""
        host = self.host
        addrs = stun_addrs(self.bound, host.announce, host.expand)
        if addrs == self.addrs:
            return False
        previous, self.addrs = self.addrs, addrs
        self._record = None
        for addr in addrs:
            if addr not in previous:
                self.log.info(
                    "advertising stun {multiaddr}", multiaddr=_text(addr), event="stun.advertising"
                )
        for addr in previous:
            if addr not in addrs:
                self.log.info(
                    "no longer advertising stun {multiaddr}",
                    multiaddr=_text(addr),
                    event="stun.advertising_stopped",
                )
        for observer in list(self.changed):
            observer()
        return True

    def refresh(self) -> None:
        self.update()

    def signed_peer_record(self) -> bytes:
        """The STUN addresses in a peer record signed by the relay (a new seq whenever
        they change); raises `NothingToRegister` while there are none."""
        if not self.addrs:
            raise NothingToRegister("no STUN address to register")
        if self._record is None:
            host = self.host
            seq = int(host.clock.seconds() * 1_000_000)
            record = PeerRecord(host.peer_id, seq, tuple(self.addrs))
            self._record = seal_peer_record(host.identity, record)
        return self._record


def refreshing(advertisement: StunAdvertisement, clock: IReactorTime) -> Service:
    """A service that works the STUN addresses out again every `REFRESH_INTERVAL`
    seconds (and whenever the host's own addresses change)."""
    advertisement.host.addrs_changed.append(advertisement.refresh)
    refresh = TimerService(REFRESH_INTERVAL, advertisement.refresh)  # type: ignore[no-untyped-call]
    refresh.clock = clock
    return refresh
