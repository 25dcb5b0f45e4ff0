"""TCP multiaddrs (``/ip4/127.0.0.1/tcp/4001``, ``/ip6/::1/tcp/4001``, ``…/tcp/4002/ws``)
and Twisted endpoints."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IAddress, IReactorTCP, IStreamClientEndpoint

from rendezvous.addrs import InvalidMultiaddr, multiaddr_from_text
from rendezvous.peerid import InvalidPeerId, parse_peer_id


@dataclass(frozen=True, slots=True)
class TCPAddress:
    """A parsed TCP multiaddr, with the peer id it names if it ends in ``/p2p/…``;
    ``ws`` when libp2p runs inside a WebSocket on that port (``…/tcp/PORT/ws``), ``tls``
    when that WebSocket runs over TLS (``…/tcp/PORT/tls/ws``, or the older ``…/wss``,
    kept as written)."""

    host: str
    port: int
    ipv6: bool = False
    peer_id: bytes | None = None
    ws: bool = False
    tls: bool = False
    wss: bool = False
    """Written ``/wss`` rather than ``/tls/ws``."""

    @classmethod
    def parse(cls, text: str) -> TCPAddress:
        """Parse ``/ip4|ip6/HOST/tcp/PORT[/ws|/tls/ws|/wss][/p2p/ID]``; raises
        `InvalidMultiaddr`."""
        parts = text.split("/")
        tls = wss = False
        if parts[5:7] == ["tls", "ws"]:
            tls = True
            del parts[5]
        elif parts[5:6] == ["wss"]:
            tls = wss = True
            parts[5] = "ws"
        ws = len(parts) > 5 and parts[5] == "ws"
        if ws:
            del parts[5]
        if len(parts) not in (5, 7) or parts[0] or parts[1] not in ("ip4", "ip6"):
            raise InvalidMultiaddr(f"not a TCP multiaddr: {text!r}")
        if parts[3] != "tcp" or not parts[4].isdigit() or int(parts[4]) > 65535:
            raise InvalidMultiaddr(f"not a TCP multiaddr: {text!r}")
        ipv6 = parts[1] == "ip6"
        try:
            host = str(ipaddress.IPv6Address(parts[2]) if ipv6 else ipaddress.IPv4Address(parts[2]))
        except ValueError:
            raise InvalidMultiaddr(f"bad IP address in {text!r}") from None
        peer_id = None
        if len(parts) == 7:
            if parts[5] != "p2p":
                raise InvalidMultiaddr(f"not a TCP multiaddr: {text!r}")
            try:
                peer_id = parse_peer_id(parts[6])
            except InvalidPeerId as error:
                raise InvalidMultiaddr(f"bad peer id in {text!r}: {error}") from None
        return cls(host, int(parts[4]), ipv6, peer_id, ws, tls, wss)

    @classmethod
    def from_address(cls, address: IAddress) -> TCPAddress | None:
        """The address of a Twisted TCP transport end (a WebSocket's when it has a true
        ``websocket`` attribute), or None for anything else."""
        host = getattr(address, "host", None)
        port = getattr(address, "port", None)
        if not isinstance(host, str) or not isinstance(port, int):
            return None
        ws = getattr(address, "websocket", False) is True
        try:
            socket.inet_pton(socket.AF_INET, host)  # the usual case: dotted quad, as is
        except OSError:
            pass
        else:
            return cls(host, port, False, ws=ws)
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        return cls(str(ip), port, ip.version == 6, ws=ws)

    def with_port(self, port: int) -> TCPAddress:
        return TCPAddress(self.host, port, self.ipv6, self.peer_id, self.ws, self.tls, self.wss)

    def text(self) -> str:
        """The multiaddr text, without any ``/p2p`` part."""
        ws = ("/wss" if self.wss else "/tls/ws") if self.tls else "/ws" if self.ws else ""
        return f"/{'ip6' if self.ipv6 else 'ip4'}/{self.host}/tcp/{self.port}{ws}"

    def binary(self) -> bytes:
        return multiaddr_from_text(self.text())

    def server_description(self, backlog: int = 4096) -> str:
        """The strports description that listens on this address (with an accept
        queue for a crowd reconnecting at once; the kernel caps it at somaxconn)."""
        interface = self.host.replace(":", "\\:")
        return f"tcp{'6' if self.ipv6 else ''}:{self.port}:interface={interface}:backlog={backlog}"

    def client_endpoint(
        self, reactor: IReactorTCP, timeout: float = 30, tls_options: Any = None
    ) -> IStreamClientEndpoint:
        """Connects to this address (inside a WebSocket when ``ws``, over TLS when
        ``tls``: checked against ``tls_options`` when given, else the system's trust
        roots and the address's IP)."""
        tcp: IStreamClientEndpoint
        if self.ipv6:
            tcp = TCP6ClientEndpoint(reactor, self.host, self.port, timeout)  # type: ignore[no-untyped-call]
        else:
            tcp = TCP4ClientEndpoint(reactor, self.host, self.port, timeout)
        if not self.ws:
            return tcp
        from rendezvous.p2p.websocket import WebSocketClientEndpoint

        host = f"[{self.host}]" if self.ipv6 else self.host
        scheme = "ws"
        if self.tls:
            from twisted.internet.endpoints import wrapClientTLS
            from twisted.internet.ssl import optionsForClientTLS

            options = tls_options or optionsForClientTLS(self.host)
            tcp = wrapClientTLS(options, tcp)
            scheme = "wss"
        return WebSocketClientEndpoint(tcp, f"{scheme}://{host}:{self.port}", reactor)  # type: ignore[arg-type]
