"""The STUN responder in Twisted: a thin `DatagramProtocol` over `codec` and
`ratelimit`, its counters, and the service that binds it (``--stun udp:PORT``)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError, InvalidAddressError, MessageLengthError
from twisted.internet.interfaces import IListeningPort, IReactorSocket
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel

from rendezvous.loglimit import LogLimiter
from rendezvous.logs import ClientAddress, emit
from rendezvous.stun.codec import (
    MAX_MESSAGE_SIZE,
    StunParseError,
    binding_success,
    parse_binding_request,
    source_ip,
)
from rendezvous.stun.ratelimit import SourceLimiter, source_key

DEFAULT_RATE: Final = 20.0
DEFAULT_BURST: Final = 40
DEFAULT_MAX_SOURCES: Final = 10_000
SEND_FAILED: Final = "send failed"
"""The ``reason`` counted when the answer could not be sent."""


@dataclass(frozen=True, slots=True)
class StunLimits:
    rate: float = DEFAULT_RATE
    """Requests answered per second and source (an IPv4 address, an IPv6 /64)."""
    burst: int = DEFAULT_BURST
    """Requests answered at once from one source."""
    max_sources: int = DEFAULT_MAX_SOURCES
    """Sources whose rate is tracked at once."""

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.burst < 1 or self.max_sources < 1:
            raise ValueError("the STUN rate, burst and sources must be positive")


class StunStats(Collector):
    """Requests answered, datagrams dropped by reason, requests over the rate limit."""

    def __init__(self) -> None:
        self.answered = 0
        self.dropped: dict[str, int] = {}
        self.rate_limited = 0
        self.sources: Callable[[], int] = lambda: 0
        """Sources in the rate limiter's table now."""

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "stun_requests_answered", "STUN Binding requests answered.", self.answered
        )
        dropped = CounterMetricFamily(
            "stun_dropped", "STUN datagrams dropped unanswered, by reason.", labels=["reason"]
        )
        for reason, count in self.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily(
            "stun_rate_limited",
            "STUN Binding requests dropped over their source's rate limit.",
            self.rate_limited,
        )
        yield GaugeMetricFamily(
            "stun_sources", "Sources in the STUN rate limiter's table.", self.sources()
        )


class StunProtocol(DatagramProtocol):
    """Answers each Binding request its source's bucket allows; counts and drops (and
    logs, rate-limited) everything else. One per listener; the listeners of a relay
    share the limiter, the counters and the log limiter."""

    log = Logger()
    noisy = False

    def __init__(self, limiter: SourceLimiter, stats: StunStats, log_limiter: LogLimiter) -> None:
        self.limiter = limiter
        self.stats = stats
        self.log_limiter = log_limiter
        stats.sources = limiter.__len__

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        host, port = addr[0], addr[1]
        try:
            request = parse_binding_request(datagram)
            ip = source_ip(host)
        except StunParseError as error:
            self.stats.drop(error.reason)
            self._note("dropped a datagram from {source}: {why}", host, port, str(error))
            return
        except ValueError as error:  # (the socket named no IP: not seen in practice)
            self.stats.drop("source")
            self._note("dropped a datagram from {source}: {why}", host, port, str(error))
            return
        if not self.limiter.allow(source_key(ip)):
            self.stats.rate_limited += 1
            self._note("dropped a request from {source}: {why}", host, port, "rate limit")
            return
        answer = binding_success(request.transaction_id, ip, port, request.fingerprint)
        transport = self.transport
        if transport is None:
            return
        try:
            transport.write(answer, (host, port))
        except (OSError, MessageLengthError, InvalidAddressError) as error:
            self.stats.drop(SEND_FAILED)
            self._note("cannot answer {source}: {why}", host, port, str(error))
            return
        self.stats.answered += 1

    def _note(self, text: str, host: str, port: int, why: str) -> None:
        allowed, suppressed = self.log_limiter.allow()
        if not allowed:
            return
        if suppressed:
            self.log.info(
                "stun: {count} datagrams dropped were not logged",
                count=suppressed,
                event="stun.drops_suppressed",
            )
        emit(
            self.log,
            LogLevel.info,
            "stun: " + text,
            source=ClientAddress(_endpoint(host, port)),
            why=why,
            event="stun.dropped",
            reason=why,
        )


