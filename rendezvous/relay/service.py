"""Assemble `twistd rendezvous-relay`: a libp2p host serving the hop protocol, listeners,
and optionally the metrics endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.twisted import MetricsResource
from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.resource import Resource

from rendezvous import __version__
from rendezvous.p2p.host import Host, HostLimits
from rendezvous.p2p.keys import PrivateKey, load_or_create_identity
from rendezvous.p2p.listen import advertising, p2p_listeners
from rendezvous.p2p.transport import TCPAddress
from rendezvous.relay.announce import (
    DEFAULT_NAMESPACE,
    DEFAULT_TTL,
    Announcer,
    AnnouncerService,
)
from rendezvous.relay.resources import Acl, RelayLimits
from rendezvous.relay.server import RelayServer
from rendezvous.service import _listener
from rendezvous.stun.fleet import DEFAULT_STUN_NAMESPACE
from rendezvous.stun.server import StunLimits
from rendezvous.stun.service import StunService
from rendezvous.web.site import QuietSite


@dataclass(frozen=True)
class RelayConfig:
    p2p_listen: Sequence[str] = ("/ip4/0.0.0.0/tcp/4010",)
    identity: str | None = None
    """libp2p private key file, created (mode 0600) if missing; None: a new key per run."""
    p2p_limits: HostLimits = field(default_factory=HostLimits)
    limits: RelayLimits = field(default_factory=RelayLimits)
    acl: Acl = field(default_factory=Acl)
    metrics: str | None = None
    """strport serving Prometheus text at ``/metrics``."""
    p2p_announce: Sequence[str] = ()
    """Multiaddrs to advertise instead of the listen addresses (``--p2p-announce``)."""
    p2p_tls_cert: str | None = None
    """PEM certificate (and chain) of the ``/tls/ws`` and ``/wss`` listeners."""
    p2p_tls_key: str | None = None
    p2p_proxy_protocol: bool = False
    """Every libp2p connection starts with a PROXY protocol header."""
    announce_to: Sequence[str] = ()
    """Rendezvous daemons (``…/p2p/<id>`` multiaddrs) to stay registered at."""
    namespace: str = DEFAULT_NAMESPACE
    announce_ttl: int = DEFAULT_TTL
    stun: Sequence[str] = ()
    """STUN listeners, ``udp:PORT[:interface=ADDR]``, registered in ``stun_namespace``."""
    stun_limits: StunLimits = field(default_factory=StunLimits)
    stun_namespace: str = DEFAULT_STUN_NAMESPACE


class _RelayRunner(Service):
    log = Logger()

    def __init__(self, relay: RelayServer) -> None:
        self.relay = relay

    def startService(self) -> None:
        super().startService()
        self.relay.start()
        self.log.info(
            "rendezvous-relay {version} starting as {peer_id}",
            version=__version__,
            peer_id=self.relay.host.identity.peer_id_text(),
            event="relay.starting",
        )

    def stopService(self) -> None:
        super().stopService()
        self.relay.stop()


class RelayDaemon(MultiService):
    """The `twistd rendezvous-relay` service tree."""

    def __init__(self, config: RelayConfig, clock: Any) -> None:
        """``clock`` is the reactor (time and TCP)."""
        super().__init__()
        if config.identity is not None:
            identity = load_or_create_identity(config.identity)
        else:
            identity = PrivateKey.generate()
        self.host = Host(identity, clock, config.p2p_limits)
        self.relay = RelayServer(self.host, clock, config.limits, config.acl)
        self.relay.install()
        _RelayRunner(self.relay).setServiceParent(self)
        self.p2p_ports: list[IListeningPort] = []
        for listener in p2p_listeners(
            config.p2p_listen,
            self.host,
            self.p2p_ports,
            config.p2p_tls_cert,
            config.p2p_tls_key,
            config.p2p_proxy_protocol,
            self.relay.stats.refused_connection,
        ):
            listener.setServiceParent(self)
        advertising(self.host, config.p2p_announce, clock).setServiceParent(self)
        self.announcers = [
            Announcer(
                self.host,
                TCPAddress.parse(text),
                clock,
                clock,
                config.namespace,
                config.announce_ttl,
            )
            for text in config.announce_to
        ]
        for announcer in self.announcers:
            AnnouncerService(announcer).setServiceParent(self)
        self.host.addrs_changed.append(self._addrs_changed)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self.relay.stats)
        self.stun: StunService | None = None
        if config.stun:
            self.stun = StunService(
                self.host,
                config.stun,
                clock,
                config.stun_limits,
                config.announce_to,
                config.stun_namespace,
                config.announce_ttl,
            )
            self.stun.setServiceParent(self)
            self.registry.register(self.stun.stats)
        if config.metrics is not None:
            root = Resource()
            root.putChild(b"metrics", MetricsResource(registry=self.registry))
            site = QuietSite(root)  # no line per scrape, which would name the scraper
            self.metrics_ports: list[IListeningPort] = []
            _listener(config.metrics, site, "metrics", self.metrics_ports).setServiceParent(self)

    def _addrs_changed(self) -> None:
        """Register again with the new signed peer record (running announcers only)."""
        for announcer in self.announcers:
            announcer.renew_now()
