"""A listener service per libp2p multiaddr: binds, logs the full address, tells the host;
and the service that keeps what the host advertises current (`advertising`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from rendezvous.addrs import InvalidMultiaddr
from rendezvous.p2p.advertise import (
    InterfaceError,
    InterfaceReader,
    IPAddress,
    interface_expander,
    parse_announce,
    read_interface_ips,
)
from rendezvous.p2p.host import Host
from rendezvous.p2p.proxy import ProxyProtocolEndpoint
from rendezvous.p2p.transport import TCPAddress
from rendezvous.p2p.websocket import WebSocketServerEndpoint

if TYPE_CHECKING:
    from rendezvous.p2p.tls import ReloadableCertificate


@implementer(IStreamServerEndpoint)
class _AnnouncingEndpoint:
    """Logs ``listening on <multiaddr>/p2p/<peer-id>`` with the port actually bound."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        address: TCPAddress,
        host: Host,
        ports: list[IListeningPort],
    ) -> None:
        self._endpoint = endpoint
        self._address = address
        self._host = host
        self._ports = ports

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def listening(port: IListeningPort) -> IListeningPort:
            host = port.getHost()
            assert isinstance(host, (IPv4Address, IPv6Address))  # a TCP port's
            bound = self._address.with_port(host.port)
            self.log.info(
                "listening on {multiaddr}/p2p/{peer_id}",
                multiaddr=bound.text(),
                peer_id=self._host.identity.peer_id_text(),
                event="p2p.listening",
            )
            self._ports.append(port)
            self._host.add_listen_addr(bound.binary())
            return port

        d: Deferred[IListeningPort] = self._endpoint.listen(factory)
        return d.addCallback(listening)


def p2p_listener(
    address: TCPAddress,
    host: Host,
    ports: list[IListeningPort],
    certificate: ReloadableCertificate | None = None,
    proxy_protocol: bool = False,
    count_proxy_refusal: Callable[[str], None] | None = None,
) -> Service:
    """A strports service on ``address`` (bind errors fail start-up) serving ``host``,
    inside WebSockets when the address ends in ``/ws``, over TLS with ``certificate``
    when it ends in ``/tls/ws`` or ``/wss``; with ``proxy_protocol``, each connection
    must start with a PROXY protocol header (v1 or v2), whose client address is then
    the connection's (for limits and logs)."""
    if address.tls and certificate is None:
        raise ValueError(f"{address.text()} needs a TLS certificate")
    service = strports.service(address.server_description(), host.factory())
    endpoint = service.endpoint
    if proxy_protocol:
        endpoint = ProxyProtocolEndpoint(endpoint, host.clock, count=count_proxy_refusal)
    if address.tls:
        from rendezvous.p2p.tls import TLSServerEndpoint

        assert certificate is not None
        endpoint = TLSServerEndpoint(endpoint, certificate)
    if address.ws:
        endpoint = WebSocketServerEndpoint(endpoint, host.clock, host.limits.max_connections)
    service.endpoint = _AnnouncingEndpoint(endpoint, address, host, ports)
    return service


def parse_announce_option(text: str) -> str:
    """Check a ``--p2p-announce`` value; raises `UsageError` saying what is wrong."""
    try:
        parse_announce(text)
    except InvalidMultiaddr as error:
        raise usage.UsageError(f"--p2p-announce: {error}") from None
    return text


REFRESH_INTERVAL: Final = 30.0
"""Seconds between reads of the interfaces' addresses."""


class _Interfaces:
    """`read_interface_ips` that logs, once per failure spell, why it cannot read."""

    log = Logger()

    def __init__(self, read: InterfaceReader) -> None:
        self._read = read
        self._failing = False

    def __call__(self) -> list[IPAddress]:
        try:
            ips = self._read()
        except InterfaceError as error:
            if not self._failing:
                self._failing = True
                self.log.warn(
                    "cannot read the interfaces' addresses ({error}): an unspecified listen "
                    "address is not advertised; use --p2p-announce",
                    error=error,
                    event="p2p.interfaces_unreadable",
                )
            return []
        self._failing = False
        return ips


def advertising(
    host: Host,
    announce: Sequence[str],
    clock: IReactorTime,
    read: InterfaceReader = read_interface_ips,
    interval: float = REFRESH_INTERVAL,
) -> Service:
    """Make ``host`` advertise the ``announce`` multiaddrs (texts, as `parse_announce`
    takes them; raises `InvalidMultiaddr`) when there are any, else its bound addresses
    with each unspecified one expanded to the interfaces' addresses; the service returned
    reads the interfaces again every ``interval`` seconds (the host tells its peers and
    `Host.addrs_changed` when that changes what it advertises)."""
    host.announce = tuple(parse_announce(text) for text in announce)
    host.expand = interface_expander(_Interfaces(read))
    refresh = TimerService(interval, host.update_addrs)  # type: ignore[no-untyped-call]
    refresh.clock = clock
    return refresh


TLS_OPTIONS = [
    [
        "p2p-tls-cert",
        None,
        None,
        "PEM certificate (its chain may follow) for /tls/ws and /wss --p2p-listen "
        "addresses; read again on SIGHUP",
    ],
    ["p2p-tls-key", None, None, "PEM private key of --p2p-tls-cert"],
]
"""``twistd`` options shared by the daemon and the relay."""
PROXY_PROTOCOL_FLAG = [
    "p2p-proxy-protocol",
    None,
    "libp2p listeners sit behind a proxy: every connection must start with a PROXY "
    "protocol header (v1 or v2), whose client address counts for limits and logs",
]


def check_tls_options(listen: Sequence[str], cert: str | None, key: str | None) -> None:
    """``/tls/ws`` and ``/wss`` listeners need a certificate and key that load and match,
    and those need such a listener; raises `UsageError` saying what is wrong."""
    secure = [text for text in listen if TCPAddress.parse(text).tls]
    if not secure:
        if cert is not None or key is not None:
            raise usage.UsageError("--p2p-tls-cert/--p2p-tls-key need a /tls/ws --p2p-listen")
        return
    if cert is None or key is None:
        raise usage.UsageError(f"--p2p-listen {secure[0]} needs --p2p-tls-cert and --p2p-tls-key")
    try:
        from rendezvous.p2p.tls import CertificateError, load_context
    except ImportError:
        raise usage.UsageError(
            "TLS listeners need pyOpenSSL: pip install 'txrendezvous[tls]'"
        ) from None
    try:
        load_context(cert, key)
    except CertificateError as error:
        raise usage.UsageError(str(error)) from None


def p2p_listeners(
    listen: Sequence[str],
    host: Host,
    ports: list[IListeningPort],
    tls_cert: str | None = None,
    tls_key: str | None = None,
    proxy_protocol: bool = False,
    count_proxy_refusal: Callable[[str], None] | None = None,
) -> list[Service]:
    """A `p2p_listener` for each of the ``listen`` multiaddrs; the TLS ones share one
    certificate, and a service that reads it again on SIGHUP comes first."""
    addresses = [TCPAddress.parse(text) for text in listen]
    certificate = None
    services: list[Service] = []
    if any(address.tls for address in addresses):
        if tls_cert is None or tls_key is None:
            raise ValueError("TLS listeners need a certificate and a key")
        from rendezvous.p2p.tls import ReloadableCertificate, ReloadOnHangup

        certificate = ReloadableCertificate(tls_cert, tls_key)
        services.append(ReloadOnHangup([certificate]))
    for address in addresses:
        services.append(
            p2p_listener(address, host, ports, certificate, proxy_protocol, count_proxy_refusal)
        )
    return services