@dataclass(frozen=True, slots=True)
class UDPListenAddress:
    """A ``--stun`` value: ``udp:PORT[:interface=ADDR]`` (``udp:port=PORT`` too; an
    IPv6 ADDR as is, with its colons escaped the strports way, ``\\:``, or in brackets)."""

    port: int
    interface: str = "0.0.0.0"

    @classmethod
    def parse(cls, text: str) -> UDPListenAddress:
        """Raises `ValueError` saying what is wrong."""
        parts = _split(text)
        if len(parts) < 2 or parts[0] != "udp":
            raise ValueError(f"{text!r}: expected udp:PORT[:interface=ADDR]")
        port_text: str | None = None
        interface = "0.0.0.0"
        for i, part in enumerate(parts[1:], 1):
            key, equals, value = part.partition("=")
            if not equals and i == 1:
                port_text = part
            elif key == "port" and equals and port_text is None:
                port_text = value
            elif key == "interface" and equals:
                # The last option may be an IPv6 address with its colons unescaped.
                value = ":".join([value, *parts[i + 1 :]])
                interface = value[1:-1] if value.startswith("[") and value.endswith("]") else value
                break
            else:
                raise ValueError(f"{text!r}: unexpected {part!r} (udp:PORT[:interface=ADDR])")
        if port_text is None or not port_text.isdigit() or int(port_text) > 0xFFFF:
            raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
        try:
            if "%" in interface:
                raise ValueError("zone")
            ip = ipaddress.ip_address(interface)
        except ValueError:
            raise ValueError(f"{text!r}: interface {interface!r} is not an IP address") from None
        return cls(int(port_text), str(ip))

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.interface else socket.AF_INET


def _split(text: str) -> list[str]:
    """``text`` split at colons not escaped by a backslash (``\\:``) nor in brackets."""
    parts = [""]
    escaped = bracketed = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
            continue
        elif char in "[]":
            bracketed = char == "["
        elif char == ":" and not bracketed:
            parts.append("")
            continue
        parts[-1] += char
    return parts


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StunListener(Service):
    """Binds ``address`` (IPv6 sockets IPv6 only, so ``udp:P`` and ``udp:P:interface=::``
    can both be given) when the service starts - a bind error fails start-up - logs
    ``stun listening on udp HOST:PORT`` and tells ``bound`` (host, port bound)."""

    log = Logger()

    def __init__(
        self,
        address: UDPListenAddress,
        protocol: StunProtocol,
        reactor: IReactorSocket,
        bound: Callable[[str, int], None],
    ) -> None:
        self.address = address
        self.protocol = protocol
        self.reactor = reactor
        self.bound = bound
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self.port is None:
            self._listen()

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None

    def _listen(self) -> None:
        address = self.address
        family = address.family
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address.interface, address.port))
            sock.setblocking(False)
            self.port = self.reactor.adoptDatagramPort(
                sock.fileno(), family, self.protocol, MAX_MESSAGE_SIZE + 1
            )
        except OSError as error:
            where = _endpoint(address.interface, address.port)
            self.log.error(
                "stun cannot listen on udp {where}: {error}",
                where=where,
                error=error,
                event="stun.listen_failed",
            )
            raise CannotListenError(address.interface, address.port, error) from None
        finally:
            sock.close()
        host = self.port.getHost()
        assert isinstance(host, (IPv4Address, IPv6Address))  # a UDP port's
        port = host.port
        self.log.info(
            "stun listening on udp {where}",
            where=_endpoint(address.interface, port),
            event="stun.listening",
        )
        self.bound(address.interface, port)
