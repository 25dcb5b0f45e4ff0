"""A listener service per libp2p multiaddr: binds, logs the full address, tells the host."""

from __future__ import annotations

from twisted.application import strports
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from rendezvous.p2p.host import Host
from rendezvous.p2p.transport import TCPAddress
from rendezvous.p2p.websocket import WebSocketServerEndpoint


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
            bound = self._address.with_port(port.getHost().port)  # type: ignore[attr-defined]
            self._host.add_listen_addr(bound.binary())
            self.log.info(
                "listening on {multiaddr}/p2p/{peer_id}",
                multiaddr=bound.text(),
                peer_id=self._host.identity.peer_id_text(),
            )
            self._ports.append(port)
            return port

        d: Deferred[IListeningPort] = self._endpoint.listen(factory)
        return d.addCallback(listening)


def p2p_listener(address: TCPAddress, host: Host, ports: list[IListeningPort]) -> Service:
    """A strports service on ``address`` (bind errors fail start-up) serving ``host``,
    inside WebSockets when the address ends in ``/ws``."""
    service = strports.service(address.server_description(), host.factory())
    endpoint = service.endpoint
    if address.ws:
        endpoint = WebSocketServerEndpoint(endpoint, host.clock, host.limits.max_connections)
    service.endpoint = _AnnouncingEndpoint(endpoint, address, host, ports)
    return service
