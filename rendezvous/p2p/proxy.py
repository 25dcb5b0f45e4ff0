"""The PROXY protocol (v1 text, v2 binary) in front of libp2p listeners.

Behind a TLS proxy or a load balancer every connection comes from the proxy; with
``--p2p-proxy-protocol`` each must start with the header the proxy writes (HAProxy's
PROXY protocol), and the client address it names is the connection's from then on:
per-IP limits count it and logs show it. The wrapped protocol sees the connection only
once the header is read, so it never sees the proxy's address. A connection without a
valid header is refused (counted, logged rate-limited).
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from rendezvous.loglimit import LogLimiter
from rendezvous.logs import ClientAddress, emit

V1_PREFIX = b"PROXY "
V1_MAX = 107
"""The longest v1 header, CRLF included."""
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_MAX_PAYLOAD = 1024
"""Addresses and TLVs accepted after the 16 bytes of a v2 header."""
HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send its header."""


class ProxyHeaderError(ValueError):
    """Not a PROXY protocol header, or a malformed one."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header says: the client's address, or None for a LOCAL/UNKNOWN
    connection (the proxy's own, such as a health check), and the header's length."""

    source: IPv4Address | IPv6Address | None
    length: int


def parse_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while more bytes are needed; raises
    `ProxyHeaderError`."""
    if data[: len(V1_PREFIX)] == V1_PREFIX[: len(data)]:
        return _parse_v1(data)
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)]:
        return _parse_v2(data)
    raise ProxyHeaderError("no PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("v1 header longer than 107 bytes")
        return None
    try:
        fields = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header is not ASCII") from None
    if fields[1:2] == ["UNKNOWN"]:
        return ProxyHeader(None, end + 2)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("malformed v1 header")
    _, family, source, destination, source_port, destination_port = fields
    try:
        ip = ipaddress.ip_address(source)
        ipaddress.ip_address(destination)
    except ValueError:
        raise ProxyHeaderError("bad address in v1 header") from None
    if (ip.version == 4) != (family == "TCP4"):
        raise ProxyHeaderError("v1 address does not match its family")
    port = _port(source_port)
    _port(destination_port)
    address = IPv4Address("TCP", str(ip), port) if ip.version == 4 else None
    return ProxyHeader(address or IPv6Address("TCP", str(ip), port), end + 2)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ProxyHeaderError("bad port in v1 header")
    return int(text)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    version_command, family, length = data[12], data[13], struct.unpack(">H", data[14:16])[0]
    if version_command >> 4 != 2:
        raise ProxyHeaderError("unsupported v2 version")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyHeaderError("unknown v2 command")
    if length > V2_MAX_PAYLOAD:
        raise ProxyHeaderError("v2 header too long")
    if len(data) < 16 + length:
        return None
    payload = data[16 : 16 + length]
    if command == 0 or family >> 4 == 0:  # LOCAL, or UNSPEC: the proxy's own connection
        return ProxyHeader(None, 16 + length)
    if family == 0x11 and length >= 12:
        ip4 = ipaddress.IPv4Address(payload[0:4])
        port = struct.unpack(">H", payload[8:10])[0]
        return ProxyHeader(IPv4Address("TCP", str(ip4), port), 16 + length)
    if family == 0x21 and length >= 36:
        ip6 = ipaddress.IPv6Address(payload[0:16])
        port = struct.unpack(">H", payload[32:34])[0]
        return ProxyHeader(IPv6Address("TCP", str(ip6), port), 16 + length)
    raise ProxyHeaderError("v2 header for an unsupported family or too short")


class ProxiedProtocol(ProtocolWrapper):
    """Reads the header, then hands the connection to the wrapped protocol."""

    factory: ProxyProtocolFactory

    def __init__(self, factory: Any, wrappedProtocol: Any) -> None:  # noqa: N803
        super().__init__(factory, wrappedProtocol)
        self._buffer = b""
        self._header: ProxyHeader | None = None
        self._timer: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:
        # As ProtocolWrapper does, but the wrapped protocol waits for the header.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self._timer = self.factory.clock.callLater(self.factory.timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self._header is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        self._buffer += data
        try:
            header = parse_header(self._buffer)
        except ProxyHeaderError as error:
            self._refuse(str(error))
            return
        if header is None:
            return
        rest, self._buffer = self._buffer[header.length :], b""
        self._header = header
        self._cancel_timer()
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]  # a transport
        if rest:
            self.wrappedProtocol.dataReceived(rest)

    def getPeer(self) -> Any:
        if self._header is not None and self._header.source is not None:
            return self._header.source
        return self._stream().getPeer()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        if self._header is not None:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)

    def _timed_out(self) -> None:
        self._timer = None
        self._refuse("no PROXY protocol header in time")

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _refuse(self, reason: str) -> None:
        stream = self._stream()
        self.factory.refused(reason, stream.getPeer())
        stream.abortConnection()

    def _stream(self) -> ITCPTransport:
        """The connection's transport (set before any data can arrive)."""
        transport = self.transport
        assert transport is not None
        return cast(ITCPTransport, transport)


class ProxyProtocolFactory(WrappingFactory):
    """Wraps each connection of ``wrappedFactory`` in a `ProxiedProtocol`."""

    protocol = ProxiedProtocol
    log = Logger()
    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,  # noqa: N803  (Twisted's name)
        clock: IReactorTime,
        timeout: float,
        count: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(wrappedFactory)
        self.clock = clock
        self.timeout = timeout
        self.refusals: Counter[str] = Counter()
        self._count = count
        """Told of each refusal (the daemon's or the relay's metrics)."""
        self._limiter = LogLimiter(clock.seconds)

    def refused(self, reason: str, peer: Any) -> None:
        self.refusals[reason] += 1
        if self._count is not None:
            self._count(reason)
        allowed, suppressed = self._limiter.allow()
        if allowed:
            if suppressed:
                self.log.warn(
                    "{suppressed} refusals were not logged",
                    suppressed=suppressed,
                    event="refusals.suppressed",
                    count=suppressed,
                )
            emit(
                self.log,
                LogLevel.info,
                "refused a connection from {peer}: {reason}",
                peer=ClientAddress(getattr(peer, "host", peer)),
                reason=reason,
                event="connection.refused",
            )


@implementer(IStreamServerEndpoint)
class ProxyProtocolEndpoint:
    """Listens with ``endpoint``; every connection must start with a PROXY header."""

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        clock: IReactorTime,
        timeout: float = HEADER_TIMEOUT,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._timeout = timeout
        self._count = count
        self.factory: ProxyProtocolFactory | None = None

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        self.factory = ProxyProtocolFactory(factory, self._clock, self._timeout, self._count)
        return self._endpoint.listen(self.factory)


__all__ = [
    "ProxiedProtocol",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyProtocolEndpoint",
    "ProxyProtocolFactory",
    "parse_header",
]
