"""Assemble a daemon: store, dialects, listeners and metrics as one Twisted service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.twisted import MetricsResource
from twisted.application import strports
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from rendezvous import __version__
from rendezvous.limits import Limits
from rendezvous.live.codec import LiveCodec
from rendezvous.live.protocol import LiveFactory, describe
from rendezvous.live.session import LiveDialect
from rendezvous.loglimit import LogLimiter
from rendezvous.metrics import Metrics
from rendezvous.store.memory import MemoryStore


@dataclass(frozen=True)
class DaemonConfig:
    listen: Sequence[str] = ("tcp:4001",)
    metrics: str | None = None
    limits: Limits = field(default_factory=Limits)


@implementer(IStreamServerEndpoint)
class _LoggedEndpoint:
    """An endpoint that logs the address it listens on."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        what: str,
        description: str,
        ports: list[IListeningPort],
    ) -> None:
        self._endpoint = endpoint
        self._what = what
        self._description = description
        self._ports = ports

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def listening(port: IListeningPort) -> IListeningPort:
            self.log.info(
                "{what} listening on {address} ({description})",
                what=self._what,
                address=describe(port.getHost()),
                description=self._description,
            )
            self._ports.append(port)
            return port

        d: Deferred[IListeningPort] = self._endpoint.listen(factory)
        return d.addCallback(listening)


def _listener(
    description: str, factory: IProtocolFactory, what: str, ports: list[IListeningPort]
) -> Service:
    """A strports service (bind errors fail start-up) that logs where it listens."""
    service = strports.service(description, factory)
    service.endpoint = _LoggedEndpoint(service.endpoint, what, description, ports)
    return service


class _Banner(Service):
    log = Logger()

    def startService(self) -> None:
        super().startService()
        self.log.info("rendezvous {version} starting, in-memory store", version=__version__)


def live_dialect(store: MemoryStore, limits: Limits, clock: IReactorTime) -> LiveDialect:
    """The live dialect over ``store``, with its metrics and log limiter."""
    return LiveDialect(store, LiveCodec(limits), Metrics(store.stats), LogLimiter(clock.seconds))


class Daemon(MultiService):
    """The `twistd rendezvous` service tree."""

    def __init__(self, config: DaemonConfig, clock: IReactorTime) -> None:
        super().__init__()
        self.store = MemoryStore(config.limits)
        self.dialect = live_dialect(self.store, config.limits, clock)
        self.metrics = self.dialect.metrics
        self.live_factory = LiveFactory(self.dialect, clock)
        self.live_ports: list[IListeningPort] = []
        self.metrics_ports: list[IListeningPort] = []
        _Banner().setServiceParent(self)
        for description in config.listen:
            _listener(
                description, self.live_factory, "live dialect", self.live_ports
            ).setServiceParent(self)
        if config.metrics is not None:
            root = Resource()
            root.putChild(b"metrics", MetricsResource(registry=self.metrics.registry))
            site = Site(root)
            site.noisy = False
            _listener(config.metrics, site, "metrics", self.metrics_ports).setServiceParent(self)
