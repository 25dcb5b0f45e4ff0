"""Relay addresses named by DNS: ``/dns4``, ``/dns6``, ``/dns`` and ``/dnsaddr``, resolved to
TCP addresses a host can dial.

``/dns4/NAME/…`` and ``/dns6/NAME/…`` ask for NAME's IPv4 or IPv6 addresses (``/dns`` for
both); ``/dnsaddr/NAME`` reads the TXT records of ``_dnsaddr.NAME``, each
``dnsaddr=<multiaddr>`` (the libp2p dnsaddr spec), keeps those naming the relay's peer
id (or none) and resolves them in turn, at most `MAX_DEPTH` deep. The lookups are two
injected functions, so tests need no DNS: `DnsResolver.from_reactor` makes them from the
reactor's ``nameResolver`` (``IHostnameResolver``) and ``twisted.names`` for TXT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolutionReceiver
from zope.interface import implementer

from rendezvous.addrs import InvalidMultiaddr
from rendezvous.p2p.transport import TCPAddress
from rendezvous.peerid import InvalidPeerId, parse_peer_id

if TYPE_CHECKING:
    from twisted.internet.interfaces import IHostResolution

MAX_DEPTH: Final = 4
"""``/dnsaddr`` records naming ``/dnsaddr`` addresses are followed this many levels."""
MAX_RESULTS: Final = 32
"""At most this many addresses come out of one relay address."""

HostLookup = Callable[[str, int], Deferred[list[str]]]
"""``(name, 4 or 6)``: the IP addresses of that family ``name`` resolves to (maybe none)."""
TxtLookup = Callable[[str], Deferred[list[str]]]
"""``name``: the strings of its TXT records (each record's strings joined)."""


class Unresolvable(Exception):
    """A relay address whose DNS name does not resolve (or to nothing dialable)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A dialable relay address: a TCP address naming the relay's peer id."""

    address: TCPAddress
    tls_name: str | None = None
    """The DNS name a ``/tls/ws`` certificate is checked against (the address is an IP)."""

    def text(self) -> str:
        return self.address.text()


def _with_peer(text: str, peer_id: str) -> str | None:
    """``text`` ending in ``/p2p/<peer_id>``; None when it names another peer."""
    _, marker, tail = text.rpartition("/p2p/")
    if not marker:
        return text + "/p2p/" + peer_id
    try:
        same = parse_peer_id(tail) == parse_peer_id(peer_id)
    except InvalidPeerId:
        return None
    return text if same else None


class DnsResolver:
    """Turns a relay's multiaddr (text) into the `Target` list to dial, in order."""

    def __init__(self, hosts: HostLookup, txt: TxtLookup) -> None:
        self.hosts = hosts
        self.txt = txt

    @classmethod
    def from_reactor(cls, reactor: Any) -> DnsResolver:
        """Hostnames through ``reactor.nameResolver``; TXT through ``twisted.names``
        (the system's ``/etc/resolv.conf``), made on first use."""
        names: list[Any] = []

        def txt(name: str) -> Deferred[list[str]]:
            if not names:
                from twisted.names import client

                names.append(client.Resolver("/etc/resolv.conf", reactor=reactor))  # type: ignore[no-untyped-call]
            answer: Deferred[Any] = names[0].lookupText(name)
            return answer.addCallback(_txt_strings)

        return cls(_reactor_hosts(reactor), txt)

    async def resolve(self, text: str, peer_id: str, depth: int = 0) -> list[Target]:
        """The TCP addresses ``text`` stands for, each ending in ``/p2p/<peer_id>``.

        Raises `Unresolvable` (a name that resolves to nothing, TXT lookups failing or too
        deep) or `InvalidMultiaddr` (not an address we can dial).
        """
        full = _with_peer(text, peer_id)
        if full is None:
            raise InvalidMultiaddr(f"{text} names another peer than {peer_id}")
        parts = full.split("/")
        if len(parts) < 3 or parts[0]:
            raise InvalidMultiaddr(f"not a multiaddr: {text!r}")
        kind, name, rest = parts[1], parts[2], "/".join(parts[3:])
        if kind in ("ip4", "ip6"):
            return [Target(TCPAddress.parse(full))]
        if kind == "dnsaddr":
            return await self._dnsaddr(name, peer_id, depth)
        families = {"dns4": (4,), "dns6": (6,), "dns": (4, 6)}.get(kind)
        if families is None:
            raise InvalidMultiaddr(f"not a TCP multiaddr: {text!r}")
        TCPAddress.parse(f"/ip4/0.0.0.0/{rest}")  # the rest must be dialable: fail before DNS
        tls_name = name if "/tls/" in f"/{rest}" or rest.split("/")[2:3] == ["wss"] else None
        found: list[Target] = []
        for family in families:
            try:
                ips = await self.hosts(name, family)
            except Exception as error:
                raise Unresolvable(f"{name} does not resolve: {error}") from None
            for ip in ips:
                found.append(Target(TCPAddress.parse(f"/ip{family}/{ip}/{rest}"), tls_name))
        if not found:
            raise Unresolvable(f"{name} does not resolve")
        return found[:MAX_RESULTS]

    async def _dnsaddr(self, name: str, peer_id: str, depth: int) -> list[Target]:
        if depth >= MAX_DEPTH:
            raise Unresolvable(f"/dnsaddr/{name}: more than {MAX_DEPTH} levels of /dnsaddr")
        try:
            records = await self.txt("_dnsaddr." + name)
        except Exception as error:
            raise Unresolvable(f"_dnsaddr.{name} has no TXT record: {error}") from None
        found: list[Target] = []
        problems: list[str] = []
        for record in records:
            if not record.startswith("dnsaddr="):
                continue
            address = record[len("dnsaddr=") :]
            if _with_peer(address, peer_id) is None:
                continue  # another peer's address under the same name
            try:
                found += await self.resolve(address, peer_id, depth + 1)
            except (Unresolvable, InvalidMultiaddr) as error:
                problems.append(str(error))
            if len(found) >= MAX_RESULTS:
                break
        if not found:
            why = "; ".join(problems) or f"no dnsaddr= record for {peer_id}"
            raise Unresolvable(f"/dnsaddr/{name}: {why}")
        return found[:MAX_RESULTS]


def _txt_strings(result: Any) -> list[str]:
    answers = result[0]
    strings = []
    for answer in answers:
        data = getattr(answer.payload, "data", None)
        if isinstance(data, list):
            strings.append(b"".join(data).decode("utf-8", "replace"))
    return strings


def _reactor_hosts(reactor: Any) -> HostLookup:
    def lookup(name: str, family: int) -> Deferred[list[str]]:
        done: Deferred[list[str]] = Deferred()
        found: list[str] = []

        @implementer(IResolutionReceiver)
        class Receiver:
            def resolutionBegan(self, resolution: IHostResolution) -> None:
                pass

            def addressResolved(self, address: Any) -> None:
                found.append(address.host)

            def resolutionComplete(self) -> None:
                done.callback(found)

        types = [IPv4Address] if family == 4 else [IPv6Address]
        reactor.nameResolver.resolveHostName(Receiver(), name, 0, types)
        return done

    return lookup
